"""Rollout tab: attention rollout from the CLS token (Abnar & Zuidema 2020), on the crop or the whole photo."""

import gradio as gr

import visualization as viz

from . import lens
from .i18n import I18N
from .page import Page

TITLE, ELEM_ID = "tab.rollout", "tab-rollout"


def build(page: Page) -> None:
    gr.Markdown(I18N("rollout.help"))
    with gr.Row():
        discard = gr.Slider(0, 0.95, value=0, step=0.05, label=I18N("discard.label"), info=I18N("discard.info"),
                            elem_id="discard")
        on_original = gr.Checkbox(label=I18N("on_original.label"), info=I18N("on_original.info"),
                                  elem_id="on-original")
    picture = gr.Image(label=I18N("rollout.label"), elem_id="rollout", height=420, interactive=False)

    def draw(name, path, fusion, discard, cmap, alpha, on_original):
        found = page.analysis(name, path)
        if found is None:
            return None
        _, image, analysis = found
        heatmap = analysis.rollout(fusion, discard)
        if on_original:
            drawn = viz.overlay_on_original(image, heatmap, analysis.geometry, cmap=cmap, alpha=alpha)
        else:
            drawn = viz.overlay(analysis.crop, heatmap, cmap=cmap, alpha=alpha)
        return viz.with_colorbar(drawn, cmap)

    page.redraw(draw, [page.chosen, page.image, page.fusion, discard, page.cmap, page.alpha, on_original], [picture],
                controls=[page.fusion, discard, page.cmap, page.alpha, on_original])
    lens.build(page)  # when the model knows: the logit lens, below the rollout
