"""GAEA-Bench scoring: strict judge-reply parsing, the score arithmetic on recorded judge replies, the judge's
retry and error path against a real HTTP server, and judge-free matching (with the real MiniLM embedder)."""

from __future__ import annotations

import json

import pytest

from eval.judge import JudgeParseError, LLMJudge, parse_judge_reply, score_of
from eval.judge_free import EmbeddingScorer, JudgeFreeScorer, extract_option, extract_yes_no
from eval.scoring import aggregate
from gaea.models.backends import load_backend
from gaea.records import QARecord
from tests.servers import Reply, scripted_http_server

# Judge replies as GPT-4o-style judges write them, with the 0-10 score each must give.
RECORDED_REPLIES = [
    ("MCQ", '{"match": true}', 10.0),
    ("MCQ", '```json\n{"match": false}\n```', 0.0),
    ("MCQ", 'Here is my verdict: {"match": true}', 10.0),
    ("MCQ", "10", 10.0),
    ("TF", '{"match": "yes"}', 10.0),
    ("TF", '{"match": false}', 0.0),
    ("TF", '{"match": false}', 0.0),
    ("SVQA", '{"location_prediction": 8, "specificity_relevance": 6}', 7.0),
    ("SVQA", '{"location_prediction": 10, "specificity_relevance": 9}', 9.5),
    ("SVQA", "Location prediction: 3\nSpecificity and relevance: 4", 3.5),
    ("LVQA", '{"score": 9}', 9.0),
    ("LVQA", "Score: 6/10", 6.0),
    ("LVQA", '{"score": 7.5, "reason": "right city, thin on culture"}', 7.5),
]

UNREADABLE_REPLIES = [
    ("MCQ", "The candidate is probably right."),
    ("MCQ", '{"match": "maybe"}'),
    ("TF", "5"),
    ("SVQA", '{"location_prediction": 8}'),
    ("SVQA", "I would give it 7 because Arezzo is in Tuscany"),
    ("LVQA", '{"score": 11}'),
    ("LVQA", "7 8"),
    ("LVQA", ""),
    ("LVQA", '{"latitude": 43.4674, "longitude": 11.8851}'),
]


@pytest.mark.parametrize(("qtype", "reply", "expected"), RECORDED_REPLIES)
def test_recorded_reply_gives_its_score(qtype, reply, expected):
    assert score_of(parse_judge_reply(reply, qtype)) == expected


@pytest.mark.parametrize(("qtype", "reply"), UNREADABLE_REPLIES)
def test_unreadable_reply_is_refused(qtype, reply):
    with pytest.raises(JudgeParseError):
        parse_judge_reply(reply, qtype)


def _sample(qtype, score, error=None):
    return {"id": f"{qtype}-{score}-{error}", "question_type": qtype, "score": score, "error": error}


def test_score_arithmetic_on_recorded_replies():
    samples = [_sample(qtype, score_of(parse_judge_reply(reply, qtype))) for qtype, reply, _ in RECORDED_REPLIES]
    samples.append(_sample("LVQA", None, "judge parse: no JSON object"))
    samples.append(_sample("TF", None, "model: HTTP 500"))
    results = aggregate(samples)
    # MCQ 10,0,10,10 -> 75; TF 10,0,0 -> 33.3; SVQA 7,9.5,3.5 -> 66.7; LVQA 9,6,7.5 -> 75 (the error left out)
    assert results["scores"]["MCQ"] == pytest.approx(75.0)
    assert results["scores"]["TF"] == pytest.approx(100 / 3)
    assert results["scores"]["SVQA"] == pytest.approx(200 / 3)
    assert results["scores"]["LVQA"] == pytest.approx(75.0)
    assert results["scores"]["overall"] == pytest.approx((75 + 100 / 3 + 200 / 3 + 75) / 4)
    assert results["counts"]["LVQA"] == {"items": 4, "scored": 3, "errors": 1}
    assert results["counts"]["TF"] == {"items": 4, "scored": 3, "errors": 1}
    assert results["errors"] == {"judge parse": 1, "model": 1}
    # the pessimistic reading counts each unscored item as 0
    assert results["scores_errors_as_zero"]["LVQA"] == pytest.approx(10 * 22.5 / 4)
    assert results["scores_errors_as_zero"]["TF"] == pytest.approx(25.0)


