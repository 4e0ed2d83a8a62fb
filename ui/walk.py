"""The guided walk, tab "How hybrid tokens work": the model's path from pixels to a class, step by step,
every number read from the loaded model (Explorer.facts), every sentence from the translation files, and the
backbone's maps for the user's photo."""

from __future__ import annotations

import gradio as gr

import visualization as viz

from .i18n import I18N, text
from .page import Page

TITLE, ELEM_ID = "tab.how", "tab-how"

VIT_PATCH = 16  # ViT-B/16's pixel patches, the comparison the paper draws


def walk(facts: dict[str, object], language: str) -> str:
    """Markdown: the input, the stem, each BiT stage at its true size, the 1x1 projection, the CLS token,
    position embeddings, the encoder, the head; then how ViT's pixel patches differ, and the paper."""
    (height, width), maps = facts["input"], facts["maps"]
    rows, cols = facts["grid"]
    hidden, tokens = facts["hidden size"], facts["tokens"]
    steps = [text(language, "walk.title", model=facts["model"]),
             text(language, "walk.input", height=height, width=width)]
    channels, map_height, map_width = maps[0]
    steps.append(text(language, "walk.stem", height=map_height, width=map_width, channels=channels))
    for stage, ((channels, map_height, map_width), blocks) in enumerate(zip(maps[1:], facts["stage depths"]), 1):
        steps.append(text(language, "walk.stage", step=stage + 2, stage=stage, blocks=blocks, height=map_height,
                          width=map_width, channels=channels))
    step = len(maps) + 2
    steps += [
        text(language, "walk.projection" if facts["patch"] == 1 else "walk.projection_patch", step=step, rows=rows,
             cols=cols, channels=maps[-1][0], hidden=hidden, grid_tokens=facts["grid tokens"], patch=facts["patch"]),
        text(language, "walk.cls", step=step + 1, tokens=tokens),
        text(language, "walk.positions", step=step + 2, tokens=tokens),
        text(language, "walk.encoder", step=step + 3, layers=facts["layers"], heads=facts["heads"], tokens=tokens),
        text(language, "walk.head", step=step + 4, hidden=hidden, labels=facts["labels"],
             parameters=facts["parameters"]),
        text(language, "walk.vit", height=height, width=width, vit_rows=height // VIT_PATCH,
             vit_cols=width // VIT_PATCH, vit_tokens=(height // VIT_PATCH) * (width // VIT_PATCH),
             stride=facts["stride"]),
        text(language, "walk.paper"),
        text(language, "walk.picture"),
    ]
    return "\n\n".join(steps)


def build(page: Page) -> None:
    words = gr.Markdown(walk(page.explorer.facts(), "en"), elem_id="how")
    picture = gr.Image(label=I18N("backbone.label"), elem_id="backbone", interactive=False)

    def draw(name, path):
        image = page.photo(path)
        return None if image is None else viz.with_colorbar(page.model_of(name).backbone_picture(image), "viridis")

    page.on_photo(draw, [page.chosen, page.image], [picture])
    page.on_text(lambda language, chosen: walk(chosen.facts(), language), [], [words])
