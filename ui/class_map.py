"""Class map tab: class-specific relevance (Chefer et al. 2021) for any of the top-5 classes."""

import gradio as gr

import visualization as viz

from .describe import describe
from .i18n import I18N, session_language
from .page import PRIVATE, Page, session

TITLE, ELEM_ID = "tab.class", "tab-class"


def words(language, chosen, analysis, class_index) -> list[str | None]:
    """The class's map in words, once computed (None before: a pick of another class is drawn with its words)."""
    heatmap = None if class_index is None else analysis.class_map(int(class_index))
    return [None if heatmap is None else describe(language, heatmap)]


def build(page: Page) -> None:
    gr.Markdown(I18N("class.help"))
    class_index = gr.Dropdown([], label=I18N("class.label"), info=I18N("class.info"), elem_id="class-index")
    picture = page.picture(I18N("classmap.label"), "class-map", height=420)

    def draw(name, path, class_index, cmap, alpha):
        found = page.analysis(name, path)
        if found is None or class_index is None:
            return picture.show(None, None)
        chosen, image, analysis = found
        if int(class_index) >= chosen.model.config.num_labels:  # the previous model's class
            return picture.show(None, None)
        heatmap = chosen.class_map(image, int(class_index), session())
        return picture.show(viz.with_colorbar(viz.overlay(analysis.crop, heatmap, cmap=cmap, alpha=alpha), cmap),
                            describe(session_language(), heatmap))

    inputs = [page.chosen, page.image, class_index, page.cmap, page.alpha]
    page.class_picker(class_index)
    page.redraw(draw, inputs, picture.outputs, controls=[page.cmap, page.alpha])  # even when the top class is as before
    class_index.select(draw, inputs, picture.outputs, **PRIVATE)  # a pick; new photos: the chain
    page.describe([picture], words, [class_index])
