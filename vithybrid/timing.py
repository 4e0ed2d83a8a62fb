"""Timing the eager attention path against PyTorch's fused SDPA on one model, as the app's panel does:
warm-up, then interleaved runs of both paths, medians."""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass
from typing import ContextManager, Callable

import torch

from .model.modeling import ViTHybridForImageClassification

# The seed's figures: google/vit-hybrid-base-bit-384, float32, PyTorch 2.3, one A100 (ms per forward).
SEED_A100 = ((1, 29.0, 18.0), (2, 26.0, 18.0), (4, 25.0, 18.0), (8, 34.0, 24.0))


@dataclass
class TimingRow:
    batch: int
    eager_ms: float
    sdpa_ms: float

    @property
    def speedup(self) -> float:
        return self.eager_ms / self.sdpa_ms


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def forward_ms(model: ViTHybridForImageClassification, pixel_values: torch.Tensor, implementation: str) -> float:
    """One forward pass on the given attention path, in milliseconds; the model's own setting is restored."""
    previous = model.attn_implementation
    model.set_attn_implementation(implementation)
    try:
        _synchronize(pixel_values.device)
        start = time.perf_counter()
        model(pixel_values)
        _synchronize(pixel_values.device)
        return (time.perf_counter() - start) * 1000
    finally:
        model.set_attn_implementation(previous)


def time_batch(model: ViTHybridForImageClassification, image: torch.Tensor, batch: int, repeats: int = 3,
               warmup: int = 1, lock: Callable[[], ContextManager] = contextlib.nullcontext) -> TimingRow:
    """Median time of each path for `batch` copies of one processed image. The paths alternate run by
    run, so drift in the machine's speed hits both alike. `lock` guards each run (shared models)."""
    pixels = image[:1].expand(batch, -1, -1, -1).contiguous()
    samples: dict[str, list[float]] = {"eager": [], "sdpa": []}
    for run in range(warmup + repeats):
        for implementation in samples:
            with lock():
                elapsed = forward_ms(model, pixels, implementation)
            if run >= warmup:
                samples[implementation].append(elapsed)
    return TimingRow(batch, statistics.median(samples["eager"]), statistics.median(samples["sdpa"]))


@torch.inference_mode()
def max_logit_difference(model: ViTHybridForImageClassification, pixel_values: torch.Tensor) -> float:
    """Largest absolute difference between the logits of the two paths on the same input."""
    previous = model.attn_implementation
    logits = {}
    try:
        for implementation in ("eager", "sdpa"):
            model.set_attn_implementation(implementation)
            logits[implementation] = model(pixel_values).logits.float()
    finally:
        model.set_attn_implementation(previous)
    return float((logits["eager"] - logits["sdpa"]).abs().max())