def test_overall_is_the_unweighted_mean_of_types_present():
    samples = [_sample("MCQ", 10.0)] * 9 + [_sample("LVQA", 2.0)]
    scores = aggregate(samples)["scores"]
    assert scores["MCQ"] == 100.0 and scores["LVQA"] == 20.0 and scores["TF"] is None
    assert scores["overall"] == pytest.approx(60.0)  # not the item mean 92


def _completion(text: str) -> str:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]})


RECORD = QARecord(id="q1", image="a.jpg", question="Which city is this?", answer="Arezzo", question_type="SVQA")


def test_judge_asks_again_after_an_unreadable_reply():
    replies = [Reply(body=_completion("Great answer!")), Reply(body=_completion('{"location_prediction": 9, '
                                                                              '"specificity_relevance": 7}'))]
    with scripted_http_server(replies) as server:
        judge = LLMJudge(load_backend("openai", base_url=server.base_url, model="judge", retries=0))
        verdict = judge.judge(RECORD, "Arezzo, Tuscany")
    assert verdict.score == 8.0 and verdict.error is None
    assert verdict.replies == ["Great answer!", '{"location_prediction": 9, "specificity_relevance": 7}']
    assert len(server.requests) == 2


def test_judge_records_an_error_when_every_reply_is_unreadable():
    with scripted_http_server([Reply(body=_completion("score it yourself"))]) as server:
        judge = LLMJudge(load_backend("openai", base_url=server.base_url, model="judge", retries=0), attempts=3)
        verdict = judge.judge(RECORD, "Arezzo")
    assert verdict.score is None
    assert verdict.error.startswith("judge parse:")
    assert len(verdict.replies) == 3 and len(server.requests) == 3


def test_judge_server_failure_is_an_error_not_a_score():
    with scripted_http_server([Reply(status=503, body='{"error": {"message": "overloaded"}}')]) as server:
        judge = LLMJudge(load_backend("openai", base_url=server.base_url, model="judge", retries=1))
        verdict = judge.judge(RECORD, "Arezzo")
    assert verdict.score is None and verdict.error.startswith("judge backend:")
    assert "overloaded" in verdict.error and len(server.requests) == 2


@pytest.mark.parametrize(
    ("text", "options", "expected"),
    [
        ("B", None, "B"),
        ("(c) Paris", None, "C"),
        ("b.", None, "B"),
        ("The answer is D.", None, "D"),
        ("Answer: A", None, "A"),
        ("a cafe", ["museum", "cafe", "school", "post office"], "B"),
        ("A post office, about 300 m away", ["museum", "cafe", "school", "post office"], "D"),
        ("I am not sure", ["museum", "cafe", "school", "post office"], None),
        ("A or B", None, None),
    ],
)
def test_option_extraction(text, options, expected):
    assert extract_option(text, options) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes.", "yes"), ("No, it is not.", "no"), ("True", "yes"), ("false", "no"),
        ("maybe yes, maybe no", None), ("No, that is not true.", "no"), ("?", None),
    ],
)
def test_yes_no_extraction(text, expected):
    assert extract_yes_no(text) == expected


@pytest.fixture(scope="module")
def judge_free():
    return JudgeFreeScorer(EmbeddingScorer())


def test_judge_free_matches_exactly(judge_free):
    mcq = QARecord(id="m", image="", question="Which is near?", answer="C", question_type="MCQ",
                   options=["bank", "museum", "railway station", "harbour"])
    assert judge_free.judge(mcq, "C. railway station").score == 10.0
    assert judge_free.judge(mcq, "railway station").score == 10.0
    assert judge_free.judge(mcq, "B").score == 0.0
    tf = QARecord(id="t", image="", question="Do people drive on the left?", answer="False", question_type="TF")
    assert judge_free.judge(tf, "No, they drive on the right.").score == 10.0
    assert judge_free.judge(tf, "Yes.").score == 0.0


def test_judge_free_similarity_ranks_a_paraphrase_above_an_unrelated_answer(judge_free):
    record = QARecord(id="s", image="", question="Where was this photo taken?",
                      answer="In the old town of Arezzo, Tuscany, Italy, near the cathedral.", question_type="LVQA")
    close = judge_free.judge(record, "This is Arezzo in Tuscany, Italy, close to the cathedral in the old town.")
    far = judge_free.judge(record, "A snowy mountain pass in the Canadian Rockies with pine forests.")
    assert 0.0 <= far.score < close.score <= 10.0
    assert close.score > 7.0
    assert judge_free.judge(record, "").score == 0.0
