"""Opening untrusted image files: a usable RGB photo, or an ImageError whose message says what was wrong
and what is accepted. Used by the command line, the pipeline and the app for every file they are given.
"""

from __future__ import annotations

import os
import stat
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ACCEPTED = "a photo in JPEG, PNG, WebP, GIF, BMP, TIFF or ICO format"
MAX_PIXELS = 50_000_000  # as declared in the header: a decompression bomb is refused before decoding
MAX_SIDE = 2048  # larger photos are downscaled on load; the model sees at most a few hundred pixels
MAX_ASPECT = 8.0  # longer sides are center-cropped: the model's center crop lies inside what is kept


class ImageError(ValueError):
    """A file that cannot be used as a photo; the message is meant for the person who gave it."""


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode as RGB, sensibly: transparency over white, 16-bit and float images scaled to 8 bits."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = (0.0, 65535.0) if image.mode.startswith("I;16") else (values.min(), values.max())
        scaled = (values - low) / max(high - low, 1e-12) * 255
        return Image.fromarray(np.clip(scaled.round(), 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        image = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image).convert("RGB")
    return image.convert("RGB")


SPECIAL_FILES = [(stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                 (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")]


def corrupt(name: str, error: BaseException) -> ImageError:
    """The one message for a file the decoder fails on, whatever it raised."""
    reason = (str(error).strip().splitlines() or [""])[0][:200] or type(error).__name__
    return ImageError(f"{name} is truncated or corrupt and cannot be read ({reason}). Upload {ACCEPTED}.")


@contextmanager
def decoding(name: str):
    """Any failure of the decoder inside the block as ImageError. Pillow's decoders and its EXIF, ICC and XMP
    parsers raise far more than OSError on a malformed file (struct.error, IndexError, KeyError, TypeError,
    ZeroDivisionError, ...), and they all mean the same to the person who gave it: this file cannot be read.
    MemoryError goes on (the machine, not the file; and KeyboardInterrupt and SystemExit are not Exceptions)."""
    try:
        yield
    except (ImageError, MemoryError):
        raise
    except Exception as error:  # noqa: BLE001 - see above: anything a malformed file makes the decoder raise
        raise corrupt(name, error) from None


def special_kind(mode: int) -> str | None:
    """What a file of this st_mode is when it is not a regular file ("a named pipe (FIFO)", ...); None if it is."""
    return None if stat.S_ISREG(mode) else next((what for test, what in SPECIAL_FILES if test(mode)), "not a file")


def open_regular(path: Path) -> BinaryIO:
    """`path` opened for reading if it is a regular file (a link to one included); ImageError naming what it is
    otherwise. Opened without blocking, then checked: a named pipe cannot stall the reader, and what is checked is
    what is read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise ImageError(f"There is no file {path.name}.") from None
    except OSError as error:  # a socket, a folder on Windows, a file we may not read
        try:
            kind = special_kind(os.stat(path).st_mode)
        except OSError:
            kind = None
        reason = f"is {kind}, not an image file" if kind else f"cannot be opened ({error.strerror or error})"
        raise ImageError(f"{path.name} {reason}. Upload {ACCEPTED}.") from None
    kind = special_kind(os.fstat(fd).st_mode)
    if kind is not None:
        os.close(fd)
        raise ImageError(f"{path.name} is {kind}, not an image file. Upload {ACCEPTED}.")
    return os.fdopen(fd, "rb")


def load_image(path: str | Path, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE) -> Image.Image:
    """The first frame of an image file as an RGB photo, EXIF orientation applied, downscaled to
    `max_side` and cropped to an aspect ratio of at most MAX_ASPECT. Raises ImageError, and nothing else for
    anything in the file (MemoryError excepted)."""
    path = Path(path)
    with open_regular(path) as file:
        if os.fstat(file.fileno()).st_size == 0:
            raise ImageError(f"{path.name} is empty. Upload {ACCEPTED}.")
        with decoding(path.name):
            return decode(file, path.name, max_pixels, max_side)


def decode(file: BinaryIO, name: str, max_pixels: int, max_side: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own, lower limit follows
            image = Image.open(file)
    except Image.DecompressionBombError:
        raise ImageError(f"{name} declares more pixels than can be decoded safely; the limit is "
                         f"{max_pixels / 1e6:.0f} megapixels. Upload a smaller photo.") from None
    except (UnidentifiedImageError, OSError):
        raise ImageError(f"{name} is not an image that can be read (is it text, HTML, SVG or PDF?). "
                         f"Upload {ACCEPTED}.") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError(f"{name} is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels), above "
                             f"the limit of {max_pixels / 1e6:.0f} megapixels. Upload a smaller photo.")
        if width < 1 or height < 1:
            raise ImageError(f"{name} has no pixels ({width}x{height}). Upload {ACCEPTED}.")
        image.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale, cheaply
        image.seek(0)  # the first frame of an animation or a multi-page file
        image.load()
        photo = ImageOps.exif_transpose(image)
    kept = aspect_crop_box(*photo.size)
    if kept != (0, 0, *photo.size):  # before converting: a long strip would otherwise be converted whole
        photo = photo.crop(kept)
    photo = to_rgb(photo)
    if max(photo.size) > max_side:
        photo.thumbnail((max_side, max_side), Image.BICUBIC)
    return photo


def displayed_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file as a viewer shows it (EXIF orientation applied), from its header.
    Raises ImageError."""
    path = Path(path)
    with open_regular(path) as file, decoding(path.name), Image.open(file) as image:
        width, height = image.size
        return (height, width) if image.getexif().get(0x0112) in (5, 6, 7, 8) else (width, height)


def aspect_crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box of a width x height image that load_image keeps: all of it, or for a
    panorama-like image the centre of its long side, MAX_ASPECT times the short side."""
    if max(width, height) <= MAX_ASPECT * min(width, height):
        return 0, 0, width, height
    if width > height:
        keep = int(MAX_ASPECT * height)
        left = (width - keep) // 2
        return left, 0, left + keep, height
    keep = int(MAX_ASPECT * width)
    top = (height - keep) // 2
    return 0, top, width, top + keep
