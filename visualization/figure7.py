"""The ViT paper's Figure 7 for a loaded model (Dosovitskiy et al., "An Image is Worth 16x16 Words",
ICLR 2021, Sec. 4.5 and Appendix D.7):

- left, the first layer's filters: for a hybrid, the tokens come from a CNN, so its counterpart of the
  paper's "RGB embedding filters" is the BiT stem's first convolution (`filter_grid`);
- centre, how similar the learned position embedding of each grid cell is to every other's
  (`position_embedding_similarity`, drawn by `position_similarity_figure`);
- right, how far each head attends, in input pixels, at each depth (`mean_attention_distance`, drawn
  by `attention_distance_figure`). The paper notes that early layers attend locally in some heads
  and that this is less pronounced in hybrid models, whose tokens already mix a neighbourhood.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image

from .figures import figure_image


def position_embedding_similarity(position_embeddings: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """(rows, cols, rows, cols) cosine similarities between the position embeddings of every pair of grid
    cells, from the model's (1, 1 + rows * cols, hidden) position embeddings (CLS first, left out):
    entry [r, c, r2, c2] compares cell (r, c) with cell (r2, c2)."""
    rows, cols = grid_hw
    if position_embeddings.dim() != 3 or position_embeddings.shape[:2] != (1, rows * cols + 1):
        raise ValueError(f"expected (1, {rows * cols + 1}, hidden) position embeddings for a {rows}x{cols} grid, "
                         f"got {tuple(position_embeddings.shape)}")
    cells = torch.nn.functional.normalize(position_embeddings[0, 1:].detach().double(), dim=-1)
    return (cells @ cells.T).to(position_embeddings.dtype).reshape(rows, cols, rows, cols)


def cell_centres(grid_hw: tuple[int, int], image_hw: tuple[int, int]) -> torch.Tensor:
    """(rows * cols, 2) (y, x) pixel centres of the grid cells, row-major; a cell spans image_h / rows by
    image_w / cols pixels."""
    (rows, cols), (height, width) = grid_hw, image_hw
    ys = (torch.arange(rows, dtype=torch.float64) + 0.5) * (height / rows)
    xs = (torch.arange(cols, dtype=torch.float64) + 0.5) * (width / cols)
    return torch.cartesian_prod(ys, xs)


def mean_attention_distance(attentions: Sequence[torch.Tensor], grid_hw: tuple[int, int],
                            image_hw: tuple[int, int]) -> torch.Tensor:
    """(B, layers, heads) mean attention distance in input pixels, from per-layer (B, heads, N, N)
    attentions (N = 1 + rows * cols, CLS first). For each grid query, its weights over the grid keys
    (CLS left out as query and as key) are renormalized to sum to 1 and weight the distance between the
    two cells' centres; that expected distance is averaged over the queries."""
    rows, cols = grid_hw
    if not attentions or attentions[0].shape[-1] != rows * cols + 1:
        raise ValueError(f"need per-layer (B, heads, N, N) attentions with N = {rows * cols + 1} "
                         f"for a {rows}x{cols} grid")
    dtype = torch.promote_types(attentions[0].dtype, torch.float32)  # float32, or float64 for float64 input
    centres = cell_centres(grid_hw, image_hw)
    distance = torch.cdist(centres, centres).to(attentions[0].device, dtype)  # (cells, cells), where the attention is
    per_layer = []
    for attention in attentions:
        grid = attention[:, :, 1:, 1:].to(dtype)
        # each query's weighted distance, then divided by its weights' sum (no renormalized copy of the weights): one
        # contraction over the keys, with no (B, heads, N, N) temporary beyond float32's copy of lower-precision input
        # (einsum runs it as one batched product over the queries, its product about 3 times as fast on a CPU as the
        # matrix-vector products `@` would run: the whole function 2.2 times for the full-size model)
        expected = torch.einsum("bhqk,qk->bhq", grid, distance) / grid.sum(-1)
        per_layer.append(expected.mean(-1))  # (B, heads)
    return torch.stack(per_layer, dim=1)


