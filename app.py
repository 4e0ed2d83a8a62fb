"""ViT-Hybrid Explorer: upload a photo, see what ViT-Hybrid predicts, where it looked, and how fast its
eager attention runs against PyTorch's fused SDPA.

    python app.py [--model google/vit-hybrid-base-bit-384 | shapes | FOLDER] [--models MODEL ...]
                  [--host 127.0.0.1] [--port 7860]
                  [--device auto|cpu|cuda] [--dtype float32|float16|bfloat16] [--int8 | --compile] [--share]
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported
# Idle OpenMP threads sleep instead of spinning: on a shared CPU (a free Space, a classroom server)
# spinning threads stall every multi-threaded op; measured 4.3 s -> 0.9 s per forward on a busy 2-core box.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import functools  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402

import gradio as gr  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import visualization as viz  # noqa: E402
from explorer import (DEFAULT_MODEL, EXAMPLES_DIR, FALLBACK_MODEL, Explorer, ModelShelf, seed_table,  # noqa: E402
                      timing_chart)
from vithybrid import CheckpointError  # noqa: E402
from vithybrid.images import ImageError, load_image  # noqa: E402
from vithybrid.optimize import keep_freed_memory  # noqa: E402
from vithybrid.checkpoints.timm_format import SUPPORTED_CHECKPOINTS  # noqa: E402
from ui.i18n import CODES, I18N, LANGUAGES, LOAD_JS, RTL_CSS, SWITCH_JS, language_of, text  # noqa: E402
from ui.walk import walk  # noqa: E402

COLORMAPS = ["jet", "turbo", "viridis", "inferno", "magma", "plasma"]
FUSIONS = list(viz.HEAD_FUSIONS)
TIMING_KEYS = ["timing.batch", "timing.eager", "timing.sdpa", "timing.speedup"]
MIN_SIDE = 32  # pictures smaller than this (either side) get a warning: a few pixels stretched mean little
CSS = ("#banner, #examples-note {border-left: 4px solid #f59e0b; padding: 8px 12px;} .compact {max-width: 520px} "
       "#photo-note {border-left: 4px solid #dc2626; padding: 8px 12px;} "
       + RTL_CSS)
LAUNCH_OPTIONS = dict(css=CSS, js=LOAD_JS, i18n=I18N, max_file_size="20mb",  # uploads above 20 MB: HTTP 413
                      show_error=True)
QUEUE_SIZE = 32  # requests waiting beyond this are turned away instead of piling up
log = logging.getLogger("vithybrid.app")


class PhotoInput(gr.Image):
    """gr.Image that hands on the uploaded file's path unopened, so that every bad file (not an image,
    truncated, a decompression bomb...) gets load_image's message instead of a generic failure."""

    is_template = True  # drawn by gr.Image's front end

    def preprocess(self, payload):
        return payload.path if payload is not None and payload.path else super().preprocess(payload)


@functools.lru_cache(maxsize=16)
def open_photo(path: str) -> Image.Image:
    """The decoded photo of an upload (uploads are content-addressed files: the path names the content)."""
    return load_image(path)


def model_choices(startup: str, extra: Sequence[str] = ()) -> list[str]:
    """The Model dropdown: the startup model, the supported Hub checkpoints, the shipped model, then `extra`."""
    return list(dict.fromkeys([startup, *SUPPORTED_CHECKPOINTS, FALLBACK_MODEL, *extra]))


def head_choices(heads: int) -> list[str]:
    return ["all"] + [str(h) for h in range(1, heads + 1)]


def user_error(message: str) -> gr.Error:
    """A mistake of the user's (no photo, a bad file): one line in the server log, no traceback, and a toast
    that stays until closed."""
    log.warning("user error: %s", message)
    return gr.Error(message, duration=None, print_exception=False)


def banner(explorer: Explorer, language: str) -> str:
    if explorer.failed is None:
        return ""
    name, reason = explorer.failed
    return text(language, "banner.fallback", model=name, fallback=FALLBACK_MODEL, reason=reason)


