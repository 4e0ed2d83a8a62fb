"""Hide and see: the model answers again with part of the photo hidden, and the answer is compared with the
original. Two ways to hide the same cells (visualization.hiding): paint over their pixels (the CNN still sees their
neighbours) or drop their tokens from the transformer's sequence (the CNN sees the whole photo). One forward each,
on the work queue after everyone's labels and maps (Priority.MORE)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

import visualization as viz
from vithybrid.explain import CLASS_MAP, GRAD_CAM, ROLLOUT

from .runs import Explorer
from .work import LIBRARY, Priority

HOW = ("pixels", "tokens")
RANKINGS = (ROLLOUT, CLASS_MAP, GRAD_CAM)  # the maps whose strongest cells a one-click experiment hides


@dataclass
class Trial:
    """The model's answer with some cells hidden one way."""

    how: str  # "pixels" or "tokens"
    cells: tuple[int, ...]
    probabilities: torch.Tensor  # (classes,)
    rollout: torch.Tensor  # (rows, cols); dropped tokens' cells 0
    seen: Image.Image  # what the model was shown: the hidden photo, or the photo with the dropped cells marked


@dataclass
class Comparison:
    """A one-click experiment: the `count` cells a map ranks highest against as many random ones."""

    ranking: str  # one of RANKINGS
    ranked: Trial
    random: Trial


def hide(explorer: Explorer, image: Image.Image, cells: Sequence[int], how: str, fill: str = "grey",
         session: Hashable = LIBRARY) -> Trial:
    """The top classes and the rollout with `cells` hidden `how` ("pixels", with `fill`, or "tokens")."""
    if how not in HOW:
        raise ValueError(f"how must be one of {HOW}, got {how!r}")
    cells = tuple(sorted(set(int(c) for c in cells)))
    grid, analysis = explorer.grid, explorer.analysis(image, session)
    pixels, mask = explorer.pixels(image), None
    if how == "pixels":
        processor = explorer.processor
        grey = (0.5 - torch.tensor(processor.image_mean)) / torch.tensor(processor.image_std)
        pixels = viz.hide_pixels(pixels, cells, grid, fill, grey)
    else:
        mask = viz.keep_mask(cells, grid)

    def run():
        with torch.inference_mode():
            return explorer.model(pixels, token_mask=mask, output_attentions=True)

    output = explorer.queue.run(Priority.MORE, run, session)
    rollout = viz.attention_rollout([a.float().cpu() for a in output.attentions], rows=[0])[:, 0]  # (1, 1 + kept)
    if mask is None:
        rollout_grid = rollout[:, 1:].reshape(1, *grid)
        seen = shown_input(pixels, explorer, analysis.crop.size)
    else:
        rollout_grid = viz.on_grid(rollout[:, 1:], mask, grid)
        seen = viz.draw_cells(analysis.crop, cells, grid)
    return Trial(how, cells, output.logits[0].float().softmax(-1).cpu(), rollout_grid[0], seen)


def compare(explorer: Explorer, image: Image.Image, ranking: str, count: int, how: str, fill: str = "grey",
            session: Hashable = LIBRARY) -> Comparison:
    """Hide the `count` cells that map `ranking` (of the top class) marks strongest, then as many random cells."""
    analysis = explorer.analysis(image, session)
    ranked = viz.strongest_cells(analysis.maps[ranking], count)
    seed = int(viz.image_key(image)[:8], 16)  # the same random cells for the same photo, each time
    random = viz.random_cells(explorer.grid, count, seed)
    return Comparison(ranking, hide(explorer, image, ranked, how, fill, session),
                      hide(explorer, image, random, how, fill, session))


def shown_input(pixels: torch.Tensor, explorer: Explorer, size: tuple[int, int]) -> Image.Image:
    """The model's (1, C, H, W) input as the picture it is, at the display crop's size."""
    processor = explorer.processor
    mean, std = torch.tensor(processor.image_mean)[:, None, None], torch.tensor(processor.image_std)[:, None, None]
    values = ((pixels[0].float().cpu() * std + mean).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(values)).resize(size, Image.NEAREST)
