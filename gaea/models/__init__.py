"""Model plumbing: backends (transformers in-process, any OpenAI-compatible server), VLM loading, LoRA
adapters, hub access, tiny offline models, and serving (vLLM / transformers serve)."""

from gaea.models.backends import Backend, backend_names, load_backend

__all__ = ["Backend", "backend_names", "load_backend"]
