"""The token grid: token index <-> (row, col) <-> pixel box in the processed crop.

A hybrid ViT's tokens are the cells of the backbone's feature map (Dosovitskiy et al., ICLR 2021,
Sec. 3.1), read row-major after a CLS token: token 0 is CLS, token 1 + row * cols + col is cell
(row, col). Cell boundaries are the integers round(i * crop / cells), so the cells tile the crop
exactly even when its size is not a multiple of the grid. Sizes are (height, width); boxes are
(left, top, right, bottom) with right and bottom exclusive, as Pillow's.
"""

from __future__ import annotations

import numpy as np
import torch

Box = tuple[int, int, int, int]


def cell_edges(length: int, cells: int) -> np.ndarray:
    """The cells + 1 pixel boundaries round(i * length / cells) (halves rounded up, in exact integers)."""
    return (2 * np.arange(cells + 1) * length + cells) // (2 * cells)


def token_to_cell(token: int, grid_hw: tuple[int, int]) -> tuple[int, int]:
    """(row, col) of grid token `token` (1 .. rows * cols)."""
    rows, cols = grid_hw
    if not 1 <= token <= rows * cols:
        raise ValueError(f"token {token} is not a grid token of a {rows}x{cols} grid (1..{rows * cols}; 0 is CLS)")
    return divmod(token - 1, cols)


def cell_to_token(row: int, col: int, grid_hw: tuple[int, int]) -> int:
    """The token index of cell (row, col)."""
    rows, cols = grid_hw
    if not (0 <= row < rows and 0 <= col < cols):
        raise ValueError(f"cell ({row}, {col}) is outside a {rows}x{cols} grid")
    return 1 + row * cols + col


def token_box(token: int, crop_hw: tuple[int, int], grid_hw: tuple[int, int]) -> Box:
    """The pixel box of grid token `token` in the crop the model saw."""
    row, col = token_to_cell(token, grid_hw)
    ys, xs = cell_edges(crop_hw[0], grid_hw[0]), cell_edges(crop_hw[1], grid_hw[1])
    return int(xs[col]), int(ys[row]), int(xs[col + 1]), int(ys[row + 1])


def token_at(x: float, y: float, crop_hw: tuple[int, int], grid_hw: tuple[int, int]) -> int:
    """The grid token whose box holds crop pixel (x, y), e.g. where a user clicked."""
    if not (0 <= x < crop_hw[1] and 0 <= y < crop_hw[0]):
        raise ValueError(f"({x}, {y}) is outside the {crop_hw[0]}x{crop_hw[1]} crop")
    row = int(np.searchsorted(cell_edges(crop_hw[0], grid_hw[0]), y, side="right")) - 1
    col = int(np.searchsorted(cell_edges(crop_hw[1], grid_hw[1]), x, side="right")) - 1
    return cell_to_token(row, col, grid_hw)


def to_grid(values: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """(..., N) values over all tokens -> (..., rows, cols) over the grid tokens (the CLS entry dropped)."""
    rows, cols = grid_hw
    if values.shape[-1] != rows * cols + 1:
        raise ValueError(f"{values.shape[-1]} tokens do not fit a {rows}x{cols} grid plus CLS")
    return values[..., 1:].unflatten(-1, (rows, cols))


def expand_to_pixels(grid_map: np.ndarray, crop_hw: tuple[int, int]) -> np.ndarray:
    """(rows, cols, ...) -> (crop_h, crop_w, ...): each cell's value fills exactly its token box."""
    heights = np.diff(cell_edges(crop_hw[0], grid_map.shape[0]))
    widths = np.diff(cell_edges(crop_hw[1], grid_map.shape[1]))
    return np.repeat(np.repeat(grid_map, heights, axis=0), widths, axis=1)
