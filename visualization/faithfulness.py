"""Which map to trust: deletion and insertion curves (Petsiuk, Das & Saenko, "RISE", BMVC 2018).

A map ranks the grid's tokens by relevance. Deletion hides the most relevant tokens first, a fraction
at a time, and records the probability of the class explained: a faithful map makes it fall fast (small
area under the curve). Insertion starts from an image with the detail gone and puts the most relevant
tokens back first: a faithful map makes the probability rise fast (large area). A random order is the
baseline every map must beat.

- Hidden tokens take the image's own per-channel mean: no information, no new colour, and no
  assumption about how the pixels were normalized.
- Insertion starts from a Gaussian blur (sigma = one token cell), as Petsiuk et al. do, not from the
  mean image: a blurred photo keeps the coarse layout the model expects, so the curve measures how much
  each token's detail adds rather than how odd a patchwork of tokens on gray looks.
- A token is its pixel box in the crop (`grid.token_box`), so maps on the token grid compare fairly.
- Tokens a map ties (Grad-CAM clips many to exactly 0) are taken in the random baseline's order, not
  row-major (which would hide whatever lies top-left first): a map without any information scores
  exactly as random.

All perturbed images are scored in batches by one callable; `faithfulness_curves` is a generator that
yields after every batch, so a caller can show progress and stop between batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from PIL import Image

from .figures import figure_image
from .grid import expand_to_pixels

KINDS = ("deletion", "insertion")
# The app's fractions of tokens hidden or shown: 2 points between the ends, early, where maps differ most, so
# that one photo costs 3 + 5 orders * 2 points * 2 kinds = 23 images (its time: README, "Explaining both halves
# of the hybrid"); benchmarks/faithfulness.py takes 16 steps.
APP_FRACTIONS = (0.0, 0.1, 0.3, 1.0)
VERDICTS = {  # English; the app translates them by key and fills in the fields
    "best": "Most faithful here: {name} (deletion area {deletion:.2f}, insertion area {insertion:.2f}; a random "
            "order: {random_deletion:.2f} and {random_insertion:.2f}). Lower deletion and higher insertion are better.",
    "none": "No map beat a random order on this photo: none of them shows what the prediction rests on here.",
}


@dataclass
class FaithfulnessRun:
    """Curves as they are measured: `deletion[name]` and `insertion[name]` hold the probability of the class
    explained at each fraction of tokens hidden (deletion) or shown (insertion); NaN until measured."""
    fractions: np.ndarray
    deletion: dict[str, np.ndarray]
    insertion: dict[str, np.ndarray]
    done: int = 0  # images scored so far
    total: int = 0
    areas: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (deletion, insertion) AUC, at the end

    @property
    def finished(self) -> bool:
        return self.done == self.total

    def most_faithful(self, exclude: Sequence[str] = ("random",)) -> str:
        """The map with the largest insertion AUC minus deletion AUC (fast to rise, fast to fall)."""
        if not self.finished:
            raise ValueError("the curves are not measured yet")
        scores = {name: ins - dele for name, (dele, ins) in self.areas.items() if name not in exclude}
        if not scores:
            raise ValueError(f"no map to rank besides {', '.join(exclude)}")
        return max(scores, key=scores.get)

    def verdict(self) -> tuple[str, dict]:
        """A key of VERDICTS and its fields: the most faithful map, unless none beat the random order."""
        if "random" not in self.areas:
            raise ValueError("the verdict compares the maps with a random order: run with a random_seed")
        best = self.most_faithful()
        (dele, ins), (random_dele, random_ins) = self.areas[best], self.areas["random"]
        if ins - dele <= random_ins - random_dele:
            return "none", {}
        return "best", {"name": best, "deletion": dele, "insertion": ins, "random_deletion": random_dele,
                        "random_insertion": random_ins}


def mirror_indices(size: int, radius: int) -> torch.Tensor:
    """Indices of `size` samples padded by `radius` on each side, reflected about the end samples without repeating
    them (scipy.ndimage's mode="mirror", F.pad's "reflect") as many times as it takes: a radius may exceed the size."""
    period = max(2 * size - 2, 1)
    index = torch.arange(-radius, size + radius).remainder(period)
    return torch.where(index < size, index, period - index)


def gaussian_blur(pixels: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, C, H, W) blurred by a separable Gaussian of 3 sigma each side with mirrored borders: scipy.ndimage's
    gaussian_filter(mode="mirror", truncate=3.0) along H and W. Our own few lines: one fixed kernel does not
    justify a torchvision or scipy dependency for visualization."""
    radius = int(3 * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=pixels.dtype, device=pixels.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).repeat(pixels.shape[1], 1, 1, 1)  # (C, 1, 1, K): one per channel
    for axis, weights in ((-1, kernel), (-2, kernel.transpose(-1, -2))):
        padded = pixels.index_select(axis, mirror_indices(pixels.shape[axis], radius).to(pixels.device))
        pixels = F.conv2d(padded, weights, groups=pixels.shape[1])
    return pixels


