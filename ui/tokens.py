"""Token explorer tab: pick a token (click it, or type or step its row and column); see what it attends to in the
layer and head, named in the caption, the token outlined on both pictures. The caption and the
pictures' alternative texts say in words where the token looks."""

import functools

import gradio as gr

import visualization as viz

from .describe import describe
from .i18n import I18N, session_language, text
from .page import PRIVATE, Page, head_index, layer_and_head, layer_index, session

TITLE, ELEM_ID = "tab.tokens", "tab-tokens"


def grid_token(grid, token) -> int:
    return min(int(token), grid[0] * grid[1])


def attention_map(analysis, token, layer, head, fusion):
    """What grid token `token` attends to, as a (rows, cols) map."""
    return viz.raw_attention(analysis.attentions, analysis.grid, layer_index(analysis, layer),
                             grid_token(analysis.grid, token), head_index(analysis, head), fusion)[0]


def token_words(language, chosen, token, layer, head, fusion) -> str:
    grid, config = chosen.grid, chosen.model.config
    token = grid_token(grid, token)
    row, col = viz.token_to_cell(token, grid)
    layer = min(int(layer), config.num_hidden_layers)
    shown_head = (text(language, "token.all_heads", fusion=fusion) if head == "all" or
                  int(head) > config.num_attention_heads else text(language, "token.one_head", head=head))
    return text(language, "token.caption", token=token, count=grid[0] * grid[1], row=row + 1, col=col + 1,
                layer=layer, head=shown_head)


def caption(language, chosen, path, token, layer, head, fusion, analysed_only: bool = False):
    """The caption (the token, and where it looks once there is a photo) and the two pictures' alternative texts;
    with `analysed_only`, where the photo's analysis is not done yet (the tab not drawn for it), all three are left
    to the drawing (a language switch runs no model)."""
    words = token_words(language, chosen, token, layer, head, fusion)
    image = Page.photo(path)
    if image is None:
        return words, gr.update(), gr.update()
    analysis = chosen.cached(image) if analysed_only else chosen.analysis(image, session())
    if analysis is None:
        return gr.update(), gr.update(), gr.update()
    looks = describe(language, attention_map(analysis, token, layer, head, fusion))
    return f"{words} {looks}", gr.update(alt_text=words.replace("**", "")), gr.update(alt_text=looks)


def clamp(value, cells: int) -> int:
    """A typed row or column (from 1), kept on the grid; an emptied box counts as 1."""
    return min(max(int(value or 1), 1), cells)


def build(page: Page) -> None:
    gr.Markdown(I18N("tokens.help"))
    layer, head = layer_and_head(page, "token-")
    token = gr.State(1)
    with gr.Row():  # the keyboard's way to pick a token: a row and a column, typed or stepped with the arrow keys
        row = gr.Number(1, precision=0, minimum=1, label=I18N("token.row.label"), info=I18N("token.row.info"),
                        elem_id="token-row")
        col = gr.Number(1, precision=0, minimum=1, label=I18N("token.col.label"), info=I18N("token.col.info"),
                        elem_id="token-col")
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
        # The chosen token stays visible on its own map too: outlined in white over the colours.
        attended = viz.draw_token_grid(viz.overlay(analysis.crop, attention_map(analysis, token, layer, head, fusion),
                                                   cmap=cmap, alpha=alpha), analysis.grid,
                                       highlight=token, highlight_color=(255, 255, 255), opacity=0.0)
        return grid_picture, viz.with_colorbar(attended, cmap)

    def pick(name, path, evt: gr.SelectData):
        x, y = evt.index  # pixels of the shown picture: the crop the model saw, maybe enlarged
        analysis = page.model_of(name).analysis(page.need(path), session())
        return viz.token_at(x, y, (analysis.crop.height, analysis.crop.width), analysis.grid)

    def typed(name, row, col):
        rows, cols = page.model_of(name).grid
        return viz.cell_to_token(clamp(row, rows) - 1, clamp(col, cols) - 1, (rows, cols))

    def cell(name, token):  # the row and column boxes follow the token however it was picked
        grid = page.model_of(name).grid
        row, col = viz.token_to_cell(grid_token(grid, token), grid)
        return row + 1, col + 1

    def show(name, path, token, layer, head, fusion, cmap, alpha):
        """The caption and both pictures, with their alternative texts."""
        language = session_language()
        sentence, *alternatives = caption(language, page.model_of(name, language=language), path, token, layer, head,
                                          fusion)
        pictures = draw(name, path, token, layer, head, fusion, cmap, alpha)
        if pictures[0] is None:
            return sentence, None, None
        return sentence, *({**alternative, "value": picture} for alternative, picture in zip(alternatives, pictures))

    inputs = [page.chosen, page.image, token, layer, head, page.fusion, page.cmap, page.alpha]
    captioned = [words, grid_image, attention_image]
    page.redraw(show, inputs, captioned, controls=[layer, head, page.fusion, page.cmap, page.alpha])
    page.on_model(lambda name: (1, 1, 1), [], [token, row, col])
    page.on_text(functools.partial(caption, analysed_only=True), inputs[1:6], captioned)
    # A click on the grid and a typed row and column pick a token the same way.
    picked = [grid_image.select(pick, [page.chosen, page.image], token, **PRIVATE)]
    picked += [box.input(typed, [page.chosen, row, col], token, trigger_mode="always_last", **PRIVATE)
               for box in (row, col)]
    for event in picked:
        event.then(cell, [page.chosen, token], [row, col], **PRIVATE).then(show, inputs, captioned, **PRIVATE)
