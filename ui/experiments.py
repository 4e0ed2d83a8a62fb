"""Hide and see tab: hide part of the photo and watch the answer change, two ways side by side on the same cells:
the pixels painted over (the CNN still sees their neighbours) and the tokens dropped (the transformer never sees
them). Cells are picked by clicking the grid or by row and column (the keyboard's way); one click runs the
experiment of hiding the cells a map ranks highest against as many random cells."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from matplotlib.figure import Figure

import visualization as viz
from explorer import experiments

from .describe import describe, percent
from .header import labels_shown
from .i18n import I18N, language_of, session_language, text
from .lab import MAP_KEYS
from .page import PRIVATE, Page, class_name, session

TITLE, ELEM_ID = "tab.hide", "tab-hide"
FILL_KEYS = {fill: f"hide.fill.{fill}" for fill in viz.FILLS}
HOW_KEYS = {how: f"hide.how.{how}" for how in experiments.HOW}
PICTURE_KEYS = {shown: f"hide.{shown}.label" for shown in ("original", *experiments.HOW)}  # the three rollouts


@dataclass
class Shown:
    """What the tab last showed for this photo, to write again in another language."""

    label: int  # the original top class
    before: float  # its probability, nothing hidden
    pixels: experiments.Trial | None = None
    tokens: experiments.Trial | None = None
    comparison: experiments.Comparison | None = None


def probability_bars(before: float, after: dict[str, float]):
    """The original top class's probability, nothing hidden and each way hidden, as bars (numbers only: the
    sentence beside it says what they are)."""
    figure = Figure(figsize=(4.2, 2.2), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    names, values = ["0", *after], [before, *after.values()]
    bars = axes.barh(range(len(values)), values, color=["#1b9e77"] + ["#7570b3"] * len(after))
    axes.set_yticks(range(len(values)), names)
    axes.set_xlim(0, 1)
    axes.invert_yaxis()
    for bar, value in zip(bars, values):
        axes.annotate(f"{value:.0%}", (value, bar.get_y() + bar.get_height() / 2), va="center", fontsize=8)
    return viz.figure_image(figure)


def result_text(language: str, chosen, shown: Shown) -> str:
    """The hidden cells' effect in a sentence or two, from the numbers."""
    name = class_name(chosen, shown.label, language)
    lines = []
    if shown.pixels is not None:
        lines.append(text(language, "hide.result", count=len(shown.pixels.cells), label=name,
                          before=percent(language, shown.before),
                          pixels=percent(language, float(shown.pixels.probabilities[shown.label])),
                          tokens=percent(language, float(shown.tokens.probabilities[shown.label]))))
    if shown.comparison is not None:
        ranked, random = shown.comparison.ranked, shown.comparison.random
        after_ranked = float(ranked.probabilities[shown.label])
        after_random = float(random.probabilities[shown.label])
        lines.append(text(language, "hide.compare", count=len(ranked.cells),
                          map=text(language, MAP_KEYS[shown.comparison.ranking]),
                          how=text(language, HOW_KEYS[ranked.how]), label=name, before=percent(language, shown.before),
                          ranked=percent(language, after_ranked), random=percent(language, after_random)) + " " +
                     text(language, "hide.verdict.map" if after_ranked < after_random else "hide.verdict.random"))
    return "\n\n".join(lines)


