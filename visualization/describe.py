"""Facts a sentence can tell about a map, computed from its numbers: is it flat, where are its strong cells
(named as regions of the picture: upper left, top, ... centre ... lower right), on how many of the grid's cells,
and how weak the rest is. The text alternative of a heatmap for readers who cannot see it; the words themselves
come from the page's translation files (ui.describe).

"Strong" is the upper half of the colour legend: a cell at least halfway from the map's weakest value to its
strongest, on the same min-max scale as the picture (`normalize`), so that the words describe what is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .render import normalize

STRONG = 0.5  # on the normalized scale: the upper half of the colour legend
FLAT_SPREAD = 0.05  # max - min below 5% of the largest magnitude: no cell stands out (min-max would magnify noise)
WEAK_REST = 0.2  # the other cells' mean (normalized) below this: "weak" elsewhere, else "moderate"
MOST = 0.5  # strong on more than half of the cells: strong "across most of the picture"
# Thirds of the picture, rows top to bottom x columns left to right: the picture's own left and right.
RESTS = ("weak", "moderate")
REGIONS = (("upper_left", "top", "upper_right"), ("left", "centre", "right"), ("lower_left", "bottom", "lower_right"))


@dataclass(frozen=True)
class MapFacts:
    grid: tuple[int, int]  # (rows, cols)
    flat: bool  # no cell stands out: the other fields say nothing then (peak is the first cell)
    places: tuple[str, ...]  # REGIONS names of the strong areas, strongest first; () if flat; ("most",) if most
    scattered: bool  # strong in more than two regions: `places` holds only the strongest one
    strong_cells: int
    peak: tuple[int, int]  # (row, col) of the strongest cell, from 0
    rest: str  # one of RESTS: how strong the cells that are not strong are

    @property
    def cells(self) -> int:
        return self.grid[0] * self.grid[1]


def region(row: float, col: float, grid_hw: tuple[int, int]) -> str:
    """The REGIONS name of the third of the picture that holds grid position (row, col) (cell centres at +0.5)."""
    vertical, horizontal = (min(2, int(3 * (position + 0.5) / cells)) for position, cells in zip((row, col), grid_hw))
    return REGIONS[vertical][horizontal]


def areas(mask: np.ndarray) -> list[np.ndarray]:
    """The 8-connected areas of a boolean grid, each as an (n, 2) array of its (row, col) cells."""
    seen, found = np.zeros_like(mask), []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start], stack, cells = True, [start], []
        while stack:
            row, col = stack.pop()
            cells.append((row, col))
            for r in range(max(row - 1, 0), min(row + 2, mask.shape[0])):
                for c in range(max(col - 1, 0), min(col + 2, mask.shape[1])):
                    if mask[r, c] and not seen[r, c]:
                        seen[r, c] = True
                        stack.append((r, c))
        found.append(np.array(cells))
    return found


def describe_map(heatmap: torch.Tensor | np.ndarray) -> MapFacts:
    """The facts of one (rows, cols) map (see the module's docstring)."""
    raw = np.asarray(heatmap.detach().cpu() if isinstance(heatmap, torch.Tensor) else heatmap, dtype=np.float64)
    if raw.ndim != 2 or raw.size == 0:
        raise ValueError(f"expected one (rows, cols) map, got shape {raw.shape}")
    if not np.isfinite(raw).all():
        raise ValueError("the map holds NaN or infinite values")
    grid = (raw.shape[0], raw.shape[1])
    if np.ptp(raw) <= FLAT_SPREAD * np.abs(raw).max():
        return MapFacts(grid, True, (), False, 0, (0, 0), RESTS[0])
    values = normalize(raw)
    strong = values >= STRONG
    peak = np.unravel_index(int(values.argmax()), grid)
    rest = RESTS[0] if values[~strong].mean() < WEAK_REST else RESTS[1]
    if strong.sum() > MOST * values.size:
        places, scattered = ("most",), False
    else:
        # Each strong area named by its centre (weighted by the values), the strongest area first; areas in the
        # same region share its name.
        named = []
        for cells in areas(strong):
            weights = values[tuple(cells.T)]
            named.append((weights.sum(), region(*np.average(cells, axis=0, weights=weights), grid)))
        names = tuple(dict.fromkeys(name for _, name in sorted(named, reverse=True)))
        scattered = len(names) > 2
        places = names[:1] if scattered else names
    return MapFacts(grid, False, places, scattered, int(strong.sum()), (int(peak[0]), int(peak[1])), rest)
