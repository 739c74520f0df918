"""Failing fast, in one line, when a model must come from the Hugging Face hub and the hub is out of reach.

Left alone, huggingface_hub retries an unreachable hub for minutes, printing a warning per try. Before
loading a hub id we ask the hub once with a short timeout: if it answers, loading goes ahead as usual;
if not, a model already in the local cache is loaded from there (offline mode), and any other model is
a clear error that points to the offline demo.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from gaea.errors import BackendError

log = logging.getLogger(__name__)

OFFLINE_DEMO = "make demo (or: gaea tiny-model --out /tmp/gaea-tiny && gaea ui --model /tmp/gaea-tiny/vlm)"


def prepare_hub_model(model: str | Path, *, what: str = "model", timeout_s: float = 5.0) -> None:
    """Make sure `model` can be loaded: a local folder, the hub reachable, or a copy in the cache.

    Raises
    ------
    BackendError
        When `model` is a hub id, the hub cannot be reached and the cache has no copy of it.
    """
    from huggingface_hub import constants

    if Path(str(model)).exists() or constants.HF_HUB_OFFLINE:
        return
    problem = _hub_problem(timeout_s)
    if problem is None:
        return
    if _cached(str(model)):
        log.warning("the Hugging Face hub is out of reach (%s); loading %s from the local cache", problem, model)
        _go_offline()
        return
    raise BackendError(
        f"cannot download the {what} {model!r}: the Hugging Face hub ({constants.ENDPOINT}) cannot be reached "
        f"({problem}) and the model is not in the local cache; offline, try the tiny demo: {OFFLINE_DEMO}"
    )


def _hub_problem(timeout_s: float) -> str | None:
    """None when the hub answers an HTTP request, else what went wrong."""
    import httpx
    from huggingface_hub import constants

    try:
        httpx.head(constants.ENDPOINT, timeout=timeout_s, follow_redirects=False)
    except httpx.HTTPError as error:
        return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return None


def _cached(model: str) -> bool:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot_download(model, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        return False
    return True


def _go_offline() -> None:
    from huggingface_hub import constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