def build(page: Page) -> None:
    gr.Markdown(I18N("hide.help"))
    cells = gr.State([])  # the picked cells (grid tokens 1 .. rows * cols)
    shown = gr.State(None)  # Shown
    page.findings["hide"] = shown  # the saved page shows it too (ui.save)
    with gr.Row():
        with gr.Column(scale=3, min_width=300):
            picker = gr.Image(label=I18N("hide.pick.label"), elem_id="hide-pick", height=380, interactive=False)
        with gr.Column(scale=2, min_width=260):
            with gr.Row():
                row = gr.Number(1, precision=0, minimum=1, label=I18N("token.row.label"), elem_id="hide-row")
                col = gr.Number(1, precision=0, minimum=1, label=I18N("token.col.label"), elem_id="hide-col")
            with gr.Row():
                toggle = gr.Button(I18N("hide.toggle"), elem_id="hide-toggle")
                clear = gr.Button(I18N("hide.clear"), elem_id="hide-clear")
            fill = gr.Radio([(I18N(key), fill) for fill, key in FILL_KEYS.items()], value="grey",
                            label=I18N("hide.fill.label"), info=I18N("hide.fill.info"), elem_id="hide-fill")
            run = gr.Button(I18N("hide.run"), variant="primary", elem_id="hide-run")
    with gr.Row():
        ranking = gr.Dropdown([(I18N(MAP_KEYS[name]), name) for name in experiments.RANKINGS],
                              value=experiments.RANKINGS[0], label=I18N("hide.ranking.label"), elem_id="hide-ranking")
        count = gr.Slider(1, 64, value=10, step=1, label=I18N("hide.count.label"), info=I18N("hide.count.info"),
                          elem_id="hide-count")
        how = gr.Radio([(I18N(key), how) for how, key in HOW_KEYS.items()], value="tokens",
                       label=I18N("hide.how.label"), elem_id="hide-how")
        experiment = gr.Button(I18N("hide.experiment"), elem_id="hide-experiment")
    words = gr.Markdown(elem_id="hide-text")
    bars = gr.Image(label=I18N("hide.bars.label"), elem_id="hide-bars", height=220, interactive=False)
    with gr.Row():
        pictures = {}
        for key, elem in (("original", "hide-original"), ("pixels", "hide-pixels"), ("tokens", "hide-tokens")):
            with gr.Column(min_width=240):
                pictures[key] = gr.Image(label=I18N(PICTURE_KEYS[key]), elem_id=elem, height=300,
                                         interactive=False)
                pictures[key + " labels"] = gr.Label(num_top_classes=5, label=I18N("labels.label"),
                                                     elem_id=f"{elem}-labels")

    def picked(name, path, chosen_cells, cmap):
        """The crop with the grid and the picked cells shaded, its alternative text naming how many."""
        found = page.analysis(name, path)
        if found is None:
            return None
        analysis = found[2]
        drawn = viz.draw_cells(viz.draw_token_grid(analysis.crop, analysis.grid), chosen_cells, analysis.grid)
        return gr.update(value=drawn, alt_text=text(session_language(), "hide.pick.alt", count=len(chosen_cells),
                                                    cells=analysis.grid[0] * analysis.grid[1]))

    def flip(cells_now, token):
        return sorted(set(cells_now) ^ {int(token)})

    def clicked(name, path, cells_now, evt: gr.SelectData):
        x, y = evt.index
        analysis = page.model_of(name).analysis(page.need(path), session())
        return flip(cells_now, viz.token_at(x, y, (analysis.crop.height, analysis.crop.width), analysis.grid))

    def typed(name, cells_now, row, col):
        rows, cols = page.model_of(name).grid
        row, col = min(max(int(row or 1), 1), rows), min(max(int(col or 1), 1), cols)
        return flip(cells_now, viz.cell_to_token(row - 1, col - 1, (rows, cols)))

    def answer_pictures(chosen, analysis, image, result: Shown, cmap, alpha, language):
        """The original, the pixels hidden and the tokens dropped: each rollout over what the model saw, and its
        top-5 in the session's language."""
        def picture(base, heatmap):
            return gr.update(value=viz.with_colorbar(viz.overlay(base, heatmap, cmap=cmap, alpha=alpha), cmap),
                             alt_text=describe(language, heatmap))

        out = [picture(analysis.crop, analysis.rollout()), labels_shown(chosen, analysis.top, language)]
        for trial in (result.pixels, result.tokens):
            if trial is None:
                out += [None, None]
                continue
            top = trial.probabilities.topk(min(5, len(trial.probabilities)))
            out += [picture(trial.seen, trial.rollout),
                    labels_shown(chosen, [(int(i), "", float(p)) for p, i in zip(*top)], language)]
        return out

    def hidden(name, path, cells_now, fill, cmap, alpha, request: gr.Request):
        language = language_of(request)
        image = page.need(path, language)
        if not cells_now:
            raise gr.Error(text(language, "hide.none"), duration=None, print_exception=False)
        chosen = page.model_of(name, language=language)
        analysis = chosen.analysis(image, session())
        result = Shown(analysis.top[0][0], analysis.top[0][2],
                       *(experiments.hide(chosen, image, cells_now, way, fill, session()) for way in experiments.HOW))
        after = {text(language, HOW_KEYS[way]): float(getattr(result, way).probabilities[result.label])
                 for way in experiments.HOW}
        return [result_text(language, chosen, result), probability_bars(result.before, after), result,
                *answer_pictures(chosen, analysis, image, result, cmap, alpha, language)]

    def compared(name, path, ranking, count, how, fill, cmap, alpha, request: gr.Request):
        language = language_of(request)
        image = page.need(path, language)
        chosen = page.model_of(name, language=language)
        analysis = chosen.analysis(image, session())
        comparison = experiments.compare(chosen, image, ranking, int(count), how, fill, session())
        result = Shown(analysis.top[0][0], analysis.top[0][2], comparison=comparison)
        ways = {"1": comparison.ranked, "2": comparison.random}
        after = {number: float(trial.probabilities[result.label]) for number, trial in ways.items()}
        return [result_text(language, chosen, result), probability_bars(result.before, after), result,
                list(comparison.ranked.cells)]

    def rewrite(language, chosen, result):
        return gr.update() if result is None else result_text(language, chosen, result)

    answer_outputs = [pictures[k] for k in ("original", "original labels", "pixels", "pixels labels", "tokens",
                                            "tokens labels")]
    # A new photo: the last results go at once (the saved page reads `shown`), then the grid is drawn, with the tab
    # open (a result asked for once the grid shows stays).
    page.on_photo(lambda: ([], "", None, None, *[None] * len(answer_outputs)), [],
                  [cells, words, bars, shown, *answer_outputs], closed_too=True)
    page.redraw(picked, [page.chosen, page.image, cells, page.cmap], [picker])
    page.on_model(lambda name: [], [], [cells])
    page.on_text(rewrite, [shown], [words])
    inputs = [page.chosen, page.image, cells, page.cmap]
    for event in (picker.select(clicked, [page.chosen, page.image, cells], cells, **PRIVATE),
                  toggle.click(typed, [page.chosen, cells, row, col], cells, **PRIVATE),
                  clear.click(lambda: [], None, cells, **PRIVATE)):
        event.then(picked, inputs, picker, **PRIVATE)
    run.click(hidden, [page.chosen, page.image, cells, fill, page.cmap, page.alpha],
              [words, bars, shown, *answer_outputs], **PRIVATE)
    experiment.click(compared, [page.chosen, page.image, ranking, count, how, fill, page.cmap, page.alpha],
                     [words, bars, shown, cells], **PRIVATE).then(picked, inputs, picker, **PRIVATE)
