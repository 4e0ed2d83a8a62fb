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
from PIL import Image, ImageDraw, ImageFont

from .crop import CropGeometry
from .grid import cell_edges, expand_to_pixels, token_box

Color = tuple[int, int, int]
# Perceptually uniform (equal steps in value look like equal steps in colour, lightness rises from weak to strong) and
# readable with the common colour-vision deficiencies; jet is neither: it draws edges and bright bands that are not
# in the data.
DEFAULT_CMAP = "viridis"


def as_image(image: Image.Image | np.ndarray) -> Image.Image:
    """An RGB Pillow image from a Pillow image or an (H, W[, 3]) uint8 array."""
    return (image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))).convert("RGB")


def normalize(heatmap: torch.Tensor | np.ndarray) -> np.ndarray:
    """float32 copy scaled to [0, 1] (minimum -> 0, maximum -> 1; a constant map -> 0)."""
    values = np.asarray(heatmap.detach().cpu() if isinstance(heatmap, torch.Tensor) else heatmap, dtype=np.float32)
    low, span = values.min(), np.ptp(values)
    return (values - low) / span if span > 0 else np.zeros_like(values)


def colorize(heatmap: torch.Tensor | np.ndarray, size_hw: tuple[int, int], cmap: str = DEFAULT_CMAP,
             smooth: bool = False) -> Image.Image:
    """A (rows, cols) map as an RGB image of `size_hw`: token blocks, or bilinear if `smooth`."""
    values = normalize(heatmap)
    if values.ndim != 2:
        raise ValueError(f"expected one (rows, cols) map, got shape {values.shape}")
    if smooth:
        values = np.asarray(Image.fromarray(values).resize(size_hw[::-1], resample=Image.BILINEAR))
    colors = colormaps[cmap](values, bytes=True)[..., :3]
    return Image.fromarray(colors if smooth else expand_to_pixels(colors, size_hw))


def overlay(image: Image.Image | np.ndarray, heatmap: torch.Tensor | np.ndarray, cmap: str = DEFAULT_CMAP,
            alpha: float = 0.5, smooth: bool = False) -> Image.Image:
    """The map blended over the image the model saw (its crop), at the image's size:
    (1 - alpha) * image + alpha * colors, so alpha=0 gives the image and alpha=1 the colors."""
    image = as_image(image)
    return Image.blend(image, colorize(heatmap, (image.height, image.width), cmap, smooth), alpha)


def overlay_on_original(photo: Image.Image | np.ndarray, heatmap: torch.Tensor | np.ndarray,
                        geometry: CropGeometry, cmap: str = DEFAULT_CMAP, alpha: float = 0.5, smooth: bool = False,
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


def with_colorbar(image: Image.Image | np.ndarray, cmap: str = DEFAULT_CMAP, height: int = 14,
                  ticks: tuple[float, ...] = (0.0, 0.5, 1.0)) -> Image.Image:
    """The picture with a colour legend under it: the colormap from 0 (left, the map's minimum) to 1 (right,
    its maximum), as `normalize` scales every map, with numbered ticks. Digits only, so the legend reads
    the same in every language (the page says in words what 0 and 1 mean)."""
    image = as_image(image)
    font = ImageFont.load_default()
    margin = max(12, image.width // 20)
    bar_width = image.width - 2 * margin
    label_height = font.getbbox("0.5")[3] + 4
    out = Image.new("RGB", (image.width, image.height + height + label_height + 10), (255, 255, 255))
    out.paste(image, (0, 0))
    ramp = colormaps[cmap](np.linspace(0, 1, bar_width), bytes=True)[:, :3]
    top = image.height + 4
    out.paste(Image.fromarray(np.repeat(ramp[None], height, axis=0)), (margin, top))
    draw = ImageDraw.Draw(out)
    for tick in ticks:
        x = margin + round(tick * (bar_width - 1))
        draw.line(((x, top + height), (x, top + height + 3)), fill=(0, 0, 0))
        label = f"{tick:g}"
        width = font.getlength(label)
        draw.text((min(max(0, x - width / 2), out.width - width), top + height + 4), label, fill=(0, 0, 0), font=font)
    return out