def tile(panels: np.ndarray, columns: int, gap: int, fill: float) -> np.ndarray:
    """(K, h, w, ...) panels -> one (rows * (h + gap) - gap, columns * (w + gap) - gap, ...) mosaic, row-major,
    `fill` in the gaps and in unused places."""
    count, height, width = panels.shape[:3]
    lines = math.ceil(count / columns)
    mosaic = np.full((lines * (height + gap) - gap, columns * (width + gap) - gap) + panels.shape[3:], fill,
                     dtype=panels.dtype)
    for i, panel in enumerate(panels):
        top, left = (i // columns) * (height + gap), (i % columns) * (width + gap)
        mosaic[top:top + height, left:left + width] = panel
    return mosaic


def filter_grid(weight: torch.Tensor, scale: int = 6, gap: int = 2, columns: int | None = None) -> Image.Image:
    """The (out, 3, k, k) filters of a first convolution as RGB tiles (each `scale` pixels per weight),
    e.g. the BiT stem's. Each filter is stretched to [0, 1] on its own, as the paper shows its embedding
    filters; that stretch also makes weight standardization (a per-filter shift and positive scale)
    invisible, so the raw and the standardized weights look the same."""
    if weight.dim() != 4 or weight.shape[1] != 3:
        raise ValueError(f"expected (out, 3, k, k) RGB filters, got {tuple(weight.shape)}")
    filters = weight.detach().float().cpu()
    low = filters.amin(dim=(1, 2, 3), keepdim=True)
    span = (filters.amax(dim=(1, 2, 3), keepdim=True) - low).clamp_min(1e-12)
    tiles = ((filters - low) / span).permute(0, 2, 3, 1).numpy()  # (out, k, k, 3)
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    columns = columns or math.ceil(math.sqrt(len(tiles)))
    return Image.fromarray((tile(tiles, columns, gap, fill=1.0) * 255).round().astype(np.uint8))


SIMILARITY_LABELS = ("Input patch column", "Input patch row", "Cosine similarity")


def position_similarity_figure(similarity: torch.Tensor, title: str | None = None,
                               labels: tuple[str, str, str] = SIMILARITY_LABELS) -> Image.Image:
    """The paper's Figure 7 (centre): one small map per grid cell, placed at that cell, showing its
    position embedding's similarity to every cell's; one color scale, -1 to 1. `labels`: the x axis,
    the y axis and the colorbar (for translation)."""
    rows, cols = similarity.shape[:2]
    maps = similarity.detach().float().cpu().reshape(rows * cols, rows, cols).numpy()
    cell = max(1, 12 // max(rows, cols))  # small grids get bigger pixels
    maps = maps.repeat(cell, axis=1).repeat(cell, axis=2)
    gap = max(2, cell)  # 2 pixels at least, so that resampling to the screen keeps the panels apart
    mosaic = tile(maps, cols, gap, fill=np.nan)
    inches = min(7.0, max(3.5, mosaic.shape[1] / 90))
    figure = Figure(figsize=(inches + 1.2, inches * mosaic.shape[0] / mosaic.shape[1] + 0.8), dpi=100,
                    layout="constrained")
    axes = figure.add_subplot()
    shown = axes.imshow(mosaic, cmap="viridis", vmin=-1, vmax=1, interpolation="nearest")
    panel_h, panel_w = rows * cell + gap, cols * cell + gap
    step = max(1, math.ceil(max(rows, cols) / 8))  # at most ~8 tick labels per axis
    axes.set_xticks([c * panel_w + cols * cell / 2 for c in range(0, cols, step)], range(1, cols + 1, step))
    axes.set_yticks([r * panel_h + rows * cell / 2 for r in range(0, rows, step)], range(1, rows + 1, step))
    axes.tick_params(length=0, labelsize=8)
    axes.set_xlabel(labels[0])
    axes.set_ylabel(labels[1])
    for side in axes.spines.values():
        side.set_visible(False)
    figure.colorbar(shown, ax=axes, shrink=0.8, label=labels[2])
    if title:
        axes.set_title(title, fontsize=10)
    return figure_image(figure)


DISTANCE_LABELS = ("Network depth (layer)", "Mean attention distance (pixels)", "head")


def attention_distance_figure(distances: torch.Tensor | np.ndarray, image_hw: tuple[int, int],
                              title: str | None = None, labels: tuple[str, str, str] = DISTANCE_LABELS) -> Image.Image:
    """The paper's Figure 7 (right): every head a dot, layer (1 .. L) on the x axis, its mean attention
    distance in pixels on the y axis, from one image's (layers, heads) distances. The y axis runs to the
    image diagonal's half, a rough ceiling (uniform attention over a square grid gives about 0.52 of
    the side). `labels`: the x axis, the y axis and the legend's word for a head (for translation)."""
    values = np.asarray(distances.detach().cpu() if isinstance(distances, torch.Tensor) else distances, np.float64)
    if values.ndim != 2:
        raise ValueError(f"expected (layers, heads) distances for one image, got shape {values.shape}")
    layers, heads = values.shape
    figure = Figure(figsize=(5.2, 3.6), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    palette = colormaps["tab20"]  # 20 distinct colors: the default cycle repeats after 10, ViT-B has 12 heads
    for head in range(heads):
        axes.scatter(np.arange(1, layers + 1), values[:, head], s=14, label=f"{labels[2]} {head + 1}",
                     color=palette(head % 20))
    axes.set_xlabel(labels[0])
    axes.set_ylabel(labels[1])
    axes.set_xticks(range(1, layers + 1))
    axes.set_ylim(0, math.hypot(*image_hw) / 2)
    axes.grid(alpha=0.3)
    if heads <= 16:
        axes.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1, 0.5))
    if title:
        axes.set_title(title, fontsize=10)
    return figure_image(figure)
