"""The LLM judge's instructions: ours (`strict` scoring) and GAEA's own (`--scoring gaea`).

The judge never sees the image: it compares the candidate answer with the reference answer, which is
how GAEA scores its benchmark. It is shown the question with its lettered options and the reference as
`gaea.records` renders them (the question the model saw is `gaea.records.render`). Our judge must reply with
one JSON object whose schema is in the prompt; GAEA's replies with a bare number (a Python-style dict for
SVQA), read as GAEA's scoring script reads it (eval.judge).
"""

from __future__ import annotations

import re

from gaea.records import QARecord, question_text, target_text

JUDGE_SYSTEM = (
    "You grade answers to questions about where a photo was taken and what is around that place. "
    "You do not see the photo. Compare the candidate answer with the reference answer, which is correct. "
    "Reply with exactly one JSON object and nothing else."
)

#: The keys each question type's judge reply must carry.
JUDGE_KEYS = {
    "MCQ": ("match",),
    "TF": ("match",),
    "SVQA": ("location_prediction", "specificity_relevance"),
    "LVQA": ("score",),
}

_SCHEMAS = {
    "MCQ": '{"match": true} or {"match": false}',
    "TF": '{"match": true} or {"match": false}',
    "SVQA": '{"location_prediction": <integer 0-10>, "specificity_relevance": <integer 0-10>}',
    "LVQA": '{"score": <integer 0-10>}',
}

_RUBRICS = {
    "MCQ": (
        "This is a multiple-choice question. The candidate matches when it picks the same option as the "
        "reference (by letter or by the option's text) and no other option. An answer that picks several "
        "options, or none, does not match."
    ),
    "TF": (
        "This is a true / false question. The candidate matches when it gives the same truth value as the "
        "reference (yes = true, no = false). An answer that hedges between both does not match."
    ),
    "SVQA": (
        "This is a short-answer question. Give two scores from 0 to 10:\n"
        "- location_prediction: does the candidate name the same place, feature or fact as the reference "
        "(10 = the same, 0 = wrong or missing)?\n"
        "- specificity_relevance: is the candidate specific and on topic (10 = precise and relevant, "
        "0 = vague, evasive or off topic)?"
    ),
    "LVQA": (
        "This is a long-answer question. Give one score from 0 to 10. Weigh most whether the candidate "
        "places the photo in the right location and describes the culture, landmarks and surroundings the "
        "reference describes. Penalise vague or padded text that says little, and any claim that contradicts "
        "the reference."
    ),
}


def judge_prompt(record: QARecord, candidate: str) -> str:
    """The judge's task for one answer: rubric, question, reference, candidate, and the reply schema."""
    return "\n".join(
        [
            _RUBRICS[record.question_type],
            "",
            f"Question:\n{question_text(record)}",
            "",
            f"Reference answer:\n{target_text(record)}",
            "",
            f"Candidate answer:\n{candidate.strip() or '(empty)'}",
            "",
            f"Reply with only this JSON object: {_SCHEMAS[record.question_type]}",
        ]
    )


def judge_retry_prompt(question_type: str, problem: str) -> str:
    """What the judge is told after a reply that could not be read."""
    schema = _SCHEMAS[question_type]
    return f"Your reply could not be read ({problem}). Reply again with only this JSON object: {schema}"


