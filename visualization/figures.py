"""matplotlib figures: small multiples of maps with a shared colorbar, and how hybrid tokens arise.

Figures are drawn with `matplotlib.figure.Figure` on an Agg canvas, never pyplot (no global state,
safe in worker threads), and come back as RGB Pillow images.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from .grid import expand_to_pixels
from .render import DEFAULT_CMAP, as_image

PANEL_INCHES = 1.3  # backbone_figure
PANEL_PX, GAP_PX, TITLE_PX, COLORBAR_PX = 96, 6, 14, 60  # small_multiples
DPI = 80


def figure_image(figure: Figure) -> Image.Image:
    """Render a Figure on an Agg canvas into an RGB Pillow image."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())


def small_multiples(maps: torch.Tensor | np.ndarray, titles: Sequence[str], cmap: str = DEFAULT_CMAP,
                    title: str | None = None, columns: int | None = None) -> Image.Image:
    """(K, rows, cols) maps side by side on one color scale with one colorbar (Tufte's small multiples),
    e.g. `layer_stack(...)[0]` (one map per layer) or `head_stack(...)[0]` (one per head). The panels
    are tiled into one image drawn pixel for pixel (`figimage`, no resampling, no axes), each cell a
    square block of pixels, so the figure costs the same whatever K is."""
    maps = np.asarray(maps.detach().cpu() if isinstance(maps, torch.Tensor) else maps, dtype=np.float32)
    count, height, width = maps.shape
    if len(titles) != count:
        raise ValueError(f"{count} maps but {len(titles)} titles")
    columns = columns or math.ceil(math.sqrt(count))
    cell = max(1, PANEL_PX // max(height, width))
    panel_hw = (height * cell, width * cell)
    step_x, step_y = panel_hw[1] + GAP_PX, panel_hw[0] + TITLE_PX
    mosaic = np.full((math.ceil(count / columns) * step_y, columns * step_x), np.nan, np.float32)
    head = TITLE_PX + 4 if title else 0
    figure = Figure(figsize=((mosaic.shape[1] + COLORBAR_PX) / DPI, (mosaic.shape[0] + head + GAP_PX) / DPI), dpi=DPI)
    fig_w, fig_h = figure.bbox.width, figure.bbox.height
    for i, (values, label) in enumerate(zip(maps, titles)):
        top, left = (i // columns) * step_y + TITLE_PX, (i % columns) * step_x + GAP_PX
        mosaic[top:top + panel_hw[0], left:left + panel_hw[1]] = expand_to_pixels(values, panel_hw)
        figure.text((left + panel_hw[1] / 2) / fig_w, 1 - (head + top - 2) / fig_h, label, ha="center",
                    va="bottom", fontsize=8)
    shown = figure.figimage(mosaic, yo=GAP_PX, cmap=cmap, vmin=maps.min(), vmax=maps.max(), origin="upper")
    bar = figure.add_axes(((mosaic.shape[1] + 8) / fig_w, 0.1, 10 / fig_w, 1 - 0.2 - head / fig_h))
    figure.colorbar(shown, cax=bar, ticks=MaxNLocator(4))
    bar.tick_params(labelsize=7)
    if title:
        figure.suptitle(title, fontsize=9, y=1 - 2 / fig_h, va="top")
    return figure_image(figure)


def backbone_figure(image: Image.Image | np.ndarray, feature_maps: Sequence[torch.Tensor], tokens: torch.Tensor,
                    grid_hw: tuple[int, int], names: Sequence[str] | None = None, cmap: str = "viridis",
                    captions: Sequence[str] | None = None) -> Image.Image:
    """How hybrid tokens arise (Dosovitskiy et al., ICLR 2021, Sec. 3.1): the crop, the channel-mean
    activation of each (C, H, W) backbone map (stem, stage 1, ...), then the norm of each of the
    (rows * cols, D) tokens on the grid. Panels share a size, so the resolution visibly drops.
    `captions` (one per panel: the image, each map, the tokens) replace the English default titles; the
    app numbers them and explains each step in the page's language (matplotlib cannot shape Arabic)."""
    names = list(names or ["stem"] + [f"stage {i}" for i in range(1, len(feature_maps))])
    if len(names) != len(feature_maps) or any(f.dim() != 3 for f in feature_maps):
        raise ValueError("need one name per (C, H, W) feature map")
    if captions is not None and len(captions) != len(feature_maps) + 2:
        raise ValueError(f"need {len(feature_maps) + 2} captions (image, each map, tokens), got {len(captions)}")
    image = as_image(image)
    panels = [(np.asarray(image), f"input\n{image.height}x{image.width}x3")]
    panels += [(f.detach().float().mean(0).cpu().numpy(), f"{name} (mean)\n{f.shape[1]}x{f.shape[2]}x{f.shape[0]}")
               for f, name in zip(feature_maps, names)]
    norms = tokens.detach().float().norm(dim=-1).reshape(grid_hw).cpu().numpy()
    panels.append((norms, f"token norms\n{grid_hw[0]}x{grid_hw[1]} tokens of {tokens.shape[-1]}"))
    if captions is not None:
        panels = [(values, caption) for (values, _), caption in zip(panels, captions)]
    figure = Figure(figsize=(len(panels) * PANEL_INCHES, PANEL_INCHES * 1.3), dpi=DPI)
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.75, wspace=0.08)
    for i, (values, label) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), i + 1)
        axes.imshow(values, cmap=cmap, interpolation="nearest")
        axes.set_title(label, fontsize=8)
        axes.set_axis_off()
    return figure_image(figure)
