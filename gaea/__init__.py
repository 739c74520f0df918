"""GAEA: a conversational image-geolocation assistant."""

from typing import TYPE_CHECKING

__all__ = ["Assistant", "__version__"]

__version__ = "0.1.0"

if TYPE_CHECKING:
    from gaea.assistant import Assistant


def __getattr__(name: str):
    # Lazy so that `import gaea` (and `gaea --help`) never loads torch.
    if name == "Assistant":
        from gaea.assistant import Assistant

        return Assistant
    raise AttributeError(f"module 'gaea' has no attribute {name!r}")
