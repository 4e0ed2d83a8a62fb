"""Raw attention: what one query token attends to in one layer, per head or with the heads fused.

`attentions` is the model's per-layer sequence of (B, heads, N, N) probabilities (row = query,
column = key; token 0 is CLS, then the grid row-major). Maps come back over the grid, (B, rows, cols).
"""

from __future__ import annotations

from typing import Sequence

import torch

from .grid import to_grid

HEAD_FUSIONS = ("mean", "max", "min")


def fuse_heads(attention: torch.Tensor, head_fusion: str = "mean") -> torch.Tensor:
    """Reduce dimension 1 (the heads) of (B, heads, ...) by its mean, maximum or minimum."""
    if head_fusion == "mean":  # as a product with 1/heads weights: one BLAS call, faster than .mean (README)
        weights = attention.new_full((attention.shape[0], 1, attention.shape[1]), 1 / attention.shape[1])
        return (weights @ attention.flatten(2)).view(attention.shape[:1] + attention.shape[2:])
    if head_fusion == "max":
        return attention.amax(1)
    if head_fusion == "min":
        return attention.amin(1)
    raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")


def raw_attention(attentions: Sequence[torch.Tensor], grid_hw: tuple[int, int], layer: int = -1, query: int = 0,
                  head: int | None = None, head_fusion: str = "mean") -> torch.Tensor:
    """(B, rows, cols): the attention of token `query` (0: CLS) over the grid in one layer, for one head
    or (head=None) the heads fused."""
    rows = attentions[layer][:, :, query]  # (B, heads, N): only the query's row is read
    return to_grid(rows[:, head] if head is not None else fuse_heads(rows, head_fusion), grid_hw)


def layer_stack(attentions: Sequence[torch.Tensor], grid_hw: tuple[int, int], query: int = 0,
                head: int | None = None, head_fusion: str = "mean") -> torch.Tensor:
    """(B, layers, rows, cols): `raw_attention` in every layer, for small multiples."""
    return torch.stack([raw_attention(attentions, grid_hw, layer, query, head, head_fusion)
                        for layer in range(len(attentions))], dim=1)


def head_stack(attentions: Sequence[torch.Tensor], grid_hw: tuple[int, int], layer: int = -1,
               query: int = 0) -> torch.Tensor:
    """(B, heads, rows, cols): the attention of token `query` over the grid in each head of one layer."""
    return to_grid(attentions[layer][:, :, query], grid_hw)
