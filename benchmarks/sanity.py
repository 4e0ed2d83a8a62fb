"""Sanity checks for the maps (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018): cascading
randomization of the model's weights from the top down.

Starting from the trained model, re-initialize one more block at a time, from the classifier down
through the transformer layers, the token embedding, the backbone stages and the stem, and after each
step measure how well each map still agrees with the trained model's map (Spearman rank correlation
over the token grid, mean over fresh images, explaining the class the trained model predicted). A map
that does not change when the weights it should depend on are random explains nothing about the model.

    python benchmarks/sanity.py [--model shapes] [--images 20] [--out docs] [--json FILE]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

import visualization as viz
from faithfulness import explanation_maps
from vithybrid import load_pretrained
from vithybrid.explain import MAP_NAMES as MAPS
from vithybrid.training.shapes import sample

PASS_BELOW = 0.5  # a map passes when its rank correlation with the trained map falls below this


def randomize_embeddings(model) -> None:
    """Re-initialize the token projection, position embeddings and CLS token, but not the backbone inside."""
    backbone = model.vit.embeddings.patch_embeddings.backbone
    trained = {name: value.clone() for name, value in backbone.state_dict().items()}
    model.init_weights(model.vit.embeddings)
    backbone.load_state_dict(trained)


def cascade(model) -> list[tuple[str, callable]]:
    """(name, randomize) steps from the top of the model down; each step adds to the ones before."""
    layers = model.vit.encoder.layer
    bit = model.vit.embeddings.patch_embeddings.backbone.bit
    stages = bit.encoder.stages[: model.vit.embeddings.patch_embeddings.backbone.output_index]
    steps = [("classifier", lambda: (model.init_weights(model.classifier), model.init_weights(model.vit.layernorm)))]
    steps += [(f"layer {i + 1}", lambda i=i: model.init_weights(layers[i])) for i in reversed(range(len(layers)))]
    steps.append(("token embedding", lambda: randomize_embeddings(model)))
    steps += [(f"stage {i + 1}", lambda i=i: model.init_weights(stages[i])) for i in reversed(range(len(stages)))]
    steps.append(("stem", lambda: model.init_weights(bit.embedder)))
    return steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="shapes", help="a trained model: random weights make the check meaningless")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--seed", type=int, default=2024, help="image and re-initialization seed (not training's)")
    parser.add_argument("--out", type=Path, help="write sanity.md, sanity.png and sanity_maps.png here")
    parser.add_argument("--json", type=Path, help="write the correlations here")
    args = parser.parse_args(argv)

    model, processor = load_pretrained(args.model)
    model.requires_grad_(False)
    images = [processor(sample(args.seed, i, model.config.image_size).image)["pixel_values"]
              for i in range(args.images)]
    trained = [explanation_maps(model, pixels) for pixels in images]
    labels = [label for _, label in trained]
    torch.manual_seed(args.seed)
    names, correlations, examples = ["none (trained)"], [{m: 1.0 for m in MAPS}], [trained[0][0]]
    for name, randomize in cascade(model):
        randomize()
        current = [explanation_maps(model, pixels, label)[0] for pixels, label in zip(images, labels)]
        # A map gone flat (a Grad-CAM of all zeros) shares no ranking with the trained one: correlation 0.
        correlations.append({m: float(np.mean([np.nan_to_num(viz.rank_correlation(c[m], t[m]))
                                               for c, (t, _) in zip(current, trained)])) for m in MAPS})
        names.append(name)
        examples.append(current[0])
        print(f"randomized down to {name}: " + ", ".join(f"{m} {correlations[-1][m]:.2f}" for m in MAPS), flush=True)

    def first_below(m: str) -> str | None:
        return next((n for n, c in zip(names, correlations) if c[m] < PASS_BELOW), None)
    transformer_done = names.index("layer 1")
    lines = [f"Cascading randomization (Adebayo et al. 2018) of {args.model}, {args.images} fresh images: mean "
             "Spearman rank correlation of each map with the trained model's map, after re-initializing every "
             "block from the top down to the one named.", "",
             "| randomized down to | " + " | ".join(MAPS) + " |", "|---|" + "---|" * len(MAPS)]
    lines += [f"| {n} | " + " | ".join(f"{c[m]:.2f}" for m in MAPS) + " |" for n, c in zip(names, correlations)]
    lines += ["", f"A map passes when its correlation falls below {PASS_BELOW} once the transformer is random.", ""]
    for m in MAPS:
        passed = correlations[transformer_done][m] < PASS_BELOW
        blind = correlations[1][m] > 0.95  # unchanged by a random classifier: it cannot be about the class
        note = ", unchanged: it shows what the model attends to, not what decides the class" if blind else ""
        lines.append(f"- {m}: {'passes' if passed else 'fails'} (first below {PASS_BELOW} at: "
                     f"{first_below(m) or 'never'}; after the classifier alone: {correlations[1][m]:.2f}{note})")
    table = "\n".join(lines)
    print(table)
    if args.json:
        args.json.write_text(json.dumps({"steps": names, "correlations": correlations}))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "sanity.md").write_text(table + "\n")
        figure = Figure(figsize=(7.5, 3.6), dpi=100, layout="constrained")
        axes = figure.add_subplot()
        for m in MAPS:
            axes.plot(range(len(names)), [c[m] for c in correlations], marker="o", label=m)
        axes.axhline(PASS_BELOW, color="gray", linestyle=":", linewidth=1)
        axes.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
        axes.set_xlabel("randomized from the top down to")
        axes.set_ylabel("rank correlation with trained map")
        axes.set_ylim(-0.4, 1.05)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8, frameon=False)
        viz.figure_image(figure).save(args.out / "sanity.png")
        maps = np.stack([viz.normalize(e[m]) for m in MAPS for e in examples])
        titles = [n.replace("none (trained)", "trained") for _ in MAPS for n in names]
        viz.small_multiples(maps, titles, columns=len(names),
                            title="rows: " + ", ".join(MAPS) + " (first image)").save(args.out / "sanity_maps.png")


if __name__ == "__main__":
    main()
