"""Raw attention tab: the CLS token's attention in one layer and head, and every head of that layer."""

import gradio as gr

import visualization as viz

from .describe import describe, focus_sentence
from .i18n import I18N, session_language
from .page import Page, head_index, layer_and_head, layer_index

TITLE, ELEM_ID = "tab.raw", "tab-raw"


def maps(analysis, layer, head, fusion):
    """The CLS token's attention in the layer and head (or heads fused), and each head's of that layer."""
    index = layer_index(analysis, layer)
    shown = viz.raw_attention(analysis.attentions, analysis.grid, index, 0, head_index(analysis, head), fusion)[0]
    return shown, viz.head_stack(analysis.attentions, analysis.grid, index)[0]


def words(language, chosen, analysis, layer, head, fusion) -> list[str]:
    shown, heads = maps(analysis, layer, head, fusion)
    return [describe(language, shown), focus_sentence(language, heads, "head")]


def build(page: Page) -> None:
    gr.Markdown(I18N("raw.help"))
    layer, head = layer_and_head(page)
    with gr.Row():
        with gr.Column():
            one = page.picture(I18N("raw.label"), "raw", height=360)
        with gr.Column():
            every = page.picture(I18N("heads.label"), "heads", height=360)

    def draw(name, path, layer, head, fusion, cmap, alpha):
        found = page.analysis(name, path)
        if found is None:
            return one.show(None, None) + every.show(None, None)
        analysis = found[2]
        shown, heads = maps(analysis, layer, head, fusion)
        # Numbers only in figures: the labels around them say what they are, in the page's language.
        figure = viz.small_multiples(heads, [str(h + 1) for h in range(len(heads))], cmap=cmap)
        language = session_language()
        return (one.show(viz.with_colorbar(viz.overlay(analysis.crop, shown, cmap=cmap, alpha=alpha), cmap),
                         describe(language, shown)) +
                every.show(figure, focus_sentence(language, heads, "head")))

    page.redraw(draw, [page.chosen, page.image, layer, head, page.fusion, page.cmap, page.alpha],
                one.outputs + every.outputs, controls=[layer, head, page.fusion, page.cmap, page.alpha])
    page.describe([one, every], words, [layer, head, page.fusion])
