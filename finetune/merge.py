"""Merging a LoRA adapter into its base model's weights (`gaea finetune merge`).

The merged folder is an ordinary checkpoint: it loads with `from_pretrained`, serves in vLLM without
`--enable-lora`, and carries the processor so it is complete on its own.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from gaea.errors import BadInputError, ConfigError
from gaea.models.hub import prepare_hub_model

log = logging.getLogger(__name__)

DTYPES = ("bfloat16", "float16", "float32")


def merge_adapter(base: str | Path, adapter: str | Path, out_dir: str | Path, *, dtype: str = "bfloat16") -> Path:
    """Merge the LoRA `adapter` into `base` and save the result (weights + processor) to `out_dir`.

    The folder appears whole or not at all: it is written beside `out_dir` and renamed into place.

    Raises
    ------
    BadInputError
        When `adapter` is not an adapter folder or `out_dir` exists and is not empty.
    BackendError
        When `base` is a hub id out of reach (one line, within seconds).
    ConfigError
        When `dtype` is unknown or `base` cannot be loaded.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise BadInputError(f"{out}: the output folder exists and is not empty")
    prepare_hub_model(base, what="base model")  # before torch loads: an offline failure is fast
    import torch
    from transformers import AutoModelForImageTextToText

    from gaea.models.adapters import adapter_weights_file, load_adapter
    from gaea.models.vlm import load_processor

    adapter_weights_file(adapter)
    try:
        model = AutoModelForImageTextToText.from_pretrained(str(base), dtype=getattr(torch, dtype))
    except (OSError, ValueError) as error:
        raise ConfigError(f"base model {str(base)!r}: cannot load it ({error})") from error
    merged = load_adapter(model, adapter).merge_and_unload()
    processor = load_processor(base)  # training never changes the processor
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        merged.save_pretrained(str(staging))
        processor.save_pretrained(str(staging))
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("merged %s into %s; saved to %s", adapter, base, out)
    return out