# GAEA's judge instructions, word for word as GAEA's evaluation (evaluations/gaea-bench/gpt_eval.py in
# github.com/UCF-CRCV/GAEA) sends them to gpt-4o-mini, so that `--scoring gaea` reproduces its published
# numbers; quirks of spelling and spacing are GAEA's and are kept on purpose.
_GAEA_SVQA = (
    "Evaluate the following predicted answer by comparing it to the provided ground truth. Focus on the criteria "
    "below:\n"
    "1. Location Prediction Correct: How accurately does the predicted answer identify the specific country, city, "
    "state mentioned in the ground truth. Accept responses that geographically contain the ground-truth, e.g. U.K. "
    "for Scotland or England. Accept responses that are synonyms or near synonyms, e.g. Brooklyn is part of New York "
    "City. Give partial credit if the guess is less specific but close to correct, e.g. Western Australia for "
    "Perth.\n"
    "2. Specificity and Relevance: Does the predicted answer provide specific information that is directly relevant "
    "to the question and closely aligns with the ground truth? Vague or overly general descriptions that lack "
    "alignment should result in a lower score.\n"
    "Scoring Instructions:\n"
    "Additional Instructions for Consistency:\n"
    "- Provide the score out of 10 for each above criteria in the order listed.\n"
    "- Vague but verbose descriptions should not count positively and should lower the overall score.\n"
    "Only provide the numeric score, without any additional commentary.\n"
    "- Provide the final output as a Python dictionary with the structure only dont add a anything extra, because "
    "your output will be used in code pipeline. So single change in your output will crash whole system. \n"
    "# Example output : {'Location_Prediction': 10.0, 'Specificity_and_Relevance': 9.5}"
    "---\n"
    '**Question**: "{question}"\n'
    '**Ground Truth**: "{reference}"\n'
    '**Model Prediction**: "{candidate}" '
)
_GAEA_LVQA = (
    "Evaluate the following predicted answer by comparing it to the provided ground truth. Focus on the criteria "
    "below:\n"
    "1. **Location Relevance (Highest Weight)**: How accurately does the predicted answer identify and describe the "
    "specific location mentioned in the ground truth? This includes correct geographical identification and "
    "location-specific details.\n"
    "2. **Cultural Aspect Matching**: How well does the predicted answer capture and reflect the cultural aspects "
    "present in the ground truth? This includes local customs, architectural styles, landmarks, historical context, "
    "and other culturally significant elements.\n"
    "3. **Consistency and Quality of Reasoning**: Is the predicted answer logically consistent and does it "
    "demonstrate sound reasoning based on the information provided? Does it correctly interpret and infer details "
    "as presented in the ground truth?\n"
    "4. **Specificity and Relevance**: Does the predicted answer provide specific information that is directly "
    "relevant to the question and closely aligns with the ground truth? Vague or overly general descriptions that "
    "lack alignment should result in a lower score.\n"
    "5. **Fluency and Clarity**: Is the language in the predicted answer fluent, clear, and well-articulated?\n"
    "**Scoring Instructions:**\n\n"
    "- Provide a single overall score out of **10**, weighing the criteria in the order listed, with **Location "
    "Relevance** and **Cultural Aspect Matching** receiving the most weight.\n"
    "- Be rigorous in your evaluation and **do not be lenient**. Penalize the predicted answer for any vagueness, "
    "lack of specificity, or irrelevance.\n"
    "- **Vague but verbose descriptions should not count positively** and should lower the overall score.\n\n"
    "**Only provide the numeric score**, without any additional commentary.\n"
    "---\n"
    "**Question**: {question}\n"
    "**Ground Truth**: {reference}\n"
    "**Model Prediction**: {candidate}"
)
_GAEA_MATCH = (
    "Evaluate the following answer based on Accuracy:\n\n"
    "Question: {question}\n"
    "Ground Truth: {reference}\n"
    "Model Prediction: {candidate}\n\n"
    "Match the meaning of the ground truth with the model prediction and if it matches give a 10. Otherwise 0.\n"
    "Strictly return only the numeric score, without any additional commentary."
)
_GAEA_PROMPTS = {"SVQA": _GAEA_SVQA, "LVQA": _GAEA_LVQA, "MCQ": _GAEA_MATCH, "TF": _GAEA_MATCH}


def gaea_judge_prompt(record: QARecord, candidate: str) -> str:
    """GAEA's judge instruction for one answer (sent, as GAEA does, as the only message, a system one)."""
    values = {"question": question_text(record), "reference": target_text(record), "candidate": candidate.strip()}
    # One pass over the placeholders, not str.format: the SVQA text holds a literal dict in braces, and a
    # placeholder written inside an answer must stay text.
    return re.sub(r"\{(question|reference|candidate)\}", lambda match: values[match.group(1)],
                  _GAEA_PROMPTS[record.question_type])
