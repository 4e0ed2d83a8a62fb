"""Training data: the shapes generator or an image folder (one subfolder per class), with augmentation.

Every item is reproducible from (seed, epoch, index), whatever the order or number of data-loading
workers: the generator draws fresh images each epoch, and augmentation draws from its own stream.
A folder that cannot be trained on raises DataError, whose message names the folder or file at fault.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter

from . import shapes
from ..images import ImageError, decoding, load_image, open_regular
from ..model.processing import ViTHybridImageProcessor

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
Transform = Callable[[Image.Image, np.random.Generator], Image.Image]


class DataError(ValueError):
    """The training data cannot be used; the message names the folder or file and says what to fix."""


@dataclass(frozen=True)
class Augmentation:
    """Random resized crop, horizontal flip, colour jitter, blur and JPEG re-compression of a PIL image."""

    size: int
    scale: tuple[float, float] | None = (0.35, 1.0)  # of the image area kept by the crop; None: no crop
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect ratio of the crop, stretched back to square
    jitter: float = 0.3  # brightness, contrast and saturation factors in [1 - jitter, 1 + jitter]
    blur_p: float = 0.2
    jpeg_p: float = 0.2

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        box = self.crop_box(*image.size, rng) if self.scale else None
        image = image.convert("RGB").resize((self.size, self.size), Image.BICUBIC, box=box)
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        for enhance in rng.permutation([ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color]):
            image = enhance(image).enhance(rng.uniform(1 - self.jitter, 1 + self.jitter))
        if rng.random() < self.blur_p:
            image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
        if rng.random() < self.jpeg_p:
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=int(rng.integers(40, 95)))
            image = Image.open(buffer).convert("RGB")
        return image

    def crop_box(self, width: int, height: int, rng: np.random.Generator) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) of a random crop of the given area and aspect ranges (Inception-style)."""
        area = width * height
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = np.exp(rng.uniform(*np.log(self.ratio)))
            w, h = np.sqrt(target * aspect), np.sqrt(target / aspect)
            if w <= width and h <= height:
                left, top = rng.uniform(0, width - w), rng.uniform(0, height - h)
                return left, top, left + w, top + h
        side = min(width, height)  # fall back to the central square
        return (width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2


# No crop for generated shapes: they already vary in position and size, a crop could cut a shape (a
# square missing a corner is no square), and stretching would turn squares into rectangles.
SHAPES_AUGMENTATION = dict(scale=None)


class ImageDataset(torch.utils.data.Dataset):
    """Base: (pixel_values, label) pairs through an optional augmentation, then the image processor."""

    def __init__(self, processor: ViTHybridImageProcessor, seed: int, augment: Transform | None):
        self.processor, self.seed, self.augment = processor, seed, augment
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Epochs draw different augmentations (and, from the generator, different images)."""
        self.epoch = epoch

    def load(self, index: int) -> tuple[Image.Image, int]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.load(index)
        if self.augment is not None:
            image = self.augment(image, np.random.default_rng([self.seed, self.epoch, index, 1]))
        return self.processor(image, return_tensors="pt")["pixel_values"][0], label


class ShapesDataset(ImageDataset):
    """`length` images of the shapes generator per epoch, from image number `start` of stream `seed` on;
    with `fresh_each_epoch`, epoch e reads the next `length` images instead of the same ones again."""

    def __init__(self, length: int, seed: int, start: int, image_size: int, processor: ViTHybridImageProcessor,
                 augment: Transform | None = None, fresh_each_epoch: bool = False):
        super().__init__(processor, seed, augment)
        self.length, self.start, self.image_size, self.fresh = length, start, image_size, fresh_each_epoch

    def __len__(self) -> int:
        return self.length

    def load(self, index: int) -> tuple[Image.Image, int]:
        number = self.start + index + (self.epoch * self.length if self.fresh else 0)
        generated = shapes.sample(self.seed, number, self.image_size)
        return generated.image, generated.label


class FolderDataset(ImageDataset):
    """Images listed as (path, label)."""

    def __init__(self, files: list[tuple[Path, int]], seed: int, processor: ViTHybridImageProcessor,
                 augment: Transform | None = None):
        super().__init__(processor, seed, augment)
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> tuple[Image.Image, int]:
        path, label = self.files[index]
        try:
            return load_image(path), label  # as the app and the pipeline will see it
        except ImageError as error:
            raise DataError(f"{path} cannot be read as an image ({error}). Remove or replace it.") from error


def unreadable(path: Path) -> str | None:
    """Why `path` is not a readable image, or None if it is."""
    try:
        with open_regular(path) as file, decoding(path.name), Image.open(file) as image:
            image.verify()
    except ImageError as error:
        return str(error)
    return None


def scan_folder(root: Path) -> tuple[list[str], list[list[Path]]]:
    """Class names (sorted subfolder names) and each class's image files; DataError for anything unusable."""
    if not root.is_dir():
        raise DataError(f"{root} is not a folder. Pass a folder with one subfolder of images per class.")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root} has no class subfolders. Put each class's images in a subfolder named after "
                        f"the class, e.g. {root / 'cat' / '1.jpg'} and {root / 'dog' / '1.jpg'}.")
    if len(classes) < 2:
        raise DataError(f"{root} has only one class subfolder ({classes[0].name}); a classifier needs at least two.")
    files = [sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                    and not p.name.startswith(".")) for folder in classes]
    empty = [folder for folder, images in zip(classes, files) if not images]
    if empty:
        names = ", ".join(repr(folder.name) for folder in empty)
        raise DataError(f"class {names} has no images: {', '.join(str(f) for f in empty)} holds no "
                        f"{'/'.join(IMAGE_EXTENSIONS)} files. Add images or remove the folder.")
    bad = [(path, why) for images in files for path in images if (why := unreadable(path)) is not None]
    if bad:
        listed = "; ".join(f"{path} ({why})" for path, why in bad[:10])
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise DataError(f"{len(bad)} file(s) cannot be read as images: {listed}{more}. Remove or replace them.")
    return [folder.name for folder in classes], files


def split_files(files: list[list[Path]], val_fraction: float, seed: int) -> tuple[list, list]:
    """Stratified random split into (train, val) lists of (path, label); each class keeps >= 1 training image."""
    rng = np.random.default_rng([seed, 2])
    train, val = [], []
    for label, paths in enumerate(files):
        order = rng.permutation(len(paths))
        n_val = min(int(round(val_fraction * len(paths))), len(paths) - 1)
        val += [(paths[i], label) for i in order[:n_val]]
        train += [(paths[i], label) for i in order[n_val:]]
    return train, val
