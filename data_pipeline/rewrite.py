"""Optional paraphrasing of template questions through any OpenAI-compatible LLM (vLLM, `transformers
serve`, hosted APIs), as GAEA did with Qwen2.5 and GPT-4o.

Only the question text changes; answers, options and evidence stay as the templates made them. A
paraphrase that drops a quoted name or a number of the original, or that is empty or rambling, is
discarded and the template question kept, so a rewrite can never change the facts a question rests on.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from concurrent.futures import ThreadPoolExecutor

from gaea.credentials import REWRITE_KEY_ENV
from gaea.errors import BackendError, BackendUnreachableError
from gaea.models.backends import load_backend
from gaea.osm import sanitize_text
from gaea.records import QARecord
from gaea.types import GenerationParams, Message

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You rewrite questions about where a photo was taken so that they sound natural and varied. "
    "Keep every fact, place name, quoted name and number exactly as given. Do not add facts, do not answer, "
    "do not mention options. Reply with the rewritten question only."
)
TF_PREFIX = "True or false: "
MAX_GROWTH = 3.0
_PROTECTED = re.compile(r'"[^"]+"|\d+(?:[.,]\d+)?')


def protected_spans(question: str) -> list[str]:
    """The parts a paraphrase must keep verbatim: quoted names and numbers."""
    return _PROTECTED.findall(question)


def accept_paraphrase(original: str, candidate: str) -> str | None:
    """The cleaned paraphrase, or None when it is empty, rambling or loses a protected span."""
    text = sanitize_text(candidate.strip().strip('"').strip(), max_len=int(len(original) * MAX_GROWTH) + 40)
    if not text or text.endswith("…") or text.casefold() == original.casefold():
        return None
    if any(span not in text for span in protected_spans(original)):
        return None
    return text


class QuestionRewriter:
    """Paraphrases the questions of a batch of records through an OpenAI-compatible server.

    Parameters
    ----------
    base_url
        The server's API root, e.g. ``http://127.0.0.1:8000/v1``.
    model
        The served model name.
    api_key
        The server's key (``env:NAME`` reads the variable NAME); None reads GAEA_REWRITE_API_KEY, and
        OPENAI_API_KEY only for https://api.openai.com (`gaea.credentials`).
    threads
        Requests in flight at once.
    """

    def __init__(self, base_url: str, model: str | None, *, api_key: str | None = None, threads: int = 4,
                 temperature: float = 0.7, seed: int = 0) -> None:
        self.backend = load_backend("openai", base_url=base_url, model=model, api_key=api_key, key_env=REWRITE_KEY_ENV)
        self.threads = threads
        self.params = GenerationParams(max_new_tokens=128, temperature=temperature, seed=seed)

    def __call__(self, records: list[QARecord]) -> list[QARecord]:
        if not records:
            return records
        with ThreadPoolExecutor(self.threads) as pool:
            return list(pool.map(self.rewrite_record, records))

    def rewrite_record(self, record: QARecord) -> QARecord:
        """The record with its question paraphrased (or unchanged when the paraphrase is not acceptable)."""
        question = record.question
        is_tf = question.startswith(TF_PREFIX)
        core = question[len(TF_PREFIX):] if is_tf else question
        task = "Rewrite this statement, keeping it a statement" if is_tf else "Rewrite this question"
        messages = [Message.system(SYSTEM_PROMPT), Message.user(f"{task}:\n{core}")]
        try:
            reply = self.backend.generate(messages, params=self.params)
        except BackendUnreachableError:
            raise
        except BackendError as error:
            log.warning("keeping the template question of %s: %s", record.id, error)
            return record
        accepted = accept_paraphrase(core, reply)
        if accepted is None:
            log.debug("paraphrase of %s rejected: %r", record.id, reply)
            return record
        return dataclasses.replace(record, question=TF_PREFIX + accepted if is_tf else accepted)
