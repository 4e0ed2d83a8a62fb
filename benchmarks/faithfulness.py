"""Faithfulness of the relevance maps: deletion curves (Petsiuk et al., RISE, BMVC 2018).

For each image, hide the tokens a map calls most relevant first (their pixel boxes in the crop set to
mid-gray), a step at a time, and watch the probability of the originally predicted class. A faithful
map makes it fall fast: a small area under the curve. Compared: attention rollout, the class-specific
map (Chefer et al. 2021), last-layer CLS attention, and a random order.

    python benchmarks/faithfulness.py [--model shapes] [--images 100] [--steps 16] [--out docs]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import visualization as viz  # noqa: E402
from vithybrid import ViTHybridForImageClassification, ViTHybridImageProcessor  # noqa: E402
from vithybrid.training.shapes import sample  # noqa: E402
from vithybrid.checkpoints.shipped import resolve_model  # noqa: E402

METHODS = ("rollout", "class map", "last-layer CLS attention", "random")


def relevance_orders(model, pixels: torch.Tensor, grid: tuple[int, int], rng: np.random.Generator) -> dict:
    """Grid tokens (1-based) from most to least relevant, per method, and the predicted class."""
    result = model.attention_with_gradients(pixels)
    maps = {
        "rollout": viz.cls_map(viz.attention_rollout(result.attentions, rows=[0]), grid)[0],
        "class map": viz.cls_map(viz.class_relevance(result.attentions, result.gradients, rows=[0]), grid)[0],
        "last-layer CLS attention": viz.raw_attention(result.attentions, grid)[0],
        "random": torch.from_numpy(rng.random(grid)),
    }
    orders = {name: (torch.argsort(m.flatten(), descending=True) + 1).tolist() for name, m in maps.items()}
    return orders, int(result.logits.argmax(-1))


@torch.inference_mode()
def deletion_curve(model, pixels: torch.Tensor, order: list[int], label: int, grid, crop_hw, steps: int) -> np.ndarray:
    """Probability of `label` with the first k tokens of `order` hidden, for `steps` + 1 values of k."""
    counts = np.linspace(0, len(order), steps + 1).round().astype(int)
    batch = pixels.repeat(len(counts), 1, 1, 1)
    for row, count in enumerate(counts):
        for token in order[:count]:
            left, top, right, bottom = viz.token_box(token, crop_hw, grid)
            batch[row, :, top:bottom, left:right] = 0.0  # mid-gray after normalization with mean 0.5
    return model(batch).logits.softmax(-1)[:, label].numpy()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="shapes")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--seed", type=int, default=12345, help="generator seed (not used in training)")
    parser.add_argument("--out", type=Path, help="write faithfulness.md and faithfulness.png here")
    args = parser.parse_args(argv)

    folder = resolve_model(args.model)
    model = ViTHybridForImageClassification.from_pretrained(folder).requires_grad_(False)
    processor = ViTHybridImageProcessor.from_pretrained(folder)
    grid, crop_hw = model.config.grid_size, (processor.crop_size["height"], processor.crop_size["width"])
    rng = np.random.default_rng(args.seed)
    curves = {name: [] for name in METHODS}
    for index in tqdm(range(args.images), desc="deletion curves"):
        pixels = processor(sample(args.seed, index, model.config.image_size).image)["pixel_values"]
        orders, label = relevance_orders(model, pixels, grid, rng)
        for name in METHODS:
            curves[name].append(deletion_curve(model, pixels, orders[name], label, grid, crop_hw, args.steps))

    fractions = np.linspace(0, 1, args.steps + 1)
    mean = {name: np.mean(curves[name], axis=0) for name in METHODS}
    auc = {name: float(np.trapezoid(mean[name], fractions)) for name in METHODS}
    at = {f: int(round(f * args.steps)) for f in (0.1, 0.25, 0.5)}
    lines = [f"Deletion on {args.images} fresh shapes ({args.model}, grid {grid[0]}x{grid[1]}): probability of the "
             "predicted class as the most relevant tokens are hidden; lower area = more faithful.", "",
             "| order | AUC | p at 10% hidden | p at 25% | p at 50% | AUC / random |", "|---|---|---|---|---|---|"]
    for name in METHODS:
        p = mean[name]
        lines.append(f"| {name} | {auc[name]:.3f} | {p[at[0.1]]:.3f} | {p[at[0.25]]:.3f} | {p[at[0.5]]:.3f} | "
                     f"{auc[name] / auc['random']:.2f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "faithfulness.md").write_text(table + "\n")
        figure = Figure(figsize=(6, 3.6), dpi=100, layout="constrained")
        axes = figure.add_subplot()
        for name in METHODS:
            axes.plot(fractions, mean[name], label=f"{name} (AUC {auc[name]:.2f})")
        axes.set_xlabel("fraction of tokens hidden, most relevant first")
        axes.set_ylabel("p(predicted class)")
        axes.legend(frameon=False)
        viz.figure_image(figure).save(args.out / "faithfulness.png")


if __name__ == "__main__":
    main()
