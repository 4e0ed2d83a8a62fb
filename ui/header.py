"""The top of the page, shared by every tab: the title and the language switch, the Model dropdown, the photo and
its labels, the examples, and the shared controls (colormap, opacity, head fusion). `build` lays them out and
returns the Page the tabs build on; `wire` connects the page's own events once the tabs have registered their
hooks: texts in the session's language, the model switch, and a new photo's chain (labels first, then every
tab's pictures)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

import visualization as viz
from explorer import FALLBACK_MODEL, Explorer, ModelShelf
from vithybrid.checkpoints.timm_format import SUPPORTED_CHECKPOINTS
from vithybrid.images import ImageError

from .describe import example_labels, top_sentence
from .i18n import CODES, I18N, LANGUAGES, SWITCH_JS, language_of, text
from .page import PRIVATE, Page, class_name, file_message, log, open_photo, session

COLORMAPS = [viz.DEFAULT_CMAP, "cividis", "inferno", "magma", "plasma", "turbo", "jet"]  # perceptually uniform first
MIN_SIDE = 32  # pictures smaller than this (either side) get a warning: a few pixels stretched mean little


@dataclass
class Header:
    """The header's components that its events write."""

    intro: gr.Markdown
    language: gr.Radio
    notice: gr.Markdown
    model: gr.Dropdown
    photo_note: gr.Markdown
    labels: gr.Label
    labels_text: gr.Markdown  # the top-5 in one sentence: the chart's text alternative, shown
    shapes_note: gr.Markdown


def model_choices(startup: str, extra: Sequence[str] = ()) -> list[str]:
    """The Model dropdown: the startup model, the supported Hub checkpoints, the shipped model, then `extra`."""
    return list(dict.fromkeys([startup, *SUPPORTED_CHECKPOINTS, FALLBACK_MODEL, *extra]))


def banner(explorer: Explorer, language: str) -> str:
    if explorer.failed is None:
        return ""
    name, reason = explorer.failed
    return text(language, "banner.fallback", model=name, fallback=FALLBACK_MODEL, reason=reason)


def example_files(folder: Path, shapes_first: bool) -> list[Path]:
    """The example pictures; shapes first when the shapes model runs (it cannot name photos), else last."""
    files = [p for p in folder.glob("*") if p.suffix in (".png", ".jpg")]
    return sorted(files, key=lambda p: (p.name.startswith("shape_") != shapes_first, p.name))


def labels_shown(chosen: Explorer, top: list[tuple[int, str, float]], language: str) -> dict[str, float]:
    """The top-5 for gr.Label, named in the session's language."""
    return {class_name(chosen, index, language): p for index, _, p in top}


def labels_and_words(chosen: Explorer, top: list[tuple[int, str, float]], language: str) -> tuple[dict, str]:
    """The top-5 for gr.Label and the same in one sentence, shown under it: the chart's text alternative."""
    shown = labels_shown(chosen, top, language)
    return shown, top_sentence(language, shown)


def build(explorer: Explorer, shelf: ModelShelf, photo_input: type[gr.Image], examples: Path,
          extra_models: Sequence[str] = ()) -> tuple[Page, Header]:
    """Lay out the header (`photo_input`: the photo's component class) and return the page the tabs build on."""
    with gr.Row(equal_height=True):  # side by side; on a phone the switch goes under the title
        with gr.Column(scale=4, min_width=300):
            intro = gr.Markdown(text("en", "intro", model=explorer.name), elem_id="intro")
        with gr.Column(scale=1, min_width=220):
            language = gr.Radio(list(LANGUAGES.values()), value=LANGUAGES["en"], label=I18N("language.label"),
                                info=I18N("language.info"), elem_id="language", interactive=True)
    notice = gr.Markdown(banner(explorer, "en"), visible=explorer.failed is not None, elem_id="banner")
    chosen = gr.State(explorer.name)  # this session's model, once loaded (the dropdown returns to it on failure)
    model = gr.Dropdown(model_choices(explorer.name, extra_models), value=explorer.name, label=I18N("model.label"),
                        info=I18N("model.info"), elem_id="model")
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            image = photo_input(type="filepath", label=I18N("photo.label"), sources=["upload", "clipboard", "webcam"],
                                height=340, elem_id="inp")
            photo_note = gr.Markdown(visible=False, elem_id="photo-note")
        with gr.Column(scale=1, min_width=320):  # beside the photo; on a phone right below it, before the examples
            labels = gr.Label(num_top_classes=5, label=I18N("labels.label"), elem_id="labels")
            labels_text = gr.Markdown(elem_id="labels-text")
            gr.Markdown(I18N("labels.note"), elem_classes="compact")
    shapes_note = gr.Markdown(text("en", "examples.shapes_only"), visible=explorer.name == FALLBACK_MODEL,
                              elem_id="examples-note")
    files = example_files(examples, explorer.name == FALLBACK_MODEL)
    shown_examples = gr.Examples([[str(p)] for p in files], inputs=image, label=I18N("examples.label"),
                                 examples_per_page=8, example_labels=example_labels("en", files))
    gr.Markdown(I18N("examples.credit"), elem_classes="compact")
    with gr.Row():
        cmap = gr.Dropdown(COLORMAPS, value=viz.DEFAULT_CMAP, label=I18N("cmap.label"), info=I18N("cmap.info"),
                           elem_id="cmap")
        alpha = gr.Slider(0, 1, value=0.5, step=0.05, label=I18N("alpha.label"), info=I18N("alpha.info"),
                          elem_id="alpha")
        fusion = gr.Radio(list(viz.HEAD_FUSIONS), value="mean", label=I18N("fusion.label"), info=I18N("fusion.info"),
                          elem_id="fusion")
    gr.Markdown(I18N("legend.help"), elem_id="legend-help")
    page = Page(explorer, shelf, chosen, image, cmap, alpha, fusion)
    page.on_text(lambda language, chosen: gr.update(sample_labels=example_labels(language, files)), [],
                 [shown_examples.dataset])  # the examples' names in the session's language
    return page, Header(intro, language, notice, model, photo_note, labels, labels_text, shapes_note)


