"""Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020).

Attention mixes tokens, and the residual connection carries each token through unchanged, so a
layer's token-to-token flow is modelled as its head-fused attention plus the identity, rows
renormalized; the flow through the network is the product of these per-layer matrices,
R = A_L @ ... @ A_1. Row 0 of R (without its own entry) says how much the final CLS token draws on
each input token: the rollout map. The "discard" option is the refinement of Gildenblat's
vit-explain (2020): drop the weakest links of each layer before the product.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .attention import fuse_heads
from .grid import to_grid


def layer_product(layers: Sequence[tuple[torch.Tensor, torch.Tensor | None]],
                  rows: Sequence[int] | None = None) -> torch.Tensor:
    """The product M_L @ ... @ M_1 of per-layer M = diag(s) @ (F + I), from (B, N, N) F and (B, N) row scales s
    (None: all 1), or only the given rows of it, (B, len(rows), N). It is taken from the last layer down,
    P <- P @ M = u @ F + u with u = P * s (s scaling columns), so neither I nor M is ever materialized
    and a few rows cost vector-matrix products only."""
    first = layers[0][0]
    n = first.shape[-1]
    eye = torch.eye(n, dtype=first.dtype, device=first.device)
    product = (eye if rows is None else eye[list(rows)]).expand(first.shape[0], -1, -1)
    for matrix, scale in reversed(layers):
        scaled = product if scale is None else product * scale[:, None, :]
        product = torch.baddbmm(scaled, scaled, matrix)
    return product


def discard_weakest(fused: torch.Tensor, discard_ratio: float) -> torch.Tensor:
    """Zero the weakest links of (B, N, N) attention. Per image, the eligible entries are the (N - 1)^2
    that are neither in column 0 (attention to CLS) nor on the diagonal; with k = int(discard_ratio *
    (N - 1)^2), every eligible entry not above the k-th lowest eligible value is set to 0 (exactly k
    entries unless values tie)."""
    if not 0.0 <= discard_ratio <= 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1], got {discard_ratio}")
    n = fused.shape[-1]
    count = int(discard_ratio * (n - 1) ** 2)
    if count == 0:
        return fused
    eligible = ~torch.eye(n, dtype=torch.bool, device=fused.device)
    eligible[:, 0] = False
    threshold = fused[:, eligible].kthvalue(count, dim=-1).values
    return fused.masked_fill(eligible & (fused <= threshold[:, None, None]), 0.0)


def attention_rollout(attentions: Sequence[torch.Tensor], head_fusion: str = "mean", discard_ratio: float = 0.0,
                      start_layer: int = 0, rows: Sequence[int] | None = None) -> torch.Tensor:
    """The (B, N, N) rollout matrix of per-layer (B, heads, N, N) attentions, from layer `start_layer` on.

    Per layer: fuse the heads ("mean", "max" or "min"), discard the weakest links (`discard_weakest`),
    add the identity, divide every row by its sum; then multiply, later layers on the left. `rows`
    (e.g. [0], all `cls_map` needs) returns only those rows, (B, len(rows), N), at a fraction of the
    cost. Computed in float32, or float64 for float64 input.
    """
    layers = list(attentions)[start_layer:]
    if not layers:
        raise ValueError(f"start_layer {start_layer} leaves no layer of {len(attentions)} to roll out")
    dtype = torch.promote_types(layers[0].dtype, torch.float32)
    fused = [discard_weakest(fuse_heads(attention.to(dtype), head_fusion), discard_ratio) for attention in layers]
    return layer_product([(f, 1 / (f.sum(-1) + 1)) for f in fused], rows)


def cls_map(matrix: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """(B, rows, cols): row 0 of a (B, N, N) rollout or relevance matrix (the CLS token's; of a matrix
    computed with `rows`, the first row asked for), over the grid."""
    return to_grid(matrix[:, 0], grid_hw)
