"""Raw attention tab: the CLS token's attention in one layer and head, and every head of that layer."""

import gradio as gr

import visualization as viz

from .i18n import I18N
from .page import Page, head_index, layer_and_head, layer_index

TITLE, ELEM_ID = "tab.raw", "tab-raw"


def build(page: Page) -> None:
    gr.Markdown(I18N("raw.help"))
    layer, head = layer_and_head(page)
    with gr.Row():
        one = gr.Image(label=I18N("raw.label"), elem_id="raw", height=360, interactive=False)
        every = gr.Image(label=I18N("heads.label"), elem_id="heads", height=360, interactive=False)

    def draw(name, path, layer, head, fusion, cmap, alpha):
        found = page.analysis(name, path)
        if found is None:
            return None, None
        analysis = found[2]
        index = layer_index(analysis, layer)
        shown = viz.raw_attention(analysis.attentions, analysis.grid, index, 0, head_index(analysis, head), fusion)[0]
        heads = viz.head_stack(analysis.attentions, analysis.grid, index)[0]
        # Numbers only in figures: the labels around them say what they are, in the page's language.
        figure = viz.small_multiples(heads, [str(h + 1) for h in range(len(heads))], cmap=cmap)
        return viz.with_colorbar(viz.overlay(analysis.crop, shown, cmap=cmap, alpha=alpha), cmap), figure

    page.redraw(draw, [page.chosen, page.image, layer, head, page.fusion, page.cmap, page.alpha], [one, every],
                controls=[layer, head, page.fusion, page.cmap, page.alpha])