def wire(demo: gr.Blocks, page: Page, header: Header) -> None:
    """The page's own events; call after every tab has registered its hooks."""
    explorer = page.explorer

    def page_texts(language, chosen):
        return (text(language, "intro", model=chosen.name), banner(explorer, language),
                gr.update(visible=chosen.name == FALLBACK_MODEL, value=text(language, "examples.shapes_only")),
                LANGUAGES[language])

    def labels_text(language, chosen, path):
        """The top-5 of a cached photo in a newly picked language (nothing runs)."""
        image = page.photo(path)
        analysis = None if image is None else chosen.cached(image)
        return (gr.update(), gr.update()) if analysis is None else labels_and_words(chosen, analysis.top, language)

    page.on_text(page_texts, [], [header.intro, header.notice, header.shapes_note, header.language])
    page.on_text(labels_text, [page.image], [header.labels, header.labels_text])
    # Texts in the session's language: on load, after a language pick (the page's own strings switch in the
    # browser first, see SWITCH_JS), and after a model switch.
    text_inputs, text_outputs, write = page.combined(
        [(lambda language, name, *values, fn=fn: fn(language, page.model_of(name, language=language), *values),
          inputs, outputs) for fn, inputs, outputs in page.texts], leading=2)

    def write_for_request(request: gr.Request, name, *values):  # Gradio passes the request by position
        return write(language_of(request), name, *values)

    def write_for_choice(choice, name, *values):
        return write(CODES.get(choice, "en"), name, *values)

    demo.load(write_for_request, [page.chosen, *text_inputs], text_outputs, **PRIVATE)
    header.language.input(write_for_choice, [header.language, page.chosen, *text_inputs], text_outputs,
                          js=SWITCH_JS, **PRIVATE)

    # A model switch: load it (once for all sessions; the dropdown shows the progress, and on failure the error and
    # its previous model), reset what follows the model's shape, then write its texts. `select`, not `input`: a
    # pick sends `input` twice.
    def load_model(name, request: gr.Request, progress=gr.Progress(track_tqdm=True)):  # tqdm: download bars
        language = language_of(request)
        page.model_of(name, lambda: progress(0, desc=text(language, "model.loading", model=name)), language)
        return name, name  # the dropdown too: a pick made while this one loaded was dropped

    loaded = header.model.select(load_model, header.model, [page.chosen, header.model], show_progress_on=header.model,
                                 **PRIVATE)
    loaded.failure(lambda name: name, page.chosen, header.model, **PRIVATE)
    reset_inputs, reset_outputs, reset = page.combined(page.resets, leading=1)
    shown = loaded.success(reset, [page.chosen, *reset_inputs], reset_outputs, **PRIVATE).then(
        write_for_request, [page.chosen, *text_inputs], text_outputs, **PRIVATE)

    def check_photo(name, path, request: gr.Request):
        """The note under the photo: a file that cannot be read (kept on the page, where the picture would be, and
        the broken picture cleared) or a picture too small to mean much; nothing for a good photo."""
        language = language_of(request)
        if path is None:
            return gr.update(), gr.update()
        try:
            image = open_photo(path)
        except ImageError as error:
            log.warning("user error: %s", error)
            return None, gr.update(value=f"⚠ {file_message(error, language)}", visible=True)
        if min(image.size) < MIN_SIDE:
            input_hw = page.model_of(name, language=language).crop_hw
            warning = text(language, "warning.small", width=image.width, height=image.height,
                           input=f"{input_hw[0]}x{input_hw[1]}", minimum=MIN_SIDE)
            return gr.update(), gr.update(value=f"⚠ {warning}", visible=True)
        return gr.update(), gr.update(value="", visible=False)

    def show_labels(name, path, request: gr.Request):
        image = page.photo(path)
        if image is None:
            return None, ""
        chosen = page.model_of(name)
        return labels_and_words(chosen, chosen.labels(image, session()), language_of(request))

    # A new photo or a new model: the labels as soon as a forward has them, then the open tab's pictures from the
    # photo's analysis. The photo removed (its x): its note goes with it. Not in check_photo: clearing a broken
    # picture fires `change` with no photo too, and that note must stay.
    page.image.clear(lambda: gr.update(value="", visible=False), None, header.photo_note, **PRIVATE)
    check = (check_photo, [page.chosen, page.image], [page.image, header.photo_note])
    labels = (show_labels, [page.chosen, page.image], [header.labels, header.labels_text])
    for trigger, once in ((page.image.change, True), (shown.success, False)):  # a model picked again: all drawn again
        page.draw_after(trigger(*page.new_photo(check, labels, once), show_progress="minimal",
                                show_progress_on=labels[2], trigger_mode="always_last", **PRIVATE))

    def left(request: gr.Request):
        """A closed tab: its waiting model work is dropped (explorer.work), freeing its place for everyone else."""
        explorer.queue.forget_session(request.session_hash)

    demo.unload(left)
