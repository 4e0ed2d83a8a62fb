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

from .describe import describe
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


def curves_words(run: viz.FaithfulnessRun, language: str) -> str:
    """The curves' text alternative: how far the measuring is, or each order's areas and the verdict."""
    if not run.finished:
        return text(language, "lab.curves.measuring", done=run.done, total=run.total)
    orders = [text(language, "lab.curves.order", number=number, name=text(language, MAP_KEYS[name]),
                   deletion=round(deletion, 3), insertion=round(insertion, 3))
              for number, (name, (deletion, insertion)) in enumerate(run.areas.items(), 1)]
    return (text(language, "lab.curves.alt", orders=text(language, "describe.list_separator").join(orders)) + " " +
            verdict_text(run, language).replace("**", ""))


def build(page: Page) -> None:
    gr.Markdown(I18N("lab.help"))
    class_index = build_halves(page)
    build_faithfulness(page, class_index)


def usable(page: Page, name, path, class_index, stage):
    """(model, photo, analysis, class, stage), or None without a usable photo (see resolved)."""
    found = page.analysis(name, path)
    if found is None:
        return None
    chosen, image, analysis = found
    return chosen, image, analysis, *resolved(chosen, analysis, class_index, stage)


def resolved(chosen, analysis, class_index, stage) -> tuple[int, str | None]:
    """The class and the stage to show: the top class and the token stage (None) when unset or the previous model's
    (a switch may be landing)."""
    if class_index is None or int(class_index) >= chosen.model.config.num_labels:
        class_index = analysis.top[0][0]
    return int(class_index), stage if stage in chosen.stage_names else None


def words(language, chosen, analysis, opened, class_index, method, stage) -> list[str | None]:
    """The two halves' maps in words, from those computed (None for one not computed: it is drawn with its words)."""
    if not opened:
        return [None, None]
    class_index, stage = resolved(chosen, analysis, class_index, stage)
    cam = analysis.cams.get((class_index, method, stage or chosen.stage_names[-1]))
    class_map = analysis.class_map(class_index)
    return [None if heatmap is None else describe(language, heatmap) for heatmap in (cam, class_map)]


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
        with gr.Column():
            cam = page.picture(I18N("lab.cam.label"), "lab-cam", height=380)
        with gr.Column():
            class_map = page.picture(I18N("classmap.label"), "lab-classmap", height=380)
    agreement = gr.Markdown(elem_id="lab-agreement")
    # whether this session has opened the tab: no words in a new language before (it is drawn, as every tab, when
    # open: ui.page.TabMarks)
    opened = gr.State(False)

    def draw(name, path, class_index, method, stage, cmap, alpha, request: gr.Request):
        found = usable(page, name, path, class_index, stage)
        if found is None:
            return cam.show(None, None) + class_map.show(None, None) + [""]
        chosen, image, analysis, class_index, stage = found
        language = language_of(request)

        def picture(shown, heatmap):
            return shown.show(viz.with_colorbar(viz.overlay(analysis.crop, heatmap, cmap=cmap, alpha=alpha), cmap),
                              describe(language, heatmap))

        class_picture = picture(class_map, chosen.class_map(image, class_index, session()))
        agreed = [agreement_text(language, chosen, image, class_index, method, stage)]
        if needs_extra(chosen, method, stage):
            return cam.show(None, None) + class_picture + agreed
        return picture(cam, chosen.backbone_cam(image, class_index, method, stage, session())) + class_picture + agreed

    def rewrite(language, chosen, opened, path, class_index, method, stage):
        """The agreement sentence in a newly picked language, from the maps computed: where the tab has not been drawn
        for this photo yet (closed since it came), the sentence is left to that drawing; nothing runs the model."""
        image = page.photo(path) if opened else None
        analysis = None if image is None else chosen.cached(image)
        if analysis is None:
            return "" if image is None else gr.update()
        class_index, stage = resolved(chosen, analysis, class_index, stage)
        drawn = (analysis.class_map(class_index) is not None
                 and (class_index, method, stage or chosen.stage_names[-1]) in analysis.cams)
        if not (drawn or needs_extra(chosen, method, stage)):
            return gr.update()
        return agreement_text(language, chosen, image, class_index, method, stage)

    inputs = [page.chosen, page.image, class_index, method, stage, page.cmap, page.alpha]
    outputs = cam.outputs + class_map.outputs + [agreement]
    page.class_picker(class_index)
    page.redraw(draw, inputs, outputs, controls=[page.cmap, page.alpha])
    # A new model: its token stage, and no class yet (the previous model's class would have the texts, written
    # before the redraw picks the top class, compute a CAM nobody sees).
    page.on_model(lambda name: (gr.update(choices=stage_choices(page.model_of(name)),
                                          value=page.model_of(name).stage_names[-1]), None), [], [stage, class_index])
    page.on_text(rewrite, [opened, page.image, class_index, method, stage], [agreement])
    page.describe([cam, class_map], words, [opened, class_index, method, stage])
    page.tab.select(lambda: True, None, opened, show_progress="hidden", **PRIVATE)
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
    curves = page.picture(I18N("lab.curves.label"), "lab-curves", caption=False)  # the status is its caption
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
                yield (*curves.show(curves_picture(result), curves_words(result, language)),
                       text(language, "lab.progress", done=result.done, total=result.total), gr.update(), None)
        yield (*curves.show(curves_picture(result), curves_words(result, language)), verdict_text(result, language),
               areas_table(result, language), result)

    def cleared(request: gr.Request):
        return None, "", areas_table(None, language_of(request)), None

    def retranslate(language, chosen, run):
        """The finished run's verdict, table (or the empty table's headers) and curves' words in a newly picked
        language."""
        if run is None:
            return gr.update(), areas_table(None, language), gr.update()
        return verdict_text(run, language), areas_table(run, language), *curves.describe(curves_words(run, language))

    def stopped(request: gr.Request):
        return text(language_of(request), "lab.cancelled")

    page.on_photo(cleared, [], [curves.image, status, areas, finished])  # the curves were another photo's
    page.on_text(retranslate, [finished], [status, areas, curves.image])
    measuring = run.click(measure, [page.chosen, page.image, class_index], [curves.image, status, areas, finished],
                          show_progress="minimal", **PRIVATE)
    cancel.click(stopped, None, status, cancels=[measuring], **PRIVATE)
