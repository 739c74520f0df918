"""The one gate every image passes before its pixels are decoded, whoever opens it (data build, galleries,
eval, the chat, `gaea ask`), with the same limits everywhere (`GAEA_MAX_IMAGE_BYTES`, `GAEA_MAX_IMAGE_PIXELS`).

A file is opened only if it is a regular file (a named pipe called ``x.jpg`` would block forever, a
device would never end), no larger than the byte limit, an image Pillow can identify, and no larger
than the pixel limit as its header declares it: a decompression bomb is refused before a single pixel is
decoded. Every refusal is a `PhotoRejected` (a BadInputError) whose message names the image and the
problem and whose `reason` is a short code for reports.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from gaea.errors import PhotoRejected
from gaea.io import readable_name
from gaea.settings import get_settings

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".bmp", ".tif", ".tiff", ".gif"}

#: An image as the gate takes it: a file path, or the encoded bytes of a picture held in a dataset.
ImageSource = str | Path | bytes

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


@contextmanager
def open_image(source: ImageSource, *, name: str | None = None, max_bytes: int | None = None,
               max_pixels: int | None = None) -> Iterator[Image.Image]:
    """The image `source`, opened through the gate, its pixels not decoded yet; closed on leaving.

    `name` is how messages call it (default: the path). Decode it with `decode(image, name=...)`.

    Raises
    ------
    PhotoRejected
        With reason missing, not_a_file, unreadable, empty, too_large, not_an_image or corrupt.
    """
    settings = get_settings()
    max_bytes = settings.max_image_bytes if max_bytes is None else max_bytes
    max_pixels = settings.max_image_pixels if max_pixels is None else max_pixels
    name = _label(source, name)
    handle = io.BytesIO(source) if isinstance(source, bytes) else _open_regular_file(source, name=name)
    with handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(0)
        if size == 0:
            raise PhotoRejected("empty", f"{name}: the file is empty")
        if size > max_bytes:
            raise PhotoRejected("too_large", f"{name}: the file is {size / 1e6:.1f} MB, more than the "
                                             f"{max_bytes / 1e6:.0f} MB allowed (GAEA_MAX_IMAGE_BYTES)")
        with _identified(handle, name=name) as image:
            if image.width * image.height > max_pixels:
                raise PhotoRejected("too_large", f"{name}: the image is {image.width}x{image.height} pixels, more "
                                                 f"than the {max_pixels:,} allowed (GAEA_MAX_IMAGE_PIXELS)")
            yield image


def _label(source: ImageSource, name: str | None) -> str:
    return name or (readable_name(str(source)) if not isinstance(source, bytes) else "the image")


def _open_regular_file(path: str | Path, *, name: str) -> BinaryIO:
    """`path` opened for reading if it is a regular file; FIFOs, sockets and devices are refused unopened."""
    try:
        # O_NONBLOCK: opening a named pipe returns at once instead of waiting for a writer; fstat then tells.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError as error:
        raise PhotoRejected("missing", f"{name}: no such file") from error
    except (UnicodeEncodeError, ValueError) as error:  # a lone surrogate or a NUL byte: no file can have it
        raise PhotoRejected("unreadable", f"{name}: not a possible file name ({error})") from error
    except OSError as error:  # a socket cannot be opened at all; say what it is rather than "no such device"
        mode = _mode(path)
        if mode is not None and not stat.S_ISREG(mode):
            raise PhotoRejected("not_a_file", f"{name}: not a regular file (a {_file_kind(mode)})") from error
        raise PhotoRejected("unreadable", f"{name}: cannot be opened ({error.strerror or error})") from error
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise PhotoRejected("not_a_file", f"{name}: not a regular file (a {_file_kind(mode)})")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _mode(path: str | Path) -> int | None:
    try:
        return os.stat(path).st_mode
    except OSError:
        return None


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"),
             (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))
    return next((kind for test, kind in kinds if test(mode)), "special file")


@contextmanager
def _identified(handle: BinaryIO, *, name: str) -> Iterator[Image.Image]:
    register_heif()
    try:
        with warnings.catch_warnings():
            # Our pixel limit is applied right after the header is read; Pillow's own, lower, is not ours.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(handle)
    except UnidentifiedImageError as error:
        raise PhotoRejected("not_an_image", f"{name}: not an image (Pillow cannot identify its format)") from error
    except Image.DecompressionBombError as error:  # so large that Pillow refuses to read even its header
        raise PhotoRejected("too_large", f"{name}: the image has far more pixels than allowed ({error})") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise PhotoRejected("corrupt", f"{name}: the image is corrupt or truncated ({error})") from error
    with image:
        yield image


def decode(image: Image.Image, *, name: str, draft: bool = False) -> None:
    """Decode the pixels of an image opened by `open_image`; a corrupt or truncated one is a PhotoRejected.

    With `draft`, a JPEG is decoded at reduced size: the whole stream is still read, so truncation shows
    at a fraction of the cost (for checking a photo whose pixels are not needed).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if draft:
                image.draft("RGB", (256, 256))
            image.load()
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise PhotoRejected("corrupt", f"{name}: the image is corrupt or truncated ({error})") from error


def load_image(source: ImageSource, *, name: str | None = None, max_bytes: int | None = None,
               max_pixels: int | None = None) -> Image.Image:
    """Open `source` through the gate and decode it fully as RGB.

    Raises
    ------
    PhotoRejected
        A BadInputError: the file is missing, not a regular file, empty, too large, not an image, or corrupt.
    """
    with open_image(source, name=name, max_bytes=max_bytes, max_pixels=max_pixels) as image:
        decode(image, name=_label(source, name))
        return image.convert("RGB")
