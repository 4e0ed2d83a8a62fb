"""Class-specific relevance (Chefer, Gur & Wolf, "Generic Attention-model Explainability for Interpreting
Bi-Modal and Encoder-Decoder Transformers", ICCV 2021, Eq. 5-6 for self-attention).

Rollout ignores which class is explained. Chefer et al. weight each head's attention by the gradient
of the class logit with respect to it, keep the positive part and average the heads,
Abar = E_h[(grad * A)^+], and accumulate R = I; R = R + Abar @ R, layer by layer. Row 0 of R without
its own entry is the map. Since R + Abar @ R = (I + Abar) @ R, the result is the product
(I + Abar_L) @ ... @ (I + Abar_1), taken as rollout's is.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .attention import fuse_heads
from .rollout import layer_product


def class_relevance(attentions: Sequence[torch.Tensor], gradients: Sequence[torch.Tensor],
                    rows: Sequence[int] | None = None) -> torch.Tensor:
    """The (B, N, N) relevance matrix R (`cls_map(R, grid_hw)` is the map) from per-layer (B, heads, N, N)
    attentions and the gradients of one class logit with respect to them, both in layer order (as
    `model.attention_with_gradients` returns them). `rows` as in `attention_rollout`."""
    if len(attentions) != len(gradients) or not attentions:
        raise ValueError(f"need one gradient per attention layer, got {len(attentions)} and {len(gradients)}")
    dtype = torch.promote_types(attentions[0].dtype, torch.float32)
    return layer_product([(fuse_heads((g.to(dtype) * a.to(dtype)).clamp_(min=0), "mean"), None)
                          for a, g in zip(attentions, gradients)], rows)
