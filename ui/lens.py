"""When does the model know? The logit lens for the photo (shown in the rollout tab): the CLS token after each
encoder layer, read as the last one is, gives a top guess and the probability of the final answer per layer; a
small chart, a row of labels and a sentence, all from the photo's analysis (its pass records the lens: no model
run of its own)."""

from __future__ import annotations

import gradio as gr
import numpy as np
from matplotlib.figure import Figure

import visualization as viz

from .describe import percent
from .i18n import I18N, session_language, text
from .page import Page, class_name


def lens_chart(final: np.ndarray):
    """The final answer's probability after each layer (numbers only: the sentence says what they are)."""
    figure = Figure(figsize=(5.2, 2.2), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    layers = np.arange(1, len(final) + 1)
    axes.plot(layers, final, marker="o", color="#1b9e77")
    axes.set_xticks(layers)
    axes.set_ylim(0, 1.02)
    axes.grid(alpha=0.3)
    return viz.figure_image(figure)


def lens_words(language: str, chosen, analysis) -> tuple[str, str]:
    """(the sentence, the row of each layer's top guess as a Markdown table) in `language`."""
    answer = analysis.top[0][0]
    final = analysis.lens[:, answer].numpy()
    guesses = analysis.lens.argmax(-1).tolist()
    settled = len(guesses) - next((i for i, g in enumerate(reversed(guesses)) if g != answer), len(guesses))
    half = next(i for i, p in enumerate(final) if p >= final[-1] / 2)
    sentence = text(language, "lens.sentence", label=class_name(chosen, answer, language), first=settled + 1,
                    half=half + 1, layers=len(final), final=percent(language, float(final[-1])))
    header = "| " + text(language, "lens.layer") + " | " + " | ".join(str(i + 1) for i in range(len(guesses))) + " |"
    row = "| " + text(language, "lens.guess") + " | " + " | ".join(
        f"{class_name(chosen, g, language).split(' (')[0]} ({percent(language, float(analysis.lens[i, g]))})"
        for i, g in enumerate(guesses)) + " |"
    return sentence, "\n".join([header, "|---" * (len(guesses) + 1) + "|", row])


def build(page: Page) -> None:
    gr.Markdown(I18N("lens.help"))
    sentence = gr.Markdown(elem_id="lens-text")
    chart = gr.Image(label=I18N("lens.label"), elem_id="lens-chart", height=230, interactive=False)
    guesses = gr.Markdown(elem_id="lens-guesses")

    def draw(name, path):
        found = page.analysis(name, path)
        if found is None:
            return "", None, ""
        chosen, _, analysis = found
        words, row = lens_words(session_language(), chosen, analysis)
        return words, gr.update(value=lens_chart(analysis.lens[:, analysis.top[0][0]].numpy()), alt_text=words), row

    def rewrite(language, chosen, path):
        image = page.photo(path)
        analysis = None if image is None else chosen.cached(image)
        if analysis is None:
            return gr.update(), gr.update(), gr.update()
        words, row = lens_words(language, chosen, analysis)
        return words, gr.update(alt_text=words), row

    page.on_photo(draw, [page.chosen, page.image], [sentence, chart, guesses])
    page.on_text(rewrite, [page.image], [sentence, chart, guesses])
