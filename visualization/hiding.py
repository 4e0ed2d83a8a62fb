"""Hiding part of a photo from the model, two ways, for the "Hide and see" experiments: paint over grid cells in
the model's input (the CNN still sees their neighbours, and its receptive fields reach into the painted cells'
tokens), or drop the cells' tokens from the transformer's sequence (the CNN sees the whole photo; the transformer
never sees those tokens). Cells are grid tokens 1 .. rows * cols, as everywhere in this package."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from .faithfulness import gaussian_blur
from .grid import expand_to_pixels
from .render import as_image

FILLS = ("grey", "blur", "mean")  # what hidden pixels become: mid-grey, a blur of the photo, the photo's mean colour


def cell_mask(cells: Sequence[int], grid_hw: tuple[int, int]) -> np.ndarray:
    """(rows, cols) bool: True on the given cells."""
    mask = np.zeros(grid_hw[0] * grid_hw[1], dtype=bool)
    mask[np.asarray(list(cells), dtype=int) - 1] = True
    return mask.reshape(grid_hw)


def keep_mask(cells: Sequence[int], grid_hw: tuple[int, int]) -> torch.Tensor:
    """(1, rows * cols) bool token mask (True = keep) that drops the given cells: a model's `token_mask`."""
    return torch.from_numpy(~cell_mask(cells, grid_hw).reshape(1, -1))


def hide_pixels(pixel_values: torch.Tensor, cells: Sequence[int], grid_hw: tuple[int, int], fill: str,
                grey: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W) model input with the pixels of the given cells replaced: by `grey` ((C,) mid-grey in the input's
    normalization), by a Gaussian blur of the photo (sigma one cell, as deletion/insertion's blurred start), or by the
    photo's mean colour."""
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    image = pixel_values.detach()
    if fill == "grey":
        filler = grey.to(image)[None, :, None, None].expand_as(image)
    elif fill == "blur":
        filler = gaussian_blur(image, image.shape[-2] / grid_hw[0])
    else:
        filler = image.mean(dim=(-2, -1), keepdim=True).expand_as(image)
    hidden = torch.from_numpy(expand_to_pixels(cell_mask(cells, grid_hw), tuple(image.shape[-2:])))
    return torch.where(hidden.to(image.device), filler, image)


def on_grid(kept_values: torch.Tensor, token_mask: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """(B, rows, cols) from values over the kept tokens only ((B, kept), in grid order), dropped cells 0."""
    grid = kept_values.new_zeros(token_mask.shape)
    grid[token_mask] = kept_values.flatten()
    return grid.view(-1, *grid_hw)


def strongest_cells(heatmap: torch.Tensor, count: int) -> list[int]:
    """The `count` cells a (rows, cols) map ranks highest, strongest first."""
    return (heatmap.flatten().argsort(descending=True, stable=True)[:count] + 1).tolist()


def random_cells(grid_hw: tuple[int, int], count: int, seed: int = 0) -> list[int]:
    """`count` distinct cells drawn at random (seeded: the same draw for the same photo and count)."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.randperm(grid_hw[0] * grid_hw[1], generator=generator)[:count] + 1).tolist()


def draw_cells(image: Image.Image, cells: Sequence[int], grid_hw: tuple[int, int], color: tuple[int, int, int] = (0, 0, 0),
               opacity: float = 0.65) -> Image.Image:
    """The picture with the given cells shaded (which cells are hidden, or picked to hide)."""
    image = as_image(image)
    shaded = expand_to_pixels(cell_mask(cells, grid_hw), (image.height, image.width))
    pixels = np.asarray(image, dtype=np.float32)
    pixels[shaded] = (1 - opacity) * pixels[shaded] + opacity * np.asarray(color, dtype=np.float32)
    return Image.fromarray(pixels.round().astype(np.uint8))
