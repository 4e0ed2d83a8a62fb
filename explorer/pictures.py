"""Pictures drawn from a model or an analysis, never running the model: the guided walk's backbone maps, the ViT
paper's Figure 7 panels, the timing chart. Numbers only in figures: the page's labels say what they are, in its
language (matplotlib cannot shape Arabic)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

import visualization as viz
from vithybrid.timing import TimingRow

from .analysis import Analysis


def backbone_picture(analysis: Analysis, input_hw: tuple[int, int], map_shapes: list[tuple[int, int, int]],
                     hidden_size: int) -> Image.Image:
    """The crop, each backbone map's channel mean and the token norms, recorded during the photo's pass; numbered
    as the guided walk's steps, with the sizes the model works at (`map_shapes`: (channels, height, width) each)."""
    if "backbone" not in analysis.pictures:
        *means, norms = analysis.backbone
        # Already reduced: a one-channel map's channel mean is itself, a one-value token's norm its absolute value.
        sizes = [(*input_hw, 3)] + [(height, width, channels) for channels, height, width in map_shapes]
        captions = [f"{step}\n{'x'.join(map(str, size))}" for step, size in enumerate(sizes, 1)]
        captions.append(f"{len(captions) + 1}\n{analysis.grid[0]}x{analysis.grid[1]}x{hidden_size}")
        analysis.pictures["backbone"] = viz.backbone_figure(
            analysis.crop, [m[None] for m in means], norms.reshape(-1, 1), analysis.grid, captions=captions)
    return analysis.pictures["backbone"]


def distance_picture(analysis: Analysis, input_hw: tuple[int, int]) -> Image.Image:
    if "distance" not in analysis.pictures:
        analysis.pictures["distance"] = viz.attention_distance_figure(analysis.distances, input_hw,
                                                                      labels=("", "", ""))
    return analysis.pictures["distance"]


def position_picture(model) -> Image.Image:
    """How similar each grid cell's learned position embedding is to every other's."""
    embeddings = model.vit.embeddings.position_embeddings.detach().float().cpu()
    return viz.position_similarity_figure(viz.position_embedding_similarity(embeddings, model.config.grid_size),
                                          labels=("", "", ""))


def filter_picture(model) -> Image.Image:
    """The stem's first convolution filters, the hybrid's counterpart of the paper's RGB embedding filters."""
    return viz.filter_grid(model.vit.embeddings.patch_embeddings.backbone.bit.embedder.convolution.weight)


def timing_chart(rows: list[TimingRow]) -> Image.Image:
    """Bars of eager and SDPA milliseconds per batch size (ticks: the batch sizes), the speed-up above each pair."""
    figure = Figure(figsize=(5.5, 3.2), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    x = np.arange(len(rows))
    axes.bar(x - 0.2, [r.eager_ms for r in rows], 0.4, label="eager", color="#d95f02")
    axes.bar(x + 0.2, [r.sdpa_ms for r in rows], 0.4, label="SDPA", color="#1b9e77")
    for i, row in enumerate(rows):
        axes.annotate(f"{row.speedup:.2f}x", (i, max(row.eager_ms, row.sdpa_ms)), ha="center", va="bottom")
    axes.set_xticks(x, [str(r.batch) for r in rows])
    axes.margins(y=0.15)
    axes.legend(frameon=False)
    return viz.figure_image(figure)
