"""The guided walk, tab "How hybrid tokens work": the model's path from pixels to a class, step by step,
every number read from the loaded model (explorer.ModelFacts), every sentence from the translation files, the
backbone's maps for the user's photo, and the ViT paper's Figure 7 for the loaded model: its stem's filters, the
similarity of its position embeddings, and how far each head attends at each depth on the user's photo."""

from __future__ import annotations

import gradio as gr

import visualization as viz
from explorer import ModelFacts

from .i18n import I18N, text
from .page import Page, session

TITLE, ELEM_ID = "tab.how", "tab-how"

VIT_PATCH = 16  # ViT-B/16's pixel patches, the comparison the paper draws


def walk(facts: ModelFacts, language: str) -> str:
    """Markdown: the input, the stem, each BiT stage at its true size, the 1x1 projection, the CLS token,
    position embeddings, the encoder, the head; then how ViT's pixel patches differ, and the paper."""
    (height, width), maps = facts.input_hw, facts.maps
    rows, cols = facts.grid
    hidden, tokens = facts.hidden_size, facts.tokens
    steps = [text(language, "walk.title", model=facts.model),
             text(language, "walk.input", height=height, width=width)]
    channels, map_height, map_width = maps[0]
    steps.append(text(language, "walk.stem", height=map_height, width=map_width, channels=channels))
    for stage, ((channels, map_height, map_width), blocks) in enumerate(zip(maps[1:], facts.stage_depths), 1):
        steps.append(text(language, "walk.stage", step=stage + 2, stage=stage, blocks=blocks, height=map_height,
                          width=map_width, channels=channels))
    step = len(maps) + 2
    steps += [
        text(language, "walk.projection" if facts.patch == 1 else "walk.projection_patch", step=step, rows=rows,
             cols=cols, channels=maps[-1][0], hidden=hidden, grid_tokens=facts.grid_tokens, patch=facts.patch),
        text(language, "walk.cls", step=step + 1, tokens=tokens),
        text(language, "walk.positions", step=step + 2, tokens=tokens),
        text(language, "walk.encoder", step=step + 3, layers=facts.layers, heads=facts.heads, tokens=tokens),
        text(language, "walk.head", step=step + 4, hidden=hidden, labels=facts.labels,
             parameters=facts.parameters_m),
        text(language, "walk.vit", height=height, width=width, vit_rows=height // VIT_PATCH,
             vit_cols=width // VIT_PATCH, vit_tokens=(height // VIT_PATCH) * (width // VIT_PATCH),
             stride=facts.stride),
        text(language, "walk.paper"),
        text(language, "walk.picture"),
    ]
    return "\n\n".join(steps)


def build(page: Page) -> None:
    words = gr.Markdown(walk(page.explorer.facts, "en"), elem_id="how")
    picture = gr.Image(label=I18N("backbone.label"), elem_id="backbone", interactive=False)
    gr.Markdown(I18N("fig7.help"))
    with gr.Row():
        with gr.Column(min_width=260):
            filters = gr.Image(page.explorer.filter_picture, label=I18N("fig7.filters.label"), elem_id="fig7-filters",
                               interactive=False)
            gr.Markdown(I18N("fig7.filters.caption"))
        with gr.Column(min_width=320):
            positions = gr.Image(page.explorer.position_picture, label=I18N("fig7.positions.label"),
                                 elem_id="fig7-positions", interactive=False)
            gr.Markdown(I18N("fig7.positions.caption"))
        with gr.Column(min_width=320):
            distances = gr.Image(label=I18N("fig7.distances.label"), elem_id="fig7-distances", interactive=False)
            gr.Markdown(I18N("fig7.distances.caption"))

    def draw(name, path):
        """The photo's pictures (none without a photo), and the model's own (filters, position embeddings)."""
        chosen, image = page.model_of(name), page.photo(path)
        if image is None:
            return None, chosen.filter_picture, chosen.position_picture, None
        return (viz.with_colorbar(chosen.backbone_picture(image, session()), "viridis"), chosen.filter_picture,
                chosen.position_picture, chosen.distance_picture(image, session()))

    page.on_photo(draw, [page.chosen, page.image], [picture, filters, positions, distances])
    page.on_text(lambda language, chosen: walk(chosen.facts, language), [], [words])
