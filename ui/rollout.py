"""Rollout tab: attention rollout from the CLS token (Abnar & Zuidema 2020), on the crop or the whole photo."""

import gradio as gr

import visualization as viz

from . import lens
from .describe import describe
from .i18n import I18N, session_language
from .page import Page

TITLE, ELEM_ID = "tab.rollout", "tab-rollout"


def words(language, chosen, analysis, fusion, discard) -> list[str]:
    return [describe(language, analysis.rollout(fusion, discard))]


def build(page: Page) -> None:
    gr.Markdown(I18N("rollout.help"))
    with gr.Row():
        discard = gr.Slider(0, 0.95, value=0, step=0.05, label=I18N("discard.label"), info=I18N("discard.info"),
                            elem_id="discard")
        on_original = gr.Checkbox(label=I18N("on_original.label"), info=I18N("on_original.info"),
                                  elem_id="on-original")
    picture = page.picture(I18N("rollout.label"), "rollout", height=420)

    def draw(name, path, fusion, discard, cmap, alpha, on_original):
        found = page.analysis(name, path)
        if found is None:
            return picture.show(None, None)
        _, image, analysis = found
        heatmap = analysis.rollout(fusion, discard)
        if on_original:
            drawn = viz.overlay_on_original(image, heatmap, analysis.geometry, cmap=cmap, alpha=alpha)
        else:
            drawn = viz.overlay(analysis.crop, heatmap, cmap=cmap, alpha=alpha)
        return picture.show(viz.with_colorbar(drawn, cmap), describe(session_language(), heatmap))

    page.redraw(draw, [page.chosen, page.image, page.fusion, discard, page.cmap, page.alpha, on_original],
                picture.outputs, controls=[page.fusion, discard, page.cmap, page.alpha, on_original])
    page.describe([picture], words, [page.fusion, discard])
    lens.build(page)  # when the model knows: the logit lens, below the rollout
