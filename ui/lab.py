"""Explanation lab tab: for one class, the CNN half's class activation map on a BiT stage beside the transformer
half's class map, how much the two agree, and which of the app's maps is the most faithful on this photo
(deletion and insertion curves, Petsiuk et al. 2018), measured on request and cancellable.

Grad-CAM on the token stage comes with every photo's pass; other CAM methods and stages (pytorch-grad-cam, the
`explain` extra) cost a pass each, so the tab draws only in sessions that have opened it."""

from __future__ import annotations

import dataclasses
import math

import gradio as gr
import pandas as pd

import visualization as viz
from vithybrid.explain import CLASS_MAP, GRAD_CAM, LAST_LAYER, ROLLOUT

from .i18n import I18N, language_of, text
from .page import PRIVATE, Page, session

TITLE, ELEM_ID = "tab.lab", "tab-lab"
# Keys made at run time (the translation tests read these): the maps as vithybrid.explain and
# viz.faithfulness_curves name them, the agreement levels of viz.agreement_level, the verdicts of viz.VERDICTS.
MAP_KEYS = {ROLLOUT: "lab.map.rollout", CLASS_MAP: "lab.map.class", LAST_LAYER: "lab.map.raw",
            GRAD_CAM: "lab.map.gradcam", "random": "lab.map.random"}
AGREEMENT_KEYS = {level: f"lab.agreement.{level}" for level in viz.AGREEMENT_SENTENCES}
VERDICT_KEYS = {verdict: f"lab.verdict.{verdict}" for verdict in viz.VERDICTS}
HEADER_KEYS = ["lab.number", "lab.order", "lab.deletion", "lab.insertion"]
OWN_CAM = "Grad-CAM"  # on the token stage: from the photo's pass, without pytorch-grad-cam


def stage_choices(chosen) -> list[tuple[str, str]]:
    """(shown, value) per backbone stage: its name and grid ("stage2 (8x8)"), the token stage last."""
    return [(f"{name} ({height}x{width})", name) for name, (_, height, width) in zip(chosen.stage_names,
                                                                                      chosen.facts.maps)]


def needs_extra(chosen, method: str, stage: str | None) -> bool:
    """Whether this CAM needs pytorch-grad-cam and it is not installed."""
    own = method == OWN_CAM and stage in (None, chosen.stage_names[-1])
    return not own and not viz.grad_cam_available()


def areas_table(run: viz.FaithfulnessRun | None, language: str) -> pd.DataFrame:
    """One row per order: its number in the curves' legend, its name, the areas under its two curves."""
    rows = [] if run is None or not run.areas else [
        [number, text(language, MAP_KEYS[name]), round(deletion, 3), round(insertion, 3)]
        for number, (name, (deletion, insertion)) in enumerate(run.areas.items(), 1)]
    return pd.DataFrame(rows, columns=[text(language, key) for key in HEADER_KEYS])


def curves_picture(run: viz.FaithfulnessRun):
    """The curves with each order named by its number in the table: figures carry numbers, the page the words."""
    number = {name: str(i) for i, name in enumerate(run.deletion, 1)}
    numbered = dataclasses.replace(run, deletion={number[n]: c for n, c in run.deletion.items()},
                                   insertion={number[n]: c for n, c in run.insertion.items()},
                                   areas={number[n]: a for n, a in run.areas.items()})
    return viz.faithfulness_figure(numbered, titles=("", ""), labels=("k / N", "p(y)"))


def verdict_text(run: viz.FaithfulnessRun, language: str) -> str:
    key, fields = run.verdict()
    if "name" in fields:
        fields = {**{k: round(v, 2) for k, v in fields.items() if k != "name"},
                  "name": text(language, MAP_KEYS[fields["name"]])}
    return text(language, VERDICT_KEYS[key], **fields)


def build(page: Page) -> None:
    gr.Markdown(I18N("lab.help"))
    class_index = build_halves(page)
    build_faithfulness(page, class_index)


def usable(page: Page, name, path, class_index, stage):
    """(model, photo, analysis, class, stage), or None without a usable photo. The class and the stage fall back to
    the top class and the token stage when unset or the previous model's (a switch may be landing)."""
    found = page.analysis(name, path)
    if found is None:
        return None
    chosen, image, analysis = found
    if class_index is None or int(class_index) >= chosen.model.config.num_labels:
        class_index = analysis.top[0][0]
    return chosen, image, analysis, int(class_index), stage if stage in chosen.stage_names else None


def agreement_text(language, chosen, image, class_index, method, stage) -> str:
    if needs_extra(chosen, method, stage):  # an optional extra: the transformer half alone, and how to get it
        return text(language, "lab.no_grad_cam")
    correlation = chosen.agreement(image, class_index, method, stage, session())
    rows, cols = chosen.grid
    number = "—" if math.isnan(correlation) else f"{correlation:+.2f}"
    return (text(language, "lab.agreement", correlation=number, rows=rows, cols=cols) + " " +
            text(language, AGREEMENT_KEYS[viz.agreement_level(correlation)]))


