"""Our own prompts: the question as the evaluated model sees it, and the LLM judge's instructions.

The judge never sees the image: it compares the candidate answer with the reference answer, which is
how GAEA scores its benchmark. Every judge reply must be one JSON object; the schema is in the prompt.
"""

from __future__ import annotations

from gaea.records import QARecord

OPTION_LETTERS = "ABCDEFGH"

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


def question_prompt(record: QARecord) -> str:
    """The question as the evaluated model sees it; multiple-choice options lettered A, B, C, ..."""
    if record.question_type == "MCQ" and record.options:
        lines = [record.question, ""]
        lines += [f"{OPTION_LETTERS[index]}. {option}" for index, option in enumerate(record.options)]
        lines += ["", "Answer with the letter of the correct option."]
        return "\n".join(lines)
    if record.question_type == "TF":
        return f"{record.question}\nAnswer yes or no."
    return record.question


def judge_prompt(record: QARecord, candidate: str) -> str:
    """The judge's task for one answer: rubric, question, reference, candidate, and the reply schema."""
    return "\n".join(
        [
            _RUBRICS[record.question_type],
            "",
            f"Question:\n{question_prompt(record)}",
            "",
            f"Reference answer:\n{record.answer}",
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
