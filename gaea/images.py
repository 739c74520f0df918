"""Opening user images safely: one place that turns every bad file into a clear BadInputError."""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from gaea.errors import BadInputError
from gaea.settings import get_settings

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".bmp", ".tif", ".tiff", ".gif"}

_heif_registered = False


def register_heif() -> bool:
    """Teach Pillow to open HEIC/HEIF (iPhone photos) when pillow-heif is installed."""
    global _heif_registered
    if not _heif_registered:
        try:
            from pillow_heif import register_heif_opener
        except ImportError:
            return False
        register_heif_opener()
        _heif_registered = True
    return True


def load_image(path: str | Path, *, max_bytes: int | None = None, max_pixels: int | None = None) -> Image.Image:
    """Open and fully decode an image file as RGB.

    Raises
    ------
    BadInputError
        When the file is missing, empty, too large, not an image, or truncated/corrupt.
    """
    settings = get_settings()
    max_bytes = settings.max_image_bytes if max_bytes is None else max_bytes
    max_pixels = settings.max_image_pixels if max_pixels is None else max_pixels
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path}: no such file")
    if not path.is_file():
        raise BadInputError(f"{path}: not a file")
    size = path.stat().st_size
    if size == 0:
        raise BadInputError(f"{path}: the file is empty")
    if size > max_bytes:
        raise BadInputError(f"{path}: the file is {size / 1e6:.1f} MB, more than the {max_bytes / 1e6:.0f} MB allowed")
    register_heif()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > max_pixels:
                    raise BadInputError(
                        f"{path}: the image is {image.width}x{image.height} pixels, "
                        f"more than the {max_pixels:,} allowed"
                    )
                image.load()
                return image.convert("RGB")
    except UnidentifiedImageError as error:
        raise BadInputError(f"{path}: not an image (Pillow cannot identify its format)") from error
    except (OSError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise BadInputError(f"{path}: the image is corrupt or truncated ({error})") from error
