"""Raw attention tab: the CLS token's attention in one layer and head, and every head of that layer. Its
layer and head controls are lent to the token explorer (page.shared)."""

import gradio as gr

import visualization as viz

from .i18n import I18N
from .page import PRIVATE, Page, head_choices, head_index, layer_index

TITLE, ELEM_ID = "tab.raw", "tab-raw"


def build(page: Page) -> None:
    config = page.explorer.model.config
    gr.Markdown(I18N("raw.help"))
    with gr.Row():
        layer = gr.Slider(1, config.num_hidden_layers, value=config.num_hidden_layers, step=1,
                          label=I18N("layer.label"), info=I18N("layer.info"), elem_id="layer")
        head = gr.Dropdown(head_choices(config.num_attention_heads), value="all", label=I18N("head.label"),
                           info=I18N("head.info"), elem_id="head")
    with gr.Row():
        one = gr.Image(label=I18N("raw.label"), elem_id="raw", height=360, interactive=False)
        every = gr.Image(label=I18N("heads.label"), elem_id="heads", height=360, interactive=False)
    page.shared.update(layer=layer, head=head)

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

    def reset(name):
        config = page.model_of(name).model.config
        return (gr.update(maximum=config.num_hidden_layers, value=config.num_hidden_layers),
                gr.update(choices=head_choices(config.num_attention_heads), value="all"))

    inputs = [page.chosen, page.image, layer, head, page.fusion, page.cmap, page.alpha]
    page.on_photo(draw, inputs, [one, every])
    page.on_model(reset, [], [layer, head])
    for control in (layer, head, page.fusion, page.cmap, page.alpha):
        control.change(draw, inputs, [one, every], **PRIVATE)
