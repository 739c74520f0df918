"""Optional packages and the extra of `pyproject.toml` that installs each, so that a feature whose package is
missing says in one line what to install instead of failing deep inside a library."""

from __future__ import annotations

import importlib.util

from gaea.errors import ConfigError

#: module -> extra (`pip install -e .[EXTRA]`)
EXTRAS = {"bitsandbytes": "quant", "deepspeed": "deepspeed", "vllm": "serve", "wandb": "wandb"}


def install_hint(module: str) -> str:
    """How to install `module`: its extra, from a clone and from PyPI."""
    extra = EXTRAS[module]
    return f"pip install -e .[{extra}] (or: pip install 'gaea-geolocation[{extra}]')"


def require(module: str, *, needed_for: str) -> None:
    """Raise ConfigError naming the extra to install when `module` is not installed.

    Parameters
    ----------
    module
        A key of EXTRAS.
    needed_for
        What needs it, as the message starts, e.g. "the recipe's deepspeed setting".
    """
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{needed_for} needs {module}, which is not installed: {install_hint(module)}")
