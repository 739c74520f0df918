"""Failing fast, in one line, when a model or dataset must come from the Hugging Face hub and the hub is out of
reach.

Left alone, huggingface_hub retries an unreachable hub for minutes, printing a warning per try, and ends in a
traceback. Before loading a hub id we ask the hub once with a short timeout: if it answers, loading goes ahead
as usual; if not, a copy already in the local cache is loaded from there (offline mode), and anything else is a
clear error that points to what works offline. Every command that reads from the hub (ask, ui, locate, gallery,
finetune, merge, eval) goes through `prepare_hub_model` or `prepare_hub_dataset`.
"""

from __future__ import annotations

import logging
import os
import sys
from functools import lru_cache
from pathlib import Path

from gaea.errors import BackendError, BadInputError

log = logging.getLogger(__name__)

OFFLINE_DEMO = "make demo (or: gaea tiny-model --out /tmp/gaea-tiny && gaea ui --model /tmp/gaea-tiny/vlm)"
#: What works offline instead of a hub model / dataset.
OFFLINE_MODEL_HINT = f"offline, pass a local model folder, or try the tiny demo: {OFFLINE_DEMO}"
OFFLINE_DATASET_HINT = "offline, pass a local dataset (a `gaea data build` folder, a parquet or JSONL file)"


def prepare_hub_model(model: str | Path, *, what: str = "model", timeout_s: float = 5.0) -> None:
    """Make sure `model` can be loaded: a local folder, the hub reachable, or a copy in the cache.

    Raises
    ------
    BackendError
        When `model` is a hub id that is neither reachable nor in the local cache.
    """
    problem = _hub_access_problem(str(model), "model", timeout_s)
    if problem:
        raise BackendError(f"cannot download the {what} {str(model)!r}: {problem}; {OFFLINE_MODEL_HINT}")


def prepare_hub_dataset(name: str, *, what: str = "dataset", timeout_s: float = 5.0) -> None:
    """Make sure the hub dataset `name` can be loaded: the hub reachable, or a copy in the local cache.

    Raises
    ------
    BadInputError
        When `name` is a hub id that is neither reachable nor in the local cache.
    """
    problem = _hub_access_problem(name, "dataset", timeout_s)
    if problem:
        raise BadInputError(f"cannot download the {what} {name!r}: {problem}; {OFFLINE_DATASET_HINT}")


def _hub_access_problem(repo_id: str, repo_type: str, timeout_s: float) -> str | None:
    """None when `repo_id` can be loaded (a local path, the hub answers, or a cached copy), else why not."""
    from huggingface_hub import constants

    if Path(repo_id).exists() or not _is_repo_id(repo_id):
        return None  # a local path, or no hub id at all: the loader's own error names it
    cached = _cached(repo_id, repo_type)
    if constants.HF_HUB_OFFLINE:
        return None if cached else ("HF_HUB_OFFLINE is set, the Hugging Face hub cache holds no copy of it and no "
                                    "local folder has that name")
    problem = _hub_problem(constants.ENDPOINT, timeout_s)
    if problem is None:
        return None
    if cached:
        log.warning("the Hugging Face hub is out of reach (%s); loading %s from the local cache", problem, repo_id)
        _go_offline()
        return None
    return (f"the Hugging Face hub ({constants.ENDPOINT}) cannot be reached ({problem}), the cache holds no copy "
            "and no local folder has that name")


def _is_repo_id(text: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


@lru_cache(maxsize=4)
def _hub_problem(endpoint: str, timeout_s: float) -> str | None:
    """None when the hub answers an HTTP request, else what went wrong (asked once per process)."""
    import httpx

    try:
        httpx.head(endpoint, timeout=timeout_s, follow_redirects=False)
    except httpx.HTTPError as error:
        return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return None


def _cached(repo_id: str, repo_type: str) -> bool:
    """Whether the hub cache (or, for a dataset, the `datasets` cache) holds a copy of `repo_id`."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot_download(repo_id, repo_type=repo_type, local_files_only=True)
        return True
    except (LocalEntryNotFoundError, OSError, ValueError):
        pass
    if repo_type != "dataset":
        return False
    from datasets import config

    # datasets keeps what it prepared under NAMESPACE___NAME; offline, load_dataset reads it from there
    return (Path(config.HF_DATASETS_CACHE) / repo_id.replace("/", "___")).is_dir()


def _go_offline() -> None:
    from huggingface_hub import constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    datasets_config = sys.modules.get("datasets.config")  # read HF_HUB_OFFLINE when it was imported
    if datasets_config is not None:
        datasets_config.HF_HUB_OFFLINE = True
