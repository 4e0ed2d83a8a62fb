"""Text alternatives in the session's language: a map's facts (visualization.describe_map) and the top-5 as one
sentence each, for a picture's alternative text (gr.Image(alt_text=...)) and for a caption shown under it.

Left and right are the photo's own (pictures are not mirrored in a right-to-left page), so the sentences say
"of the photo".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

import visualization as viz

from .i18n import text

PLACE_KEYS = {name: f"describe.place.{name}" for row in viz.REGIONS for name in row}
REST_KEYS = {rest: f"describe.rest.{rest}" for rest in viz.RESTS}


def map_sentence(language: str, facts: viz.MapFacts) -> str:
    """One sentence for one map's facts ("Strongest at the upper left of the photo, on 3 of 576 cells ...")."""
    if facts.flat:
        return text(language, "describe.flat", count=facts.cells)
    fields = {"strong": facts.strong_cells, "count": facts.cells, "row": facts.peak[0] + 1, "col": facts.peak[1] + 1,
              "rest": text(language, REST_KEYS[facts.rest])}
    places = [text(language, PLACE_KEYS[place]) for place in facts.places if place != "most"]
    if not places:
        return text(language, "describe.most", **fields)
    if facts.scattered:
        return text(language, "describe.scattered", place=places[0], **fields)
    if len(places) == 2:
        return text(language, "describe.two", place=places[0], other=places[1], **fields)
    return text(language, "describe.one", place=places[0], **fields)


def describe(language: str, heatmap: torch.Tensor | np.ndarray) -> str:
    """The sentence for one (rows, cols) map, from its numbers."""
    return map_sentence(language, viz.describe_map(heatmap))


def focus_sentence(language: str, maps: Sequence[torch.Tensor | np.ndarray], unit: str) -> str:
    """Small multiples (one map per head or per layer, `unit` "head" or "layer", numbered from 1) in words: the most
    focused (the fewest strong cells), described, and the most spread out."""
    if len(maps) == 1:
        return describe(language, maps[0])
    facts = [viz.describe_map(heatmap) for heatmap in maps]
    if all(fact.flat for fact in facts):
        return text(language, "describe.all_flat", total=len(facts), count=facts[0].cells)
    # Fewest strong cells first; of as many, the brightest on the pictures' shared colour scale.
    order = sorted(range(len(facts)), key=lambda i: (facts[i].cells if facts[i].flat else facts[i].strong_cells,
                                                     -float(np.max(np.asarray(maps[i])))))
    focused, spread = order[0], order[-1]

    def name(index):
        return text(language, "describe.head" if unit == "head" else "describe.layer", number=index + 1)

    sentence = text(language, "describe.focused", name=name(focused), total=len(facts),
                    sentence=map_sentence(language, facts[focused]))
    fact = facts[spread]
    if fact.flat:
        return sentence + " " + text(language, "describe.spread_flat", name=name(spread), count=fact.cells)
    return sentence + " " + text(language, "describe.spread", name=name(spread), strong=fact.strong_cells,
                                 count=fact.cells)


def percent(language: str, probability: float) -> str:
    return text(language, "describe.below_one_percent") if probability < 0.005 else f"{probability:.0%}"


def top_sentence(language: str, top: Mapping[str, float]) -> str:
    """The top-k chart ({label: probability}, as gr.Label takes it) as one sentence, most likely first:
    "Most likely tabby cat, 82%; then tiger cat, 9%, ..."."""
    ranked = sorted(top.items(), key=lambda item: -item[1])
    if not ranked:
        return ""
    (label, probability), others = ranked[0], ranked[1:]
    if not others:
        return text(language, "describe.top", label=label, percent=percent(language, probability))
    listed = text(language, "describe.separator").join(f"{name} {percent(language, p)}" for name, p in others)
    return text(language, "describe.top_then", label=label, percent=percent(language, probability), others=listed)


# What each example shows, in words: gr.Examples(example_labels=...) shows these names instead of thumbnails that a
# screen reader cannot name (Gradio gives the thumbnails no alternative text).
EXAMPLE_KEYS = {"chelsea.png": "example.chelsea", "coffee.png": "example.coffee", "astronaut.png": "example.astronaut",
                "rocket.jpg": "example.rocket", "horse.png": "example.horse",
                "shape_circle.png": "example.shape_circle", "shape_star.png": "example.shape_star",
                "shape_triangle.png": "example.shape_triangle"}


def example_labels(language: str, files: Sequence[str | Path]) -> list[str]:
    """A name for each example picture in `language`; a picture added without one is named by its file name."""
    return [text(language, EXAMPLE_KEYS[Path(file).name]) if Path(file).name in EXAMPLE_KEYS
            else Path(file).stem.replace("_", " ") for file in files]
