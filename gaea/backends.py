"""Where users import backends from (`from gaea.backends import load_backend`); they live in `gaea.models`."""

from gaea.models.backends import Backend, backend_names, load_backend

__all__ = ["Backend", "backend_names", "load_backend"]
