"""All layers tab: the CLS token's attention in every layer, side by side on one colour scale."""

import gradio as gr

import visualization as viz

from .i18n import I18N
from .page import Page

TITLE, ELEM_ID = "tab.layers", "tab-layers"


def build(page: Page) -> None:
    gr.Markdown(I18N("layers.help"))
    picture = gr.Image(label=I18N("layers.label"), elem_id="layers", interactive=False)

    def draw(name, path, fusion, cmap):
        found = page.analysis(name, path)
        if found is None:
            return None
        analysis = found[2]
        stack = viz.layer_stack(analysis.attentions, analysis.grid, head_fusion=fusion)[0]
        return viz.small_multiples(stack, [str(i + 1) for i in range(len(stack))], cmap=cmap)

    page.redraw(draw, [page.chosen, page.image, page.fusion, page.cmap], [picture], controls=[page.fusion, page.cmap])