def build_demo(explorer: Explorer, extra_models: Sequence[str] = (), max_loaded: int = 2) -> gr.Blocks:
    """Lay out the page and wire every event. `explorer` is the startup model: the API's, and every new
    session's until it picks another in the Model dropdown (`extra_models` are offered there too). The
    models live on a shelf shared by all sessions; all rendering reads the chosen model's per-image cache.
    Static text is translated by the page (I18N keys); text made here follows the request's language."""
    shelf = ModelShelf(explorer, max_loaded)
    config = explorer.model.config
    layers, heads = config.num_hidden_layers, config.num_attention_heads
    on_gpu = explorer.device.type == "cuda"

    def model_of(name: str, on_load=None, language: str = "en") -> Explorer:
        """The session's chosen model (loaded again if the shelf dropped it meanwhile)."""
        try:
            return shelf.get(name, on_load)
        except CheckpointError as error:
            raise user_error(text(language, "error.model", reason=error)) from None

    def need(path: str | None, language: str = "en") -> Image.Image:
        if path is None:
            raise user_error(text(language, "error.no_photo"))
        try:
            return open_photo(path)
        except ImageError as error:
            raise user_error(text(language, "error.bad_file", reason=error) if language != "en" else str(error)) \
                from None

    def photo(path: str | None) -> Image.Image | None:
        """For pictures that simply stay empty without a photo (the photo's note says why)."""
        try:
            return None if path is None else open_photo(path)
        except ImageError:
            return None

    # Controls may still show the previous model's layer, head or token while a switch lands: clamp them.
    def layer_index(analysis, layer) -> int:
        return min(int(layer), len(analysis.attentions)) - 1

    def head_index(analysis, head) -> int | None:
        return None if head == "all" or int(head) > analysis.attentions[0].shape[1] else int(head) - 1

    def grid_token(grid, token) -> int:
        return min(int(token), grid[0] * grid[1])

    def classify(path: str | None) -> dict[str, float]:
        """The top-5 {label: probability} of the app's startup model."""
        return explorer.classify(need(path))

    def check_photo(name, path, request: gr.Request):
        """The note under the photo: a file that cannot be read (kept on the page, where the picture would be,
        and the broken picture cleared) or a picture too small to mean much; nothing for a good photo."""
        language = language_of(request)
        if path is None:
            return gr.update(), gr.update()
        try:
            image = open_photo(path)
        except ImageError as error:
            log.warning("user error: %s", error)
            message = text(language, "error.bad_file", reason=error) if language != "en" else str(error)
            return None, gr.update(value=f"⚠ {message}", visible=True)
        input_hw = model_of(name, language=language).crop_hw
        if min(image.size) < MIN_SIDE:
            warning = text(language, "warning.small", width=image.width, height=image.height,
                           input=f"{input_hw[0]}x{input_hw[1]}", minimum=MIN_SIDE)
            return gr.update(), gr.update(value=f"⚠ {warning}", visible=True)
        return gr.update(), gr.update(value="", visible=False)

    def show_labels(name, path):
        image = photo(path)
        return None if image is None else model_of(name).classify(image)

    def load_model(name, request: gr.Request, progress=gr.Progress(track_tqdm=True)):  # tqdm: download bars
        language = language_of(request)
        model_of(name, lambda: progress(0, desc=text(language, "model.loading", model=name)), language)
        return name, name  # the dropdown too: a pick made while this one loaded was dropped

    def describe(name, token, layer, head, fusion, request: gr.Request):
        """Every text on the page made from the model, in the session's language."""
        return describe_in(language_of(request), name, token, layer, head, fusion)

    def switch_language(choice, name, token, layer, head, fusion):
        """The page's switch: the texts made here, in the language picked (the page's own follow in SWITCH_JS)."""
        return describe_in(CODES.get(choice, "en"), name, token, layer, head, fusion)

    def describe_in(language, name, token, layer, head, fusion):
        chosen = model_of(name, language=language)
        facts = chosen.facts()
        timing_note = (text(language, "timing.same_model") if facts["full size"] else
                       text(language, "timing.other_model", model=name, parameters=facts["parameters"]))
        return (text(language, "intro", model=name), gr.update(value=banner(explorer, language)),
                gr.update(visible=chosen.name == FALLBACK_MODEL, value=text(language, "examples.shapes_only")),
                caption(language, name, token, layer, head, fusion), walk(facts, language),
                gr.update(visible=facts["full size"]), timing_note, LANGUAGES[language])

    def show_model(name):
        """The controls that follow the model's shape (the texts and pictures follow in the chain after it)."""
        config = model_of(name).model.config
        return (gr.update(maximum=config.num_hidden_layers, value=config.num_hidden_layers),
                gr.update(choices=head_choices(config.num_attention_heads), value="all"), 1, None, None, "")

    def class_choices(name, path):
        image = photo(path)
        if image is None:
            return gr.update(choices=[], value=None)
        top = model_of(name).analysis(image).top
        return gr.update(choices=[(f"{label} ({p:.1%})", index) for index, label, p in top], value=top[0][0])

    def rollout_picture(name, path, fusion, discard, cmap, alpha, on_original):
        image = photo(path)
        if image is None:
            return None
        analysis = model_of(name).analysis(image)
        heatmap = viz.cls_map(viz.attention_rollout(analysis.attentions, fusion, discard, rows=[0]), analysis.grid)[0]
        if on_original:
            picture = viz.overlay_on_original(image, heatmap, analysis.geometry, cmap=cmap, alpha=alpha)
        else:
            picture = viz.overlay(analysis.crop, heatmap, cmap=cmap, alpha=alpha)
        return viz.with_colorbar(picture, cmap)

    def raw_pictures(name, path, layer, head, fusion, cmap, alpha):
        image = photo(path)
        if image is None:
            return None, None
        analysis = model_of(name).analysis(image)
        index = layer_index(analysis, layer)
        one = viz.raw_attention(analysis.attentions, analysis.grid, index, 0, head_index(analysis, head), fusion)[0]
        all_heads = viz.head_stack(analysis.attentions, analysis.grid, index)[0]
        # Numbers only in figures: the labels around them say what they are, in the page's language.
        figure = viz.small_multiples(all_heads, [str(h + 1) for h in range(len(all_heads))], cmap=cmap)
        return viz.with_colorbar(viz.overlay(analysis.crop, one, cmap=cmap, alpha=alpha), cmap), figure

    def layers_picture(name, path, fusion, cmap):
        image = photo(path)
        if image is None:
            return None
        analysis = model_of(name).analysis(image)
        stack = viz.layer_stack(analysis.attentions, analysis.grid, head_fusion=fusion)[0]
        return viz.small_multiples(stack, [str(i + 1) for i in range(len(stack))], cmap=cmap)

    def class_picture(name, path, class_index, cmap, alpha):
        image = photo(path)
        if image is None or class_index is None:
            return None
        chosen = model_of(name)
        analysis = chosen.analysis(image)
        if int(class_index) >= chosen.model.config.num_labels:  # the previous model's class
            return None
        heatmap = chosen.class_map(image, int(class_index))
        return viz.with_colorbar(viz.overlay(analysis.crop, heatmap, cmap=cmap, alpha=alpha), cmap)

    def token_pictures(name, path, token, layer, head, fusion, cmap, alpha):
        image = photo(path)
        if image is None:
            return None, None
        analysis = model_of(name).analysis(image)
        token = grid_token(analysis.grid, token)
        grid_picture = viz.draw_token_grid(analysis.crop, analysis.grid, highlight=token)
        attention = viz.raw_attention(analysis.attentions, analysis.grid, layer_index(analysis, layer), token,
                                      head_index(analysis, head), fusion)[0]
        # The chosen token stays visible on its own map too: outlined in white over the colours.
        attended = viz.draw_token_grid(viz.overlay(analysis.crop, attention, cmap=cmap, alpha=alpha), analysis.grid,
                                       highlight=token, highlight_color=(255, 255, 255), opacity=0.0)
        return grid_picture, viz.with_colorbar(attended, cmap)

    def pick_token(name, path, evt: gr.SelectData):
        x, y = evt.index  # pixels of the shown picture: the crop the model saw, maybe enlarged
        analysis = model_of(name).analysis(need(path))
        return viz.token_at(x, y, (analysis.crop.height, analysis.crop.width), analysis.grid)

    def token_caption(name, token, layer, head, fusion, request: gr.Request):
        return caption(language_of(request), name, token, layer, head, fusion)

    def caption(language, name, token, layer, head, fusion):
        chosen = model_of(name, language=language)
        grid, config = chosen.grid, chosen.model.config
        token = grid_token(grid, token)
        row, col = viz.token_to_cell(token, grid)
        layer = min(int(layer), config.num_hidden_layers)
        shown_head = (text(language, "token.all_heads", fusion=fusion) if head == "all" or
                      int(head) > config.num_attention_heads else text(language, "token.one_head", head=head))
        return text(language, "token.caption", token=token, count=grid[0] * grid[1], row=row + 1, col=col + 1,
                    layer=layer, head=shown_head)

    def backbone_picture(name, path):
        image = photo(path)
        return None if image is None else viz.with_colorbar(model_of(name).backbone_picture(image), "viridis")

    def maps(path: str | None) -> dict:
        """The maps behind the pictures, as numbers: rollout, top class relevance and last-layer CLS attention."""
        image = need(path)
        analysis = explorer.analysis(image)
        rollout = viz.cls_map(viz.attention_rollout(analysis.attentions, rows=[0]), analysis.grid)[0]
        best = analysis.top[0][0]
        return {"grid": list(analysis.grid), "labels": {label: p for _, label, p in analysis.top},
                "rollout": rollout.tolist(), "class_map": explorer.class_map(image, best).tolist(),
                "last_layer_cls_attention": viz.raw_attention(analysis.attentions, analysis.grid)[0].tolist()}

    def run_timing(name, path, batches, repeats, request: gr.Request, progress=gr.Progress()):
        language = language_of(request)
        image = need(path, language)
        if not batches:
            raise user_error(text(language, "error.no_batch"))
        chosen = model_of(name, language=language)
        rows = []
        steps = sorted(int(b) for b in batches)
        progress(0, desc=text(language, "timing.warming"))
        for i, batch in enumerate(steps):
            progress(i / len(steps), desc=text(language, "timing.progress", batch=batch, repeats=repeats))
            rows.append(chosen.time_paths(image, batch, int(repeats)))
            table = [[r.batch, round(r.eager_ms, 1), round(r.sdpa_ms, 1), f"{r.speedup:.2f}x"] for r in rows]
            yield table, timing_chart(rows), gr.update()
        difference = chosen.logit_difference(image)
        result = text(language, "timing.result", model=name, environment=chosen.environment(),
                      difference=f"{difference:.2e}")
        cpu_note = " " + text(language, "timing.cpu_note") if chosen.device.type == "cpu" else ""
        yield gr.update(), gr.update(), result + cpu_note

    def headers():
        return [I18N(key) for key in TIMING_KEYS]

    with gr.Blocks(title="ViT-Hybrid Explorer") as demo:
        with gr.Row(equal_height=True):
            header = gr.Markdown(text("en", "intro", model=explorer.name), elem_id="intro")
            language = gr.Radio(list(LANGUAGES.values()), value=LANGUAGES["en"], label=I18N("language.label"),
                                info=I18N("language.info"), elem_id="language", scale=0, min_width=220,
                                interactive=True)
        notice = gr.Markdown(banner(explorer, "en"), visible=explorer.failed is not None, elem_id="banner")
        chosen = gr.State(explorer.name)  # this session's model, once loaded (the dropdown returns to it on failure)
        model = gr.Dropdown(model_choices(explorer.name, extra_models), value=explorer.name, label=I18N("model.label"),
                            info=I18N("model.info"), elem_id="model")
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                image = PhotoInput(type="filepath", label=I18N("photo.label"), sources=["upload", "clipboard", "webcam"],
                                   height=340, elem_id="inp")
                photo_note = gr.Markdown(visible=False, elem_id="photo-note")
            with gr.Column(scale=1, min_width=320):  # beside the photo; on a phone right below it
                labels = gr.Label(num_top_classes=5, label=I18N("labels.label"), elem_id="labels")
                gr.Markdown(I18N("labels.note"), elem_classes="compact")
        shapes_note = gr.Markdown(text("en", "examples.shapes_only"), visible=explorer.name == FALLBACK_MODEL,
                                  elem_id="examples-note")
        # Shapes first when the shapes model runs: it cannot name photos.
        examples = sorted((p for p in EXAMPLES_DIR.glob("*") if p.suffix in (".png", ".jpg")),
                          key=lambda p: (not p.name.startswith("shape_"), p.name) if explorer.name == FALLBACK_MODEL
                          else (p.name.startswith("shape_"), p.name))
        gr.Examples([[str(p)] for p in examples], inputs=image, label=I18N("examples.label"), examples_per_page=8)
        gr.Markdown(I18N("examples.credit"), elem_classes="compact")
        with gr.Row():
            cmap = gr.Dropdown(COLORMAPS, value="jet", label=I18N("cmap.label"), info=I18N("cmap.info"), elem_id="cmap")
            alpha = gr.Slider(0, 1, value=0.5, step=0.05, label=I18N("alpha.label"), info=I18N("alpha.info"),
                              elem_id="alpha")
            fusion = gr.Radio(FUSIONS, value="mean", label=I18N("fusion.label"), info=I18N("fusion.info"),
                              elem_id="fusion")
        gr.Markdown(I18N("legend.help"), elem_id="legend-help")
        with gr.Tabs(overflow_behavior="wrap"):  # every tab on screen, on a phone too
            with gr.Tab(I18N("tab.rollout"), elem_id="tab-rollout"):
                gr.Markdown(I18N("rollout.help"))
                with gr.Row():
                    discard = gr.Slider(0, 0.95, value=0, step=0.05, label=I18N("discard.label"),
                                        info=I18N("discard.info"), elem_id="discard")
                    on_original = gr.Checkbox(label=I18N("on_original.label"), info=I18N("on_original.info"),
                                              elem_id="on-original")
                rollout_image = gr.Image(label=I18N("rollout.label"), elem_id="rollout", height=420, interactive=False)
            with gr.Tab(I18N("tab.class"), elem_id="tab-class"):
                gr.Markdown(I18N("class.help"))
                class_index = gr.Dropdown([], label=I18N("class.label"), info=I18N("class.info"), elem_id="class-index")
                class_image = gr.Image(label=I18N("classmap.label"), elem_id="class-map", height=420,
                                       interactive=False)
            with gr.Tab(I18N("tab.raw"), elem_id="tab-raw"):
                gr.Markdown(I18N("raw.help"))
                with gr.Row():
                    layer = gr.Slider(1, layers, value=layers, step=1, label=I18N("layer.label"),
                                      info=I18N("layer.info"), elem_id="layer")
                    head = gr.Dropdown(head_choices(heads), value="all", label=I18N("head.label"),
                                       info=I18N("head.info"), elem_id="head")
                with gr.Row():
                    raw_image = gr.Image(label=I18N("raw.label"), elem_id="raw", height=360, interactive=False)
                    heads_image = gr.Image(label=I18N("heads.label"), elem_id="heads", height=360, interactive=False)
            with gr.Tab(I18N("tab.layers"), elem_id="tab-layers"):
                gr.Markdown(I18N("layers.help"))
                layers_image = gr.Image(label=I18N("layers.label"), elem_id="layers", interactive=False)
            with gr.Tab(I18N("tab.tokens"), elem_id="tab-tokens"):
                gr.Markdown(I18N("tokens.help"))
                token = gr.State(1)
                token_text = gr.Markdown(elem_id="token-text")
                with gr.Row():
                    grid_image = gr.Image(label=I18N("grid.label"), elem_id="token-grid", height=400,
                                          interactive=False)
                    token_image = gr.Image(label=I18N("token_attention.label"), elem_id="token-attention", height=400,
                                           interactive=False)
            with gr.Tab(I18N("tab.how"), elem_id="tab-how"):
                how_text = gr.Markdown(walk(explorer.facts(), "en"), elem_id="how")
                backbone_image = gr.Image(label=I18N("backbone.label"), elem_id="backbone", interactive=False)
            with gr.Tab(I18N("tab.timing"), elem_id="tab-timing"):
                gr.Markdown(I18N("timing.help"))
                with gr.Row():
                    batches = gr.CheckboxGroup([1, 2, 4, 8], value=[1, 2, 4, 8] if on_gpu else [1, 2],
                                               label=I18N("batches.label"), info=I18N("batches.info"),
                                               elem_id="batches")
                    repeats = gr.Slider(1, 10, value=3, step=1, label=I18N("repeats.label"), info=I18N("repeats.info"),
                                        elem_id="repeats")
                with gr.Row():
                    run = gr.Button(I18N("run_timing"), variant="primary", elem_id="run-timing")
                    cancel = gr.Button(I18N("cancel_timing"), elem_id="cancel-timing")
                seed_note = gr.Markdown(elem_id="seed-note")
                with gr.Row():
                    timing_table = gr.Dataframe(headers=headers(), label=I18N("timing.this_machine"),
                                                elem_id="timing", interactive=False)
                    seed = gr.Dataframe(seed_table(), headers=headers(), label=I18N("timing.seed"),
                                        interactive=False, elem_id="seed", visible=explorer.facts()["full size"])
                timing_plot = gr.Image(label=I18N("timing.chart"), elem_id="timing-chart", interactive=False)
                timing_info = gr.Markdown(elem_id="timing-info")
        api_only = gr.Button(visible=False)  # the public API: one image in, the startup model's answers out

        private = dict(api_visibility="private")
        rollout_inputs = [chosen, image, fusion, discard, cmap, alpha, on_original]
        raw_inputs = [chosen, image, layer, head, fusion, cmap, alpha]
        token_inputs = [chosen, image, token, layer, head, fusion, cmap, alpha]
        caption_inputs = [chosen, token, layer, head, fusion]
        class_inputs = [chosen, image, class_index, cmap, alpha]
        timing_outputs = [timing_table, timing_plot, timing_info]
        described = [header, notice, shapes_note, token_text, how_text, seed, seed_note, language]
        # Texts in the session's language: on load, after a language pick (the page's own strings switch in
        # the browser first, see SWITCH_JS), and after a model switch.
        demo.load(describe, caption_inputs, described, **private)
        language.input(switch_language, [language, *caption_inputs], described, js=SWITCH_JS, **private)
        # A model switch: load it (once for all sessions; the dropdown shows the progress, and on failure the
        # error and its previous model), then describe it. `select`, not `input`: a pick sends `input` twice.
        loaded = model.select(load_model, model, [chosen, model], show_progress_on=model, concurrency_limit=None,
                              **private)
        loaded.failure(lambda name: name, chosen, model, **private)
        shown = loaded.success(show_model, chosen, [layer, head, token, *timing_outputs], **private)
        shown = shown.then(describe, caption_inputs, described, **private)
        # A new photo or a new model: labels first (fast SDPA path), then the maps, without holding the labels back.
        for trigger in (image.change, shown.success):
            analysed = trigger(check_photo, [chosen, image], [image, photo_note], **private).then(
                show_labels, [chosen, image], labels, show_progress="minimal", **private).then(
                class_choices, [chosen, image], class_index, **private)
            for follow_up in [(rollout_picture, rollout_inputs, rollout_image),
                              (class_picture, class_inputs, class_image),  # even when the top class is as before
                              (raw_pictures, raw_inputs, [raw_image, heads_image]),
                              (layers_picture, [chosen, image, fusion, cmap], layers_image),
                              (token_pictures, token_inputs, [grid_image, token_image]),
                              (backbone_picture, [chosen, image], backbone_image)]:
                analysed = analysed.then(*follow_up, **private)
        for control in (fusion, discard, cmap, alpha, on_original):
            control.change(rollout_picture, rollout_inputs, rollout_image, **private)
        for control in (layer, head, fusion, cmap, alpha):
            control.change(raw_pictures, raw_inputs, [raw_image, heads_image], **private)
            control.change(token_pictures, token_inputs, [grid_image, token_image], **private)
        for control in (layer, head, fusion):
            control.change(token_caption, caption_inputs, token_text, **private)
        for control in (fusion, cmap):
            control.change(layers_picture, [chosen, image, fusion, cmap], layers_image, **private)
        class_index.select(class_picture, class_inputs, class_image, **private)  # a pick; new photos: the chain
        for control in (cmap, alpha):
            control.change(class_picture, class_inputs, class_image, **private)
        grid_image.select(pick_token, [chosen, image], token, **private).then(
            token_pictures, token_inputs, [grid_image, token_image], **private).then(
            token_caption, caption_inputs, token_text, **private)
        timing = run.click(run_timing, [chosen, image, batches, repeats], timing_outputs, **private)
        cancel.click(None, cancels=[timing], **private)
        api_only.click(classify, image, labels, api_name="classify")
        api_only.click(maps, image, gr.JSON(visible=False), api_name="maps")
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the ViT-Hybrid Explorer.")
    # A Space runs `python app.py` without arguments: its variables VITHYBRID_MODEL and VITHYBRID_SPEED
    # (none, int8 or compile) stand in for --model and --int8 / --compile.
    parser.add_argument("--model", default=os.environ.get("VITHYBRID_MODEL") or DEFAULT_MODEL,
                        help="Hub id, checkpoint folder, or 'shapes' (the shipped offline model); default "
                             f"$VITHYBRID_MODEL or {DEFAULT_MODEL}")
    parser.add_argument("--models", nargs="+", default=[], metavar="MODEL",
                        help="more Hub ids or checkpoint folders to offer in the Model dropdown")
    # Hugging Face Spaces say where to serve through Gradio's own variables.
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to serve on (0.0.0.0 for all); default %(default)s")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument("--int8", dest="speed", action="store_const", const="int8",
                       default=os.environ.get("VITHYBRID_SPEED") or "none",  # a blank Space variable too
                       help="classify with int8 linear layers (CPU; about 0.65x the time; maps stay float32)")
    speed.add_argument("--compile", dest="speed", action="store_const", const="compile",
                       help="classify with torch.compile (the first request of each batch size compiles, ~1 min)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device == "cpu":
        keep_freed_memory()  # no page faults on every forward (see vithybrid.optimize)
    try:
        explorer = Explorer(args.model, device, getattr(torch, args.dtype), args.speed)
    except ValueError as error:  # a combination of options that cannot run
        raise SystemExit(f"app.py: {error}") from None
    if explorer.failed is not None:  # said on the page too (the banner)
        print(f"app.py: could not load {explorer.failed[0]}: {explorer.failed[1]}\n"
              f"app.py: serving the shipped '{FALLBACK_MODEL}' model instead (circles, squares, triangles, stars, "
              f"crosses).", file=sys.stderr, flush=True)
    demo = build_demo(explorer, args.models)
    demo.queue(default_concurrency_limit=1 if device == "cpu" else 2, max_size=QUEUE_SIZE)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **LAUNCH_OPTIONS)


if __name__ == "__main__":
    main()