def token_ranks(relevance: torch.Tensor, seed: int = 0) -> np.ndarray:
    """(rows, cols) -> the rank of each cell, 0 for the most relevant; tied cells in a random order drawn from
    `seed`. Not row-major: Grad-CAM clips many cells to exactly 0, and hiding those top-left first would credit or
    blame the map for whatever lies there. A seeded order keeps the curves reproducible; averaging over the
    orderings of ties instead would cost model passes per tied group cut by a fraction."""
    values = relevance.detach().flatten().cpu()
    shuffled = torch.randperm(len(values), generator=torch.Generator().manual_seed(seed))
    order = shuffled[torch.argsort(values[shuffled], descending=True, stable=True)]
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(len(order))
    return ranks.reshape(relevance.shape).numpy()


def faithfulness_curves(classify: Callable[[torch.Tensor], torch.Tensor], pixel_values: torch.Tensor,
                        maps: Mapping[str, torch.Tensor], class_index: int,
                        fractions: Sequence[float] = APP_FRACTIONS, batch_size: int = 8,
                        random_seed: int | None = 0) -> Iterator[FaithfulnessRun]:
    """Deletion and insertion curves of each (rows, cols) map in `maps` (and, unless random_seed is None, of
    a random order named "random", which tied tokens of every map follow) for one (1, C, H, W) image:
    `classify(batch)` returns logits (or an object with `.logits`), and the curves follow
    softmax(logits)[class_index]. Yields the same FaithfulnessRun after every batch; the last one is finished
    and has the areas under the curves."""
    if pixel_values.dim() != 4 or len(pixel_values) != 1:
        raise ValueError(f"expected one (1, C, H, W) image, got {tuple(pixel_values.shape)}")
    grids = {tuple(m.shape) for m in maps.values()}
    if len(grids) != 1 or len(next(iter(grids))) != 2:
        raise ValueError(f"all maps must be on one (rows, cols) grid, got {sorted(grids)}")
    grid_hw = next(iter(grids))
    maps = dict(maps)
    if random_seed is not None:  # all tied: ranked by the order ties take, which is then the random baseline's
        maps["random"] = torch.zeros(grid_hw)
    tie_seed = random_seed or 0
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions[0] != 0 or fractions[-1] != 1 or np.any(np.diff(fractions) <= 0):
        raise ValueError("fractions must rise from 0 to 1")

    image = pixel_values.detach()
    cells = grid_hw[0] * grid_hw[1]
    counts = np.round(fractions * cells).astype(int)
    starts = {"deletion": image, "insertion": gaussian_blur(image, image.shape[-2] / grid_hw[0])}  # at 0 tokens
    ends = {"deletion": image.mean(dim=(-2, -1), keepdim=True).expand_as(image), "insertion": image}  # at all
    pixel_ranks = {name: torch.from_numpy(expand_to_pixels(token_ranks(m, tie_seed), tuple(image.shape[-2:])))
                   for name, m in maps.items()}

    # One job per distinct image: the ends of the curves (the original, the all-mean and the blurred image)
    # are shared by all maps.
    def key(kind: str, name: str, count: int) -> tuple:
        if count == (0 if kind == "deletion" else cells):
            return ("original",)
        return (kind, name if 0 < count < cells else None, count)

    def perturbed(job: tuple) -> torch.Tensor:
        if job == ("original",):
            return image
        kind, name, count = job
        if name is None:  # no token shown yet (insertion) or all hidden (deletion)
            return starts[kind] if count == 0 else ends[kind]
        return torch.where(pixel_ranks[name] < count, ends[kind], starts[kind])

    jobs = list(dict.fromkeys(key(kind, name, count) for count in counts for kind in KINDS for name in maps))
    run = FaithfulnessRun(fractions, {n: np.full(len(counts), np.nan) for n in maps},
                          {n: np.full(len(counts), np.nan) for n in maps}, 0, len(jobs))
    scores = {}
    for first in range(0, len(jobs), batch_size):
        batch = jobs[first:first + batch_size]
        with torch.inference_mode():
            logits = classify(torch.cat([perturbed(job) for job in batch]))
            logits = getattr(logits, "logits", logits)
            scores.update(zip(batch, logits.float().softmax(-1)[:, class_index].tolist()))
        run.done += len(batch)
        for kind in KINDS:
            for name, curve in getattr(run, kind).items():
                curve[:] = [scores.get(key(kind, name, count), np.nan) for count in counts]
        if run.finished:
            run.areas = {name: (float(np.trapezoid(run.deletion[name], fractions)),
                                float(np.trapezoid(run.insertion[name], fractions))) for name in maps}
        yield run


def faithfulness_figure(run: FaithfulnessRun, titles: tuple[str, str] = ("Deletion: most relevant hidden first",
                                                                          "Insertion: most relevant shown first"),
                        labels: tuple[str, str] = ("fraction of tokens", "p(class)")) -> Image.Image:
    """Both curves of every map side by side, areas in the legend once measured (points so far while a run
    is under way). `titles` and `labels` (x and y axes) are there for translation."""
    figure = Figure(figsize=(8.4, 3.3), dpi=100, layout="constrained")
    for i, kind in enumerate(KINDS):
        axes = figure.add_subplot(1, 2, i + 1)
        for name, curve in getattr(run, kind).items():
            area = f" ({run.areas[name][i]:.2f})" if run.areas else ""
            axes.plot(run.fractions, curve, marker="o", markersize=3, label=name + area,
                      linestyle="--" if name == "random" else "-", color="gray" if name == "random" else None)
        axes.set_title(titles[i], fontsize=10)
        axes.set_xlabel(labels[0])
        axes.set_ylabel(labels[1])
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.02)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, frameon=False)
    return figure_image(figure)
