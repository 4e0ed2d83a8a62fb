"""Faithfulness of the relevance maps over many images: mean deletion and insertion curves (Petsiuk et
al., RISE, BMVC 2018; measured by `visualization.faithfulness_curves`, which the app runs on one photo).

Compared: attention rollout, the class-specific map (Chefer et al. 2021), last-layer CLS attention,
Grad-CAM on the last backbone stage (the token grid), and a random order, each explaining the predicted
class of fresh generated shapes.

    python benchmarks/faithfulness.py [--model shapes] [--images 100] [--steps 16] [--out docs] [--json FILE]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import visualization as viz
from vithybrid import load_pretrained
from vithybrid.explain import MAP_NAMES, photo_maps
from vithybrid.training.shapes import sample


def explanation_maps(model, pixels: torch.Tensor, class_index: int | None = None) -> tuple[dict, int]:
    """The app's maps of one image (vithybrid.explain's, from one pass), each (rows, cols) on the token grid, for
    `class_index` (default: the predicted class), and that class."""
    found = photo_maps(model, pixels, class_index)
    return {name: found.maps[name][0] for name in MAP_NAMES}, int(found.class_index[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="shapes")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--steps", type=int, default=16, help="equal steps from no token to all tokens")
    parser.add_argument("--seed", type=int, default=12345, help="generator seed (not used in training)")
    parser.add_argument("--out", type=Path, help="write faithfulness.md and faithfulness.png here")
    parser.add_argument("--json", type=Path, help="write the mean areas here")
    args = parser.parse_args(argv)

    model, processor = load_pretrained(args.model)
    model.requires_grad_(False)
    fractions = np.linspace(0, 1, args.steps + 1)
    runs = []
    for index in tqdm(range(args.images), desc="deletion and insertion"):
        pixels = processor(sample(args.seed, index, model.config.image_size).image)["pixel_values"]
        maps, label = explanation_maps(model, pixels)
        *_, run = viz.faithfulness_curves(model, pixels, maps, label, fractions, batch_size=64, random_seed=index)
        runs.append(run)

    names = list(runs[0].deletion)
    mean = viz.FaithfulnessRun(fractions, *({n: np.mean([getattr(r, kind)[n] for r in runs], axis=0) for n in names}
                                            for kind in viz.faithfulness.KINDS), 1, 1)
    mean.areas = {n: tuple(float(np.mean([r.areas[n][i] for r in runs])) for i in range(2)) for n in names}
    wins = {n: float(np.mean([r.areas[n][1] - r.areas[n][0] > r.areas["random"][1] - r.areas["random"][0]
                              for r in runs])) for n in names}
    lines = [f"Deletion and insertion on {args.images} fresh shapes ({args.model}, grid {model.config.grid_size[0]}x"
             f"{model.config.grid_size[1]}, {args.steps} steps), explaining the predicted class: mean area under the "
             "probability curve (deletion: lower is better; insertion: higher is better).", "",
             "| order | deletion AUC | insertion AUC | insertion - deletion | images where it beats random |",
             "|---|---|---|---|---|"]
    for n in names:
        dele, ins = mean.areas[n]
        beats = "" if n == "random" else f"{wins[n]:.0%}"
        lines.append(f"| {n} | {dele:.3f} | {ins:.3f} | {ins - dele:.3f} | {beats} |")
    table = "\n".join(lines)
    print(table)
    if args.json:
        args.json.write_text(json.dumps({"areas": mean.areas, "beats_random": wins}))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "faithfulness.md").write_text(table + "\n")
        viz.faithfulness_figure(mean).save(args.out / "faithfulness.png")


if __name__ == "__main__":
    main()
