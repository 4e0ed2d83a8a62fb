"""Maps onto pictures with Pillow and matplotlib colormaps: colorized maps, overlays on the crop the
model saw or on the original photo, and the token grid.

A map over the token grid is drawn either as blocks that fill exactly each token's pixel box (the
default: what the model resolves) or bilinearly smoothed. Maps are min-max normalized before the
colormap, so they show where relevance is, relative to the rest of the same map.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw

from .crop import CropGeometry
from .grid import cell_edges, expand_to_pixels, token_box

Color = tuple[int, int, int]


def as_image(image: Image.Image | np.ndarray) -> Image.Image:
    """An RGB Pillow image from a Pillow image or an (H, W[, 3]) uint8 array."""
    return (image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))).convert("RGB")


def normalize(heatmap: torch.Tensor | np.ndarray) -> np.ndarray:
    """float32 copy scaled to [0, 1] (minimum -> 0, maximum -> 1; a constant map -> 0)."""
    values = np.asarray(heatmap.detach().cpu() if isinstance(heatmap, torch.Tensor) else heatmap, dtype=np.float32)
    low, span = values.min(), np.ptp(values)
    return (values - low) / span if span > 0 else np.zeros_like(values)


def colorize(heatmap: torch.Tensor | np.ndarray, size_hw: tuple[int, int], cmap: str = "jet",
             smooth: bool = False) -> Image.Image:
    """A (rows, cols) map as an RGB image of `size_hw`: token blocks, or bilinear if `smooth`."""
    values = normalize(heatmap)
    if values.ndim != 2:
        raise ValueError(f"expected one (rows, cols) map, got shape {values.shape}")
    if smooth:
        values = np.asarray(Image.fromarray(values).resize(size_hw[::-1], resample=Image.BILINEAR))
    colors = colormaps[cmap](values, bytes=True)[..., :3]
    return Image.fromarray(colors if smooth else expand_to_pixels(colors, size_hw))


def overlay(image: Image.Image | np.ndarray, heatmap: torch.Tensor | np.ndarray, cmap: str = "jet",
            alpha: float = 0.5, smooth: bool = False) -> Image.Image:
    """The map blended over the image the model saw (its crop), at the image's size:
    (1 - alpha) * image + alpha * colors, so alpha=0 gives the image and alpha=1 the colors."""
    image = as_image(image)
    return Image.blend(image, colorize(heatmap, (image.height, image.width), cmap, smooth), alpha)


def overlay_on_original(photo: Image.Image | np.ndarray, heatmap: torch.Tensor | np.ndarray,
                        geometry: CropGeometry, cmap: str = "jet", alpha: float = 0.5, smooth: bool = False,
                        outline: Color = (255, 255, 255), width: int = 3) -> Image.Image:
    """The map blended over the part of the original photo that the crop covers, the crop outlined."""
    photo = as_image(photo)  # a new image: convert() copies
    box = tuple(round(v) for v in geometry.to_original((0, 0, geometry.crop_hw[1], geometry.crop_hw[0])))
    left, top, right, bottom = box
    heat = colorize(heatmap, (bottom - top, right - left), cmap, smooth)
    photo.paste(Image.blend(photo.crop(box), heat, alpha), (left, top))
    ImageDraw.Draw(photo).rectangle((left, top, right - 1, bottom - 1), outline=outline, width=width)
    return photo


def draw_token_grid(image: Image.Image | np.ndarray, grid_hw: tuple[int, int], highlight: int | None = None,
                    color: Color = (255, 255, 255), highlight_color: Color = (255, 0, 0),
                    opacity: float = 0.5) -> Image.Image:
    """The token boundaries over the crop (lines at `opacity`), and token `highlight`'s box outlined."""
    image = as_image(image)
    lined = image.copy()
    draw = ImageDraw.Draw(lined)
    for x in cell_edges(image.width, grid_hw[1])[1:-1]:
        draw.line(((int(x), 0), (int(x), image.height - 1)), fill=color)
    for y in cell_edges(image.height, grid_hw[0])[1:-1]:
        draw.line(((0, int(y)), (image.width - 1, int(y))), fill=color)
    out = Image.blend(image, lined, opacity)
    if highlight is not None:
        left, top, right, bottom = token_box(highlight, (image.height, image.width), grid_hw)
        ImageDraw.Draw(out).rectangle((left, top, right - 1, bottom - 1), outline=highlight_color,
                                      width=max(1, min(right - left, bottom - top) // 6))
    return out
