"""Model backends behind one protocol. Implementations are imported lazily so that torch (or an HTTP
client) loads only when that backend is chosen."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from gaea.errors import ConfigError
from gaea.types import GenerationParams, Message


@runtime_checkable
class Backend(Protocol):
    """Anything that answers a conversation. `name` is the model name shown to users."""

    name: str

    def generate(self, messages: list[Message], *, params: GenerationParams | None = None) -> str:
        """The whole answer to the conversation."""
        ...

    def stream(self, messages: list[Message], *, params: GenerationParams | None = None) -> Iterator[str]:
        """The answer as it is produced, piece by piece (joined, equal to `generate`)."""
        ...


_REGISTRY = {
    "transformers": "gaea.models.backends.transformers_backend:TransformersBackend",
    "openai": "gaea.models.backends.openai_compat:OpenAIBackend",
}


def backend_names() -> list[str]:
    return sorted(_REGISTRY)


def load_backend(name: str, **kwargs: Any) -> Backend:
    """Build the backend registered as `name` with its own keyword arguments.

    `load_backend("transformers", model="Qwen/Qwen2.5-VL-3B-Instruct", adapter=None)`;
    `load_backend("openai", base_url="http://127.0.0.1:8000/v1", model="gaea")`.
    """
    if name not in _REGISTRY:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(backend_names())}")
    module_name, class_name = _REGISTRY[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**kwargs)
