"""Loading LoRA adapters saved against the older Qwen2-VL / Qwen2.5-VL module layout.

Before transformers 4.52 the language model's layers sat at ``model.layers.*`` and the vision tower at
``visual.*``; today they are ``model.language_model.layers.*`` and ``model.visual.*``. Adapters trained
then, such as GAEA's released ``ucf-crcv/GAEA-7B``, name their weights the old way, and PEFT would
leave every LoRA layer at its initial (zero) update without a word. We recognise such adapters by
their key names, rename the keys on load, and say so in the log.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gaea.errors import BadInputError

log = logging.getLogger(__name__)

# Old key (after PEFT's "base_model.model." prefix) -> new key; the first pattern that matches wins.
LEGACY_KEY_MAPPING: dict[str, str] = {
    r"^visual\.": "model.visual.",
    r"^model\.(?!language_model\.|visual\.)": "model.language_model.",
}
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")
_PREFIX = "base_model.model."
_ADAPTER_LEAF = re.compile(r"\.(lora_[AB]|lora_embedding_[AB]|lora_magnitude_vector|modules_to_save)(\..*)?$")


def local_adapter_dir(adapter: str | Path) -> Path:
    """A local folder holding `adapter`: the folder itself, or a hub repository downloaded to the cache."""
    if Path(adapter).is_dir():
        return Path(adapter)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(str(adapter)))


def adapter_weights_file(adapter: str | Path) -> Path:
    """The weights file of a local adapter folder."""
    folder = Path(adapter)
    for name in ADAPTER_FILES:
        if (folder / name).is_file():
            return folder / name
    raise BadInputError(f"{folder}: not an adapter folder (no {' or '.join(ADAPTER_FILES)})")


def read_adapter_keys(adapter: str | Path) -> list[str]:
    """The tensor names stored in an adapter, without loading the tensors."""
    path = adapter_weights_file(adapter)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            return list(handle.keys())
    return list(torch.load(path, map_location="cpu", weights_only=True))


def legacy_key_mapping(keys: list[str], model: nn.Module) -> dict[str, str]:
    """LEGACY_KEY_MAPPING when `keys` name modules the way `model` no longer does, else an empty mapping.

    Raises
    ------
    BadInputError
        When some keys name modules that `model` lacks under both the old and the new layout.
    """
    # LoRA keys name a module (…q_proj.lora_A.weight); full copies of modules_to_save name a parameter.
    known = {name for name, _ in model.named_modules()} | {name for name, _ in model.named_parameters()}
    stale = [key for key in keys if _module_of(key) not in known]
    if not stale:
        return {}
    unresolved = [key for key in stale if _remap(_module_of(key)) not in known]
    if unresolved:
        raise BadInputError(
            f"{len(unresolved)} adapter weight(s) name modules this model does not have, e.g. {unresolved[0]!r}: "
            "was the adapter trained on another base model?"
        )
    return dict(LEGACY_KEY_MAPPING)


def _module_of(key: str) -> str:
    # saved embedding layers (tied output heads) keep the wrapped layer under `base_layer`
    return _ADAPTER_LEAF.sub("", key.removeprefix(_PREFIX)).replace(".base_layer.", ".")


def _remap(name: str) -> str:
    for pattern, replacement in LEGACY_KEY_MAPPING.items():
        renamed, count = re.subn(pattern, replacement, name)
        if count:
            return renamed
    return name


def load_adapter(model: nn.Module, adapter: str | Path, *, is_trainable: bool = False) -> Any:
    """`model` wrapped with the LoRA adapter in folder `adapter`, old key names remapped when needed.

    Raises
    ------
    BadInputError
        When `adapter` is not an adapter folder, or its weights do not fit `model`.
    """
    from peft import PeftModel

    adapter = local_adapter_dir(adapter)
    keys = read_adapter_keys(adapter)
    mapping = legacy_key_mapping(keys, _unwrapped(model))
    if mapping:
        log.warning(
            "adapter %s uses the older module names (model.layers.*, visual.*) that current transformers no longer "
            "loads; remapping its %d weights to model.language_model.layers.* / model.visual.*",
            adapter, len(keys),
        )
    return PeftModel.from_pretrained(model, str(adapter), is_trainable=is_trainable, key_mapping=mapping or None)


def _unwrapped(model: nn.Module) -> nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def convert_legacy_adapter(adapter: str | Path, out_dir: str | Path) -> int:
    """Write a copy of `adapter` with its keys in the current layout; returns how many keys were renamed."""
    import shutil

    from safetensors.torch import load_file, save_file

    source = adapter_weights_file(adapter)
    weights = load_file(str(source)) if source.suffix == ".safetensors" else torch.load(source, weights_only=True)
    renamed = {}
    count = 0
    for key, value in weights.items():
        new = _PREFIX + _remap(key.removeprefix(_PREFIX)) if key.startswith(_PREFIX) else key
        count += new != key
        renamed[new] = value.contiguous()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for item in Path(adapter).iterdir():
        if item.is_file() and item.name not in ADAPTER_FILES:
            shutil.copy2(item, out / item.name)
    tmp = out / ".adapter_model.safetensors.tmp"
    save_file(renamed, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, out / "adapter_model.safetensors")  # readers never see a half-written file
    log.info("renamed %d of %d adapter keys; wrote %s", count, len(renamed), out)
    return count
