"""Class map tab: class-specific relevance (Chefer et al. 2021) for any of the top-5 classes."""

import gradio as gr

import visualization as viz

from .i18n import I18N
from .page import PRIVATE, Page, session

TITLE, ELEM_ID = "tab.class", "tab-class"


def build(page: Page) -> None:
    gr.Markdown(I18N("class.help"))
    class_index = gr.Dropdown([], label=I18N("class.label"), info=I18N("class.info"), elem_id="class-index")
    picture = gr.Image(label=I18N("classmap.label"), elem_id="class-map", height=420, interactive=False)

    def draw(name, path, class_index, cmap, alpha):
        found = page.analysis(name, path)
        if found is None or class_index is None:
            return None
        chosen, image, analysis = found
        if int(class_index) >= chosen.model.config.num_labels:  # the previous model's class
            return None
        heatmap = chosen.class_map(image, int(class_index), session())
        return viz.with_colorbar(viz.overlay(analysis.crop, heatmap, cmap=cmap, alpha=alpha), cmap)

    inputs = [page.chosen, page.image, class_index, page.cmap, page.alpha]
    page.class_picker(class_index)
    page.redraw(draw, inputs, [picture], controls=[page.cmap, page.alpha])  # even when the top class is as before
    class_index.select(draw, inputs, picture, **PRIVATE)  # a pick; new photos: the chain
