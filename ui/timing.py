"""Timing tab: eager attention against PyTorch's fused SDPA, live on this machine, beside the seed's A100
figures when (and only when) the loaded model is the full-size one they were measured on."""

import gradio as gr
import pandas as pd

from explorer.pictures import timing_chart
from vithybrid.timing import SEED_A100

from .i18n import I18N, language_of, text
from .page import PRIVATE, Page, session, user_error

TITLE, ELEM_ID = "tab.timing", "tab-timing"
HEADER_KEYS = ["timing.batch", "timing.eager", "timing.sdpa", "timing.speedup"]


def table(rows: list[list[object]], language: str) -> pd.DataFrame:
    """Rows under headers in `language` (Gradio does not translate a table's headers, so they are made here)."""
    return pd.DataFrame(rows, columns=[text(language, key) for key in HEADER_KEYS])


def seed_table() -> list[list[object]]:
    return [[b, eager, sdpa, f"{eager / sdpa:.2f}x"] for b, eager, sdpa in SEED_A100]


def chart_words(rows: list[list[object]], language: str) -> str:
    """The chart's text alternative: its numbers (the table's rows: batch, eager ms, SDPA ms, speed-up)."""
    bars = [text(language, "timing.chart.bar", batch=batch, eager=eager, sdpa=sdpa, speedup=speedup)
            for batch, eager, sdpa, speedup in rows]
    return text(language, "timing.chart.alt", bars=text(language, "describe.list_separator").join(bars))


def build(page: Page) -> None:
    on_gpu = page.explorer.device.type == "cuda"
    gr.Markdown(I18N("timing.help"))
    with gr.Row():
        batches = gr.CheckboxGroup([1, 2, 4, 8], value=[1, 2, 4, 8] if on_gpu else [1, 2],
                                   label=I18N("batches.label"), info=I18N("batches.info"), elem_id="batches")
        repeats = gr.Slider(1, 10, value=3, step=1, label=I18N("repeats.label"), info=I18N("repeats.info"),
                            elem_id="repeats")
    with gr.Row():
        run = gr.Button(I18N("run_timing"), variant="primary", elem_id="run-timing")
        cancel = gr.Button(I18N("cancel_timing"), elem_id="cancel-timing")
    note = gr.Markdown(elem_id="seed-note")
    with gr.Row():
        measured = gr.Dataframe(table([], "en"), label=I18N("timing.this_machine"), elem_id="timing",
                                interactive=False)
        seed = gr.Dataframe(table(seed_table(), "en"), label=I18N("timing.seed"), interactive=False, elem_id="seed",
                            visible=page.explorer.facts.full_size)
    chart = page.picture(I18N("timing.chart"), "timing-chart", caption=False)  # the table says the same
    info = gr.Markdown(elem_id="timing-info")

    def time_both(name, path, batches, repeats, request: gr.Request, progress=gr.Progress()):
        language = language_of(request)
        image = page.need(path, language)
        if not batches:
            raise user_error(text(language, "error.no_batch"))
        chosen = page.model_of(name, language=language)
        rows = []
        steps = sorted(int(b) for b in batches)
        for i, batch in enumerate(steps):
            progress(i / len(steps), desc=text(language, "timing.progress", batch=batch, repeats=repeats))
            rows.append(chosen.time_paths(image, batch, int(repeats), session()))
            shown = [[r.batch, round(r.eager_ms, 1), round(r.sdpa_ms, 1), f"{r.speedup:.2f}x"] for r in rows]
            yield table(shown, language), *chart.show(timing_chart(rows), chart_words(shown, language)), gr.update(), \
                shown
        difference = chosen.logit_difference(image, session())
        result = text(language, "timing.result", model=name, environment=chosen.environment(),
                      difference=f"{difference:.2e}")
        cpu_note = " " + text(language, "timing.cpu_note") if chosen.device.type == "cpu" else ""
        yield gr.update(), gr.update(), result + cpu_note, gr.update()

    def compare(language, chosen, rows):
        """This session's timings (kept across a language switch) and, like with like, the A100 table only
        beside the model it was measured on."""
        facts = chosen.facts
        same = facts.full_size
        note_text = text(language, "timing.same_model") if same else \
            text(language, "timing.other_model", model=chosen.name, parameters=facts.parameters_m)
        return (table(rows or [], language), gr.update(value=table(seed_table(), language), visible=same), note_text,
                *chart.describe(chart_words(rows, language) if rows else None))

    timed = gr.State(None)  # the rows of this session's last timing of the loaded model
    page.on_model(lambda name: (None, "", None), [], [chart.image, info, timed])
    page.on_text(compare, [timed], [measured, seed, note, chart.image])
    timing = run.click(time_both, [page.chosen, page.image, batches, repeats], [measured, chart.image, info, timed],
                       **PRIVATE)
    cancel.click(None, cancels=[timing], **PRIVATE)
