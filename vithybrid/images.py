"""Opening untrusted image files: a usable RGB photo, or an ImageError whose message says what was wrong
and what is accepted. Used by the command line, the pipeline and the app for every file they are given.
"""

from __future__ import annotations

import warnings
from pathlib import Path

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


def load_image(path: str | Path, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE) -> Image.Image:
    """The first frame of an image file as an RGB photo, EXIF orientation applied, downscaled to
    `max_side` and cropped to an aspect ratio of at most MAX_ASPECT. Raises ImageError."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"There is no file {path.name}.")
    if path.stat().st_size == 0:
        raise ImageError(f"{path.name} is empty. Upload {ACCEPTED}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own, lower limit follows
            image = Image.open(path)
    except Image.DecompressionBombError:
        raise ImageError(f"{path.name} declares more pixels than can be decoded safely; the limit is "
                         f"{max_pixels / 1e6:.0f} megapixels. Upload a smaller photo.") from None
    except (UnidentifiedImageError, OSError):
        raise ImageError(f"{path.name} is not an image that can be read (is it text, HTML, SVG or PDF?). "
                         f"Upload {ACCEPTED}.") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError(f"{path.name} is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels), above "
                             f"the limit of {max_pixels / 1e6:.0f} megapixels. Upload a smaller photo.")
        if width < 1 or height < 1:
            raise ImageError(f"{path.name} has no pixels ({width}x{height}). Upload {ACCEPTED}.")
        image.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale, cheaply
        try:
            image.seek(0)  # the first frame of an animation or a multi-page file
            image.load()
            photo = ImageOps.exif_transpose(image)
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise ImageError(f"{path.name} is truncated or corrupt ({error}). Upload {ACCEPTED}.") from None
    photo = to_rgb(photo)
    kept = aspect_crop_box(*photo.size)
    if kept != (0, 0, *photo.size):
        photo = photo.crop(kept)
    if max(photo.size) > max_side:
        photo.thumbnail((max_side, max_side), Image.BICUBIC)
    return photo


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
