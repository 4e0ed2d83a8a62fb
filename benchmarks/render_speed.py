"""How long re-rendering every picture takes once the model's outputs are cached (issue 3: <= 150 ms).

What the app caches per image (explorer.cache): the eager attentions of the full-size model
(12 layers, 12 heads, 577 tokens: a 24x24 grid plus CLS), random here, and the class-specific map,
which depends on nothing a re-render changes (only the class does, and a new class needs a new
forward and backward anyway), so `class_relevance` runs once right after that model call. Every
other map is computed from the cached attentions inside the timed call, as when a user changes the
layer, head, query token, fusion, discard ratio, colormap or opacity. Prints the median of several
runs per picture, the total against the budget, and the one-off costs apart.

    python benchmarks/render_speed.py [--repeats 9] [--threads N]

OpenMP's wait policy is set to PASSIVE unless the environment says otherwise: with the default
(spinning) policy and another busy process on the CPU, every multi-threaded torch op stalls (the README's
"OpenMP's wait policy" has the figures). The load average is printed with the table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when torch's OpenMP runtime starts

import numpy as np
import torch
from PIL import Image

from visualization import (attention_rollout, class_relevance, cls_map, draw_token_grid, head_stack,
                           layer_stack, overlay, raw_attention, small_multiples)

LAYERS, HEADS, GRID, CROP = 12, 12, (24, 24), 384
BUDGET_MS = 150.0


def cached_outputs(seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Peaked random attentions (softmax of scaled noise) and random gradients, float32, batch of one."""
    generator = torch.Generator().manual_seed(seed)
    n = GRID[0] * GRID[1] + 1
    attentions = [torch.softmax(3 * torch.randn(1, HEADS, n, n, generator=generator), -1) for _ in range(LAYERS)]
    gradients = [1e-3 * torch.randn(1, HEADS, n, n, generator=generator) for _ in range(LAYERS)]
    return attentions, gradients


def timed(render: Callable[[], object], repeats: int) -> float:
    """Median wall time of `render()` in milliseconds, after one warm-up call (imports, fonts, tables)."""
    render()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        render()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def pictures(attentions: list[torch.Tensor], class_map: torch.Tensor, crop: Image.Image) -> dict:
    """Each picture the app shows, from what the cache holds."""
    layers = [f"layer {i + 1}" for i in range(LAYERS)]
    heads = [f"head {i + 1}" for i in range(HEADS)]
    return {
        "rollout overlay (mean fusion)": lambda: overlay(
            crop, cls_map(attention_rollout(attentions, rows=[0]), GRID)[0]),
        "raw attention overlay (layer 6, head 5, token 300)": lambda: overlay(
            crop, raw_attention(attentions, GRID, layer=5, query=300, head=4)[0], cmap="viridis", smooth=True),
        "class map overlay": lambda: overlay(crop, class_map, alpha=0.6),
        "CLS attention, all layers (small multiples)": lambda: small_multiples(
            layer_stack(attentions, GRID)[0], layers, title="CLS attention per layer"),
        "CLS attention, all heads of layer 12": lambda: small_multiples(
            head_stack(attentions, GRID, layer=11)[0], heads, title="CLS attention per head, layer 12"),
        "token grid, token 300 highlighted": lambda: draw_token_grid(crop, GRID, highlight=300),
    }


def other_costs(attentions: list[torch.Tensor], gradients: list[torch.Tensor], crop: Image.Image) -> dict:
    """Not in the budget: a heavier rollout setting, and the class map's one-off computation."""
    return {
        "rollout overlay, max fusion + discard 0.9 (instead of mean)": lambda: overlay(crop, cls_map(
            attention_rollout(attentions, "max", discard_ratio=0.9, rows=[0]), GRID)[0]),
        "class_relevance, once per model call": lambda: class_relevance(attentions, gradients, rows=[0]),
    }


def table(title: str, rows: dict[str, float]) -> None:
    width = max(map(len, rows))
    print(f"{title.ljust(width)}      ms")
    for name, ms in rows.items():
        print(f"{name.ljust(width)}  {ms:6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    attentions, gradients = cached_outputs()
    class_map = cls_map(class_relevance(attentions, gradients, rows=[0]), GRID)[0]
    crop = Image.fromarray(np.random.default_rng(0).integers(0, 256, (CROP, CROP, 3), dtype=np.uint8))
    budget = {name: timed(render, args.repeats) for name, render in pictures(attentions, class_map, crop).items()}
    others = {name: timed(render, args.repeats) for name, render in other_costs(attentions, gradients, crop).items()}
    total = sum(budget.values())
    print(f"Re-rendering from cache: {LAYERS} layers, {HEADS} heads, {GRID[0] * GRID[1] + 1} tokens, {CROP}x{CROP} "
          f"crop; torch {torch.__version__}, {torch.get_num_threads()} threads, OMP_WAIT_POLICY="
          f"{os.environ['OMP_WAIT_POLICY']}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"median of {args.repeats}\n")
    table("picture", budget)
    print(f"{'total'.ljust(max(map(len, budget)))}  {total:6.1f}  (budget {BUDGET_MS:.0f} ms: "
          f"{'met' if total <= BUDGET_MS else 'MISSED'})\n")
    table("other costs (not in the total)", others)

if __name__ == "__main__":
    main()
