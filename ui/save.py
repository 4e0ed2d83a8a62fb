"""Save what you found: the photo's explanation as one self-contained HTML page in the session's language (the
photo, the top-5, rollout, class map, Grad-CAM, the logit lens, any hide-and-see result, the model and the
settings), pictures inlined, so that it opens offline and a student can hand it in. Built after the tabs: a tab
that has something to add lends its state through `page.findings`."""

from __future__ import annotations

import base64
import html
import io
import re
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import gradio as gr

import visualization as viz
from vithybrid.explain import CLASS_MAP, GRAD_CAM, ROLLOUT

from .describe import describe, top_sentence
from .experiments import HOW_KEYS, PICTURE_KEYS, Shown, result_text
from .header import labels_shown
from .i18n import I18N, RIGHT_TO_LEFT, language_of, text
from .lab import MAP_KEYS
from .lens import lens_chart, lens_words
from .page import PRIVATE, Page, session

SAVED = Path(tempfile.gettempdir()) / "vithybrid-saved"  # the pages made, until downloaded (kept an hour)
KEEP_S = 3600
MAP_TITLES = {ROLLOUT: "rollout.label", CLASS_MAP: "classmap.label", GRAD_CAM: "lab.cam.label"}
STYLE = ("body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#1f2937;"
         "line-height:1.5} img{max-width:100%;height:auto} figure{margin:1.5em 0} figcaption{color:#374151} "
         "table{border-collapse:collapse} td,th{border:1px solid #d1d5db;padding:2px 6px} .meta{color:#374151}")


def data_uri(picture) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def rich(words: str) -> str:
    """Our sentences' Markdown (bold, a table) as HTML, everything else escaped."""
    lines = [html.escape(line) for line in words.splitlines()]
    if lines and all(line.startswith("|") for line in lines):  # a Markdown table: header, rule, rows
        cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines if not set(line) <= set("|-")]
        rows = [f"<tr>{''.join(f'<td>{cell}</td>' for cell in row)}</tr>" for row in cells]
        return f"<table>{''.join(rows)}</table>"
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", "<br>".join(lines))


def figure(picture, title: str, words: str) -> str:
    return (f'<figure><img src="{data_uri(picture)}" alt="{html.escape(words)}"><figcaption><strong>'
            f"{html.escape(title)}</strong><br>{rich(words)}</figcaption></figure>")


def explanation_page(language: str, chosen, image, analysis, cmap: str, alpha: float, fusion: str,
                     hidden: Shown | None) -> str:
    """The whole page, from the photo's cached analysis and what the tabs found."""
    title = text(language, "save.title")
    meta = text(language, "save.meta", model=chosen.name, cmap=cmap, alpha=alpha, fusion=fusion,
                when=datetime.now().strftime("%Y-%m-%d %H:%M"))
    top = labels_shown(chosen, analysis.top, language)
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="meta">{html.escape(meta)}</p>',
             figure(analysis.crop, text(language, "save.photo"), top_sentence(language, top)),
             "<h2>" + html.escape(text(language, "labels.label")) + "</h2><ol>" +
             "".join(f"<li>{html.escape(name)}: {p:.1%}</li>" for name, p in top.items()) + "</ol>"]
    for name, key in MAP_TITLES.items():
        heatmap = analysis.maps[name] if name != ROLLOUT else analysis.rollout(fusion)
        picture = viz.with_colorbar(viz.overlay(analysis.crop, heatmap, cmap=cmap, alpha=alpha), cmap)
        parts.append(figure(picture, text(language, key), describe(language, heatmap)))
    sentence, guesses = lens_words(language, chosen, analysis)
    parts.append(figure(lens_chart(analysis.lens[:, analysis.top[0][0]].numpy()), text(language, "lens.label"),
                        sentence) + rich(guesses))
    if hidden is not None:
        parts.append(f"<h2>{html.escape(text(language, 'tab.hide'))}</h2>"
                     f"<p>{rich(result_text(language, chosen, hidden))}</p>")
        trials = [(trial, text(language, PICTURE_KEYS[trial.how])) for trial in (hidden.pixels, hidden.tokens)
                  if trial is not None]
        if hidden.comparison is not None:
            ranked = hidden.comparison.ranked
            names = dict(count=len(ranked.cells), how=text(language, HOW_KEYS[ranked.how]),
                         map=text(language, MAP_KEYS[hidden.comparison.ranking]))
            trials += [(hidden.comparison.ranked, text(language, "save.ranked", **names)),
                       (hidden.comparison.random, text(language, "save.random", **names))]
        for trial, caption in trials:
            picture = viz.overlay(trial.seen, trial.rollout, cmap=cmap, alpha=alpha)
            parts.append(figure(picture, caption, describe(language, trial.rollout)))
    direction = "rtl" if language in RIGHT_TO_LEFT else "ltr"
    return (f'<!DOCTYPE html><html lang="{language}" dir="{direction}"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")


def build(page: Page) -> None:
    """The button and the file it makes (with the Hide-and-see tab's last result where that tab lends it)."""
    with gr.Row():
        save = gr.Button(I18N("save.button"), elem_id="save")
        saved = gr.File(label=I18N("save.file.label"), elem_id="saved", interactive=False)
    hidden = page.findings.get("hide")

    def write(name, path, cmap, alpha, fusion, hidden_result=None, request: gr.Request = None):
        language = language_of(request)
        image = page.need(path, language)
        chosen = page.model_of(name, language=language)
        analysis = chosen.analysis(image, session())
        shown = hidden_result if hidden_result is not None and hidden_result.label == analysis.top[0][0] else None
        SAVED.mkdir(exist_ok=True)
        for old in SAVED.glob("*.html"):  # pages saved over an hour ago have been downloaded
            if time.time() - old.stat().st_mtime > KEEP_S:
                old.unlink(missing_ok=True)
        words = re.sub(r"[^\w-]+", "-", analysis.top[0][1].split(",")[0]).strip("-") or "photo"
        out = SAVED / f"vit-hybrid-{words}-{language}-{uuid.uuid4().hex[:8]}.html"
        out.write_text(explanation_page(language, chosen, image, analysis, cmap, alpha, fusion, shown),
                       encoding="utf-8")
        return str(out)

    inputs = [page.chosen, page.image, page.cmap, page.alpha, page.fusion] + ([hidden] if hidden is not None else [])
    save.click(write, inputs, saved, **PRIVATE)