def build_halves(page: Page) -> gr.Dropdown:
    """The two halves side by side for a class, method and stage, and their agreement; returns the class picker."""
    with gr.Row():
        class_index = gr.Dropdown([], label=I18N("class.label"), info=I18N("lab.class.info"), elem_id="lab-class")
        method = gr.Dropdown(list(viz.CAM_METHODS), value=OWN_CAM, label=I18N("lab.method.label"),
                             info=I18N("lab.method.info"), elem_id="lab-method")
        stages = stage_choices(page.explorer)
        stage = gr.Dropdown(stages, value=stages[-1][1], label=I18N("lab.stage.label"), info=I18N("lab.stage.info"),
                            elem_id="lab-stage")
    with gr.Row():
        cam = gr.Image(label=I18N("lab.cam.label"), elem_id="lab-cam", height=380, interactive=False)
        class_map = gr.Image(label=I18N("classmap.label"), elem_id="lab-classmap", height=380, interactive=False)
    agreement = gr.Markdown(elem_id="lab-agreement")
    opened = gr.State(False)  # whether this session has opened the tab

    def draw(opened, name, path, class_index, method, stage, cmap, alpha, request: gr.Request):
        found = usable(page, name, path, class_index, stage) if opened else None
        if found is None:
            return None, None, ""
        chosen, image, analysis, class_index, stage = found

        def picture(heatmap):
            return viz.with_colorbar(viz.overlay(analysis.crop, heatmap, cmap=cmap, alpha=alpha), cmap)

        class_picture = picture(chosen.class_map(image, class_index, session()))
        words = agreement_text(language_of(request), chosen, image, class_index, method, stage)
        if needs_extra(chosen, method, stage):
            return None, class_picture, words
        return picture(chosen.backbone_cam(image, class_index, method, stage, session())), class_picture, words

    def rewrite(language, chosen, opened, path, class_index, method, stage):
        """The agreement sentence in a newly picked language (from the cached maps)."""
        found = usable(page, chosen.name, path, class_index, stage) if opened else None
        return "" if found is None else agreement_text(language, chosen, found[1], found[3], method, found[4])

    inputs = [opened, page.chosen, page.image, class_index, method, stage, page.cmap, page.alpha]
    outputs = [cam, class_map, agreement]
    page.class_picker(class_index)
    page.redraw(draw, inputs, outputs, controls=[page.cmap, page.alpha])
    # A new model: its token stage, and no class yet (the previous model's class would have the texts, written
    # before the redraw picks the top class, compute a CAM nobody sees).
    page.on_model(lambda name: (gr.update(choices=stage_choices(page.model_of(name)),
                                          value=page.model_of(name).stage_names[-1]), None), [], [stage, class_index])
    page.on_text(rewrite, [opened, page.image, class_index, method, stage], [agreement])
    # Drawn when the session first opens the tab (a State's change: once); later visits find it drawn.
    page.tab.select(lambda: True, None, opened, **PRIVATE)
    opened.change(draw, inputs, outputs, **PRIVATE)
    for control in (class_index, method, stage):
        control.select(draw, inputs, outputs, **PRIVATE)
    return class_index


def build_faithfulness(page: Page, class_index: gr.Dropdown) -> None:
    """Which map to trust for the picked class: deletion and insertion curves, redrawn after every batch,
    cancellable."""
    gr.Markdown(I18N("lab.trust.help"))
    with gr.Row():
        run = gr.Button(I18N("lab.run"), variant="primary", elem_id="lab-run")
        cancel = gr.Button(I18N("lab.cancel"), elem_id="lab-cancel")
    status = gr.Markdown(elem_id="lab-status")
    curves = gr.Image(label=I18N("lab.curves.label"), elem_id="lab-curves", interactive=False)
    gr.Markdown(I18N("lab.curves.caption"))
    areas = gr.Dataframe(areas_table(None, "en"), label=I18N("lab.areas.label"), elem_id="lab-areas",
                         interactive=False)
    finished = gr.State(None)  # this photo's last finished run, to write its verdict and table in a new language

    def measure(name, path, class_index, request: gr.Request):
        language = language_of(request)
        page.need(path, language)  # says what is wrong without a usable photo
        chosen, image, _, class_index, _ = usable(page, name, path, class_index, None)
        for result in chosen.faithfulness(image, class_index, session=session()):
            if not result.finished:
                yield curves_picture(result), text(language, "lab.progress", done=result.done, total=result.total), \
                    gr.update(), None
        yield curves_picture(result), verdict_text(result, language), areas_table(result, language), result

    def cleared(request: gr.Request):
        return None, "", areas_table(None, language_of(request)), None

    def retranslate(language, chosen, run):
        """The finished run's verdict and table (or the empty table's headers) in a newly picked language."""
        return (gr.update() if run is None else verdict_text(run, language)), areas_table(run, language)

    def stopped(request: gr.Request):
        return text(language_of(request), "lab.cancelled")

    page.on_photo(cleared, [], [curves, status, areas, finished])  # the curves were another photo's
    page.on_text(retranslate, [finished], [status, areas])
    measuring = run.click(measure, [page.chosen, page.image, class_index], [curves, status, areas, finished],
                          show_progress="minimal", **PRIVATE)
    cancel.click(stopped, None, status, cancels=[measuring], **PRIVATE)
