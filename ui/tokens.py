"""Token explorer tab: click a token; see what it attends to in a layer and head, named in the caption, the token
outlined on both pictures."""

import gradio as gr

import visualization as viz

from .i18n import I18N, language_of, text
from .page import PRIVATE, Page, head_index, layer_and_head, layer_index, session

TITLE, ELEM_ID = "tab.tokens", "tab-tokens"


def grid_token(grid, token) -> int:
    return min(int(token), grid[0] * grid[1])


def caption(language, chosen, token, layer, head, fusion) -> str:
    grid, config = chosen.grid, chosen.model.config
    token = grid_token(grid, token)
    row, col = viz.token_to_cell(token, grid)
    layer = min(int(layer), config.num_hidden_layers)
    shown_head = (text(language, "token.all_heads", fusion=fusion) if head == "all" or
                  int(head) > config.num_attention_heads else text(language, "token.one_head", head=head))
    return text(language, "token.caption", token=token, count=grid[0] * grid[1], row=row + 1, col=col + 1,
                layer=layer, head=shown_head)


def build(page: Page) -> None:
    gr.Markdown(I18N("tokens.help"))
    layer, head = layer_and_head(page, "token-")
    token = gr.State(1)
    words = gr.Markdown(elem_id="token-text")
    with gr.Row():
        grid_image = gr.Image(label=I18N("grid.label"), elem_id="token-grid", height=400, interactive=False)
        attention_image = gr.Image(label=I18N("token_attention.label"), elem_id="token-attention", height=400,
                                   interactive=False)

    def draw(name, path, token, layer, head, fusion, cmap, alpha):
        found = page.analysis(name, path)
        if found is None:
            return None, None
        analysis = found[2]
        token = grid_token(analysis.grid, token)
        grid_picture = viz.draw_token_grid(analysis.crop, analysis.grid, highlight=token)
        attention = viz.raw_attention(analysis.attentions, analysis.grid, layer_index(analysis, layer), token,
                                      head_index(analysis, head), fusion)[0]
        # The chosen token stays visible on its own map too: outlined in white over the colours.
        attended = viz.draw_token_grid(viz.overlay(analysis.crop, attention, cmap=cmap, alpha=alpha), analysis.grid,
                                       highlight=token, highlight_color=(255, 255, 255), opacity=0.0)
        return grid_picture, viz.with_colorbar(attended, cmap)

    def pick(name, path, evt: gr.SelectData):
        x, y = evt.index  # pixels of the shown picture: the crop the model saw, maybe enlarged
        analysis = page.model_of(name).analysis(page.need(path), session())
        return viz.token_at(x, y, (analysis.crop.height, analysis.crop.width), analysis.grid)

    def write(name, token, layer, head, fusion, request: gr.Request):
        language = language_of(request)
        return caption(language, page.model_of(name, language=language), token, layer, head, fusion)

    inputs = [page.chosen, page.image, token, layer, head, page.fusion, page.cmap, page.alpha]
    caption_inputs = [page.chosen, token, layer, head, page.fusion]
    page.redraw(draw, inputs, [grid_image, attention_image], controls=[layer, head, page.fusion, page.cmap, page.alpha])
    page.on_model(lambda name: 1, [], [token])
    page.on_text(caption, caption_inputs[1:], [words])
    for control in (layer, head, page.fusion):
        control.change(write, caption_inputs, words, **PRIVATE)
    grid_image.select(pick, [page.chosen, page.image], token, **PRIVATE).then(
        draw, inputs, [grid_image, attention_image], **PRIVATE).then(write, caption_inputs, words, **PRIVATE)
