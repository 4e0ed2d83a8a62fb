"""The guided walk, tab "How hybrid tokens work": the model's path from pixels to a class, step by step,
every number read from the loaded model (explorer.ModelFacts), every sentence from the translation files, the
backbone's maps for the user's photo, and the ViT paper's Figure 7 for the loaded model: its stem's filters, the
similarity of its position embeddings, and how far each head attends at each depth on the user's photo."""

from __future__ import annotations

import math

import gradio as gr
import torch

import visualization as viz
from explorer import ModelFacts

from .describe import describe
from .i18n import I18N, session_language, text
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


# -- the pictures in words, from their numbers -----------------------------------------------------------------------
def backbone_words(language: str, facts: ModelFacts, analysis) -> str:
    """The backbone picture's steps with their sizes (as numbered in the walk), and its last panel, the tokens'
    lengths, described."""
    (height, width), (rows, cols) = facts.input_hw, facts.grid
    names = ([text(language, "walk.picture.photo"), text(language, "walk.picture.stem")] +
             [text(language, "walk.picture.stage", stage=stage) for stage in range(1, len(facts.maps))] +
             [text(language, "walk.picture.tokens")])
    sizes = [(height, width, 3)] + [(h, w, c) for c, h, w in facts.maps] + [(rows, cols, facts.hidden_size)]
    steps = [text(language, "walk.picture.step", step=step, name=name, size="x".join(map(str, size)))
             for step, (name, size) in enumerate(zip(names, sizes), 1)]
    return text(language, "walk.picture.alt", steps=text(language, "describe.list_separator").join(steps),
                sentence=describe(language, analysis.backbone[-1]))


def filter_words(language: str, chosen) -> str:
    weight = chosen.model.vit.embeddings.patch_embeddings.backbone.bit.embedder.convolution.weight
    count, size = weight.shape[0], weight.shape[-1]
    return text(language, "fig7.filters.alt", count=count, size=size, columns=math.ceil(math.sqrt(count)))


def position_words(language: str, chosen) -> str:
    """How alike neighbouring cells' position embeddings are against far cells': near ones more alike is the grid's
    layout, learned (random weights show none)."""
    rows, cols = chosen.grid
    embeddings = chosen.model.vit.embeddings.position_embeddings.detach().float().cpu()
    similarity = viz.position_embedding_similarity(embeddings, (rows, cols))
    row, col = torch.arange(rows), torch.arange(cols)
    apart = torch.maximum((row[:, None, None, None] - row[None, None, :, None]).abs(),  # cells between, either way
                          (col[None, :, None, None] - col[None, None, None, :]).abs())
    far_apart = max(2, max(rows, cols) // 2)
    if not (apart >= far_apart).any():
        return text(language, "fig7.positions.tiny", count=rows * cols)
    near, far = similarity[apart == 1].mean().item(), similarity[apart >= far_apart].mean().item()
    return (text(language, "fig7.positions.alt", near=f"{near:+.2f}", far=f"{far:+.2f}", apart=far_apart) + " " +
            text(language, "fig7.positions.learned" if near - far > LEARNED_LAYOUT else "fig7.positions.unlearned"))


LEARNED_LAYOUT = 0.1  # neighbours this much more alike than far cells (shapes: 0.27; random weights: about 0)


def distance_words(language: str, analysis) -> str:
    """Which layers' heads attend near and far, from the (layers, heads) mean attention distances."""
    distances = analysis.distances
    near, far = (divmod(int(index), distances.shape[1]) for index in (distances.argmin(), distances.argmax()))

    def pixels(value):
        return round(float(value))

    return text(language, "fig7.distances.alt", first_low=pixels(distances[0].min()),
                first_high=pixels(distances[0].max()), last=len(distances), last_low=pixels(distances[-1].min()),
                last_high=pixels(distances[-1].max()), near_layer=near[0] + 1, near_head=near[1] + 1,
                near=pixels(distances[near]), far_layer=far[0] + 1, far_head=far[1] + 1, far=pixels(distances[far]))


def build(page: Page) -> None:
    words = gr.Markdown(walk(page.explorer.facts, "en"), elem_id="how")
    backbone = page.picture(I18N("backbone.label"), "backbone")
    gr.Markdown(I18N("fig7.help"))
    with gr.Row():
        with gr.Column(min_width=260):
            filters = page.picture(I18N("fig7.filters.label"), "fig7-filters", value=page.explorer.filter_picture,
                                   alt_text=filter_words("en", page.explorer))
            gr.Markdown(I18N("fig7.filters.caption"))
        with gr.Column(min_width=320):
            positions = page.picture(I18N("fig7.positions.label"), "fig7-positions",
                                     value=page.explorer.position_picture, alt_text=position_words("en", page.explorer))
            gr.Markdown(I18N("fig7.positions.caption"))
        with gr.Column(min_width=320):
            distances = page.picture(I18N("fig7.distances.label"), "fig7-distances")
            gr.Markdown(I18N("fig7.distances.caption"))

    def draw(name, path):
        """The photo's pictures (none without a photo), and the model's own (filters, position embeddings)."""
        chosen, image, language = page.model_of(name), page.photo(path), session_language()
        model_pictures = (filters.show(chosen.filter_picture, filter_words(language, chosen)) +
                          positions.show(chosen.position_picture, position_words(language, chosen)))
        if image is None:
            return backbone.show(None, None) + model_pictures + distances.show(None, None)
        analysis = chosen.analysis(image, session())
        return (backbone.show(viz.with_colorbar(chosen.backbone_picture(image, session()), "viridis"),
                              backbone_words(language, chosen.facts, analysis)) + model_pictures +
                distances.show(chosen.distance_picture(image, session()), distance_words(language, analysis)))

    def photo_words(language, chosen, analysis):
        return [backbone_words(language, chosen.facts, analysis), distance_words(language, analysis)]

    def model_words(language, chosen):
        return filters.describe(filter_words(language, chosen)) + positions.describe(position_words(language, chosen))

    page.on_photo(draw, [page.chosen, page.image], backbone.outputs + filters.outputs + positions.outputs +
                  distances.outputs)
    page.on_text(lambda language, chosen: walk(chosen.facts, language), [], [words])
    page.on_text(model_words, [], filters.outputs + positions.outputs)
    page.describe([backbone, distances], photo_words)
