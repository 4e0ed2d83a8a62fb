"""All layers tab: the CLS token's attention in every layer, side by side on one colour scale."""

import gradio as gr

import visualization as viz

from .describe import focus_sentence
from .i18n import I18N, session_language
from .page import Page

TITLE, ELEM_ID = "tab.layers", "tab-layers"


def stack(analysis, fusion):
    return viz.layer_stack(analysis.attentions, analysis.grid, head_fusion=fusion)[0]


def words(language, chosen, analysis, fusion) -> list[str]:
    return [focus_sentence(language, stack(analysis, fusion), "layer")]


def build(page: Page) -> None:
    gr.Markdown(I18N("layers.help"))
    picture = page.picture(I18N("layers.label"), "layers")

    def draw(name, path, fusion, cmap):
        found = page.analysis(name, path)
        if found is None:
            return picture.show(None, None)
        layers = stack(found[2], fusion)
        return picture.show(viz.small_multiples(layers, [str(i + 1) for i in range(len(layers))], cmap=cmap),
                            focus_sentence(session_language(), layers, "layer"))

    page.redraw(draw, [page.chosen, page.image, page.fusion, page.cmap], picture.outputs,
                controls=[page.fusion, page.cmap])
    page.describe([picture], words, [page.fusion])
