"""ViT-Hybrid Explorer: upload a photo, see what ViT-Hybrid predicts, where it looked, and how fast its
eager attention runs against PyTorch's fused SDPA.

    python app.py [--model google/vit-hybrid-base-bit-384 | shapes | FOLDER] [--models MODEL ...]
                  [--host 127.0.0.1] [--port 7860]
                  [--device auto|cpu|cuda] [--dtype float32|float16|bfloat16] [--int8 | --compile] [--share]
                  [--runtime onnx|openvino]
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported
# Idle OpenMP threads spin only briefly before sleeping. libgomp's default (300,000 spins) stalls every
# multi-threaded op when other work shares the CPU (a free Space, a classroom server, Gradio's own threads):
# 2.2x slower at batch 1 beside one busy process on 2 cores; PASSIVE (no spinning) costs 13% on an idle CPU.
# 10,000 spins: 3% behind the default when idle, 8% behind PASSIVE when busy (benchmarks/runtimes.py, README).
# libgomp only (PyPI's torch on Linux). libgomp lets GOMP_SPINCOUNT override OMP_WAIT_POLICY, so a policy
# (or a spin count) the environment sets is left to rule.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")  # about 0.1 ms (libgomp counts ~100,000 spins per ms)

import argparse  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import torch  # noqa: E402

import visualization as viz  # noqa: E402
from explorer import DEFAULT_MODEL, EXAMPLES_DIR, FALLBACK_MODEL, Explorer, ModelShelf  # noqa: E402
from ui import class_map, lab, layers, raw, rollout, timing, tokens, uploads, walk  # noqa: E402
from ui.i18n import CODES, I18N, LANGUAGES, LOAD_JS, RTL_CSS, SWITCH_JS, language_of, text  # noqa: E402
from ui.page import PRIVATE, Page, file_message, log, open_photo  # noqa: E402
from vithybrid import CheckpointError  # noqa: E402
from vithybrid.checkpoints.timm_format import SUPPORTED_CHECKPOINTS  # noqa: E402
from vithybrid.images import ImageError  # noqa: E402
from vithybrid.runtimes import load_exported  # noqa: E402

COLORMAPS = ["jet", "turbo", "viridis", "inferno", "magma", "plasma"]
FUSIONS = list(viz.HEAD_FUSIONS)
TABS = [rollout, class_map, lab, raw, layers, tokens, walk, timing]  # page order; raw lends tokens its layer, head
MIN_SIDE = 32  # pictures smaller than this (either side) get a warning: a few pixels stretched mean little
CSS = ("#banner, #examples-note {border-left: 4px solid #f59e0b; padding: 8px 12px;} .compact {max-width: 520px} "
       "#photo-note {border-left: 4px solid #dc2626; padding: 8px 12px;} "
       # a phone: a shorter photo box, so that the answer under it is on the first screen after an upload
       "@media (max-width: 640px) {#inp {height: 220px !important}} " + RTL_CSS)
# A file above the limit: HTTP 413; a whole request above it: 413 too, with app_kwargs=uploads.app_kwargs() (new for
# each launch) beside these options.
LAUNCH_OPTIONS = dict(css=CSS, js=LOAD_JS, i18n=I18N, max_file_size=f"{uploads.MAX_FILE_MB}mb", show_error=True)
QUEUE_SIZE = 32  # requests waiting beyond this are turned away instead of piling up


class PhotoInput(gr.Image):
    """gr.Image that hands on the uploaded file's path unopened, so that every bad file (not an image,
    truncated, a decompression bomb...) gets load_image's message instead of a generic failure. (Defined here:
    Gradio writes a type stub beside the file of every component class, and app.pyi is ignored.)"""

    is_template = True  # drawn by gr.Image's front end

    def preprocess(self, payload):
        return payload.path if payload is not None and payload.path else super().preprocess(payload)


def model_choices(startup: str, extra: Sequence[str] = ()) -> list[str]:
    """The Model dropdown: the startup model, the supported Hub checkpoints, the shipped model, then `extra`."""
    return list(dict.fromkeys([startup, *SUPPORTED_CHECKPOINTS, FALLBACK_MODEL, *extra]))


def banner(explorer: Explorer, language: str) -> str:
    if explorer.failed is None:
        return ""
    name, reason = explorer.failed
    return text(language, "banner.fallback", model=name, fallback=FALLBACK_MODEL, reason=reason)


def example_files(shapes_first: bool) -> list[Path]:
    """The example pictures; shapes first when the shapes model runs (it cannot name photos), else last."""
    files = [p for p in EXAMPLES_DIR.glob("*") if p.suffix in (".png", ".jpg")]
    return sorted(files, key=lambda p: (p.name.startswith("shape_") != shapes_first, p.name))


def build_demo(explorer: Explorer, extra_models: Sequence[str] = (), max_loaded: int = 2) -> gr.Blocks:
    """Lay out the page and wire every event. `explorer` is the startup model: the API's, and every new
    session's until it picks another in the Model dropdown (`extra_models` are offered there too). The
    models live on a shelf shared by all sessions; all rendering reads the chosen model's per-image cache.
    Static text is translated by the page (I18N keys); text made here follows the session's language.
    Each tab is a module of ui/ (see ui.page): adding one is a module and a line in TABS."""

    def classify(path: str | None) -> dict[str, float]:
        """The top-5 {label: probability} of the app's startup model."""
        return explorer.classify(page.need(path))

    def maps(path: str | None) -> dict:
        """The maps behind the pictures, as numbers, each on the token grid: rollout, the top class's relevance,
        last-layer CLS attention and the backbone's Grad-CAM for the top class; and each head's mean attention
        distance in input pixels (layers x heads)."""
        image = page.need(path)
        analysis = explorer.analysis(image)
        shown = explorer.explanation_maps(image, analysis.top[0][0])
        return {"grid": list(analysis.grid), "labels": {label: p for _, label, p in analysis.top},
                "rollout": shown["rollout"].tolist(), "class_map": shown["class map"].tolist(),
                "last_layer_cls_attention": shown["last-layer attention"].tolist(),
                "backbone_grad_cam": shown["Grad-CAM"].tolist() if "Grad-CAM" in shown else None,  # needs grad-cam
                "mean_attention_distance": explorer.attention_distances(image).tolist()}

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
            return None, gr.update(value=f"⚠ {file_message(error, language)}", visible=True)
        if min(image.size) < MIN_SIDE:
            input_hw = page.model_of(name, language=language).crop_hw
            warning = text(language, "warning.small", width=image.width, height=image.height,
                           input=f"{input_hw[0]}x{input_hw[1]}", minimum=MIN_SIDE)
            return gr.update(), gr.update(value=f"⚠ {warning}", visible=True)
        return gr.update(), gr.update(value="", visible=False)

    def show_labels(name, path):
        image = page.photo(path)
        return None if image is None else page.model_of(name).classify(image)

    def load_model(name, request: gr.Request, progress=gr.Progress(track_tqdm=True)):  # tqdm: download bars
        language = language_of(request)
        page.model_of(name, lambda: progress(0, desc=text(language, "model.loading", model=name)), language)
        return name, name  # the dropdown too: a pick made while this one loaded was dropped

    def page_texts(language, chosen):
        return (text(language, "intro", model=chosen.name), banner(explorer, language),
                gr.update(visible=chosen.name == FALLBACK_MODEL, value=text(language, "examples.shapes_only")),
                LANGUAGES[language])

    with gr.Blocks(title="ViT-Hybrid Explorer", delete_cache=uploads.DELETE_CACHE) as demo:
        with gr.Row(equal_height=True):  # side by side; on a phone the switch goes under the title
            with gr.Column(scale=4, min_width=300):
                header = gr.Markdown(text("en", "intro", model=explorer.name), elem_id="intro")
            with gr.Column(scale=1, min_width=220):
                language = gr.Radio(list(LANGUAGES.values()), value=LANGUAGES["en"], label=I18N("language.label"),
                                    info=I18N("language.info"), elem_id="language", interactive=True)
        notice = gr.Markdown(banner(explorer, "en"), visible=explorer.failed is not None, elem_id="banner")
        chosen = gr.State(explorer.name)  # this session's model, once loaded (the dropdown returns to it on failure)
        model = gr.Dropdown(model_choices(explorer.name, extra_models), value=explorer.name, label=I18N("model.label"),
                            info=I18N("model.info"), elem_id="model")
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                image = PhotoInput(type="filepath", label=I18N("photo.label"), sources=["upload", "clipboard", "webcam"],
                                   height=340, elem_id="inp")
                photo_note = gr.Markdown(visible=False, elem_id="photo-note")
            with gr.Column(scale=1, min_width=320):  # beside the photo; on a phone right below it, before the examples
                labels = gr.Label(num_top_classes=5, label=I18N("labels.label"), elem_id="labels")
                gr.Markdown(I18N("labels.note"), elem_classes="compact")
        shapes_note = gr.Markdown(text("en", "examples.shapes_only"), visible=explorer.name == FALLBACK_MODEL,
                                  elem_id="examples-note")
        gr.Examples([[str(p)] for p in example_files(explorer.name == FALLBACK_MODEL)], inputs=image,
                    label=I18N("examples.label"), examples_per_page=8)
        gr.Markdown(I18N("examples.credit"), elem_classes="compact")
        with gr.Row():
            cmap = gr.Dropdown(COLORMAPS, value="jet", label=I18N("cmap.label"), info=I18N("cmap.info"), elem_id="cmap")
            alpha = gr.Slider(0, 1, value=0.5, step=0.05, label=I18N("alpha.label"), info=I18N("alpha.info"),
                              elem_id="alpha")
            fusion = gr.Radio(FUSIONS, value="mean", label=I18N("fusion.label"), info=I18N("fusion.info"),
                              elem_id="fusion")
        gr.Markdown(I18N("legend.help"), elem_id="legend-help")
        page = Page(explorer, ModelShelf(explorer, max_loaded), chosen, image, cmap, alpha, fusion)
        page.on_text(page_texts, [], [header, notice, shapes_note, language])
        with gr.Tabs(overflow_behavior="wrap"):  # every tab on screen, on a phone too
            for tab in TABS:
                with gr.Tab(I18N(tab.TITLE), elem_id=tab.ELEM_ID) as page.tab:
                    tab.build(page)
        api_only = gr.Button(visible=False)  # the public API: one image in, the startup model's answers out

        # Texts in the session's language: on load, after a language pick (the page's own strings switch in
        # the browser first, see SWITCH_JS), and after a model switch.
        text_inputs, text_outputs, write = page.combined(
            [(lambda language, name, *values, fn=fn: fn(language, page.model_of(name, language=language), *values),
              inputs, outputs) for fn, inputs, outputs in page.texts], leading=2)

        def write_for_request(request: gr.Request, name, *values):  # Gradio passes the request by position
            return write(language_of(request), name, *values)

        def write_for_choice(choice, name, *values):
            return write(CODES.get(choice, "en"), name, *values)

        demo.load(write_for_request, [chosen, *text_inputs], text_outputs, **PRIVATE)
        language.input(write_for_choice, [language, chosen, *text_inputs], text_outputs, js=SWITCH_JS, **PRIVATE)
        # A model switch: load it (once for all sessions; the dropdown shows the progress, and on failure the
        # error and its previous model), reset what follows the model's shape, then write its texts.
        # `select`, not `input`: a pick sends `input` twice.
        loaded = model.select(load_model, model, [chosen, model], show_progress_on=model, concurrency_limit=None,
                              **PRIVATE)
        loaded.failure(lambda name: name, chosen, model, **PRIVATE)
        reset_inputs, reset_outputs, reset = page.combined(page.resets, leading=1)
        shown = loaded.success(reset, [chosen, *reset_inputs], reset_outputs, **PRIVATE).then(
            write_for_request, [chosen, *text_inputs], text_outputs, **PRIVATE)
        # A new photo or a new model: labels first (fast SDPA path), then the pictures, without holding the labels back.
        # The photo removed (its x): its note goes with it. Not in check_photo: clearing a broken picture fires
        # `change` with no photo too, and that note must stay.
        image.clear(lambda: gr.update(value="", visible=False), None, photo_note, **PRIVATE)
        for trigger in (image.change, shown.success):
            analysed = trigger(check_photo, [chosen, image], [image, photo_note], **PRIVATE).then(
                show_labels, [chosen, image], labels, show_progress="minimal", **PRIVATE)
            for fn, inputs, outputs in page.renders:
                analysed = analysed.then(fn, inputs, outputs, **PRIVATE)
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
    parser.add_argument("--runtime", choices=["onnx", "openvino"],
                        help="classify the startup model with ONNX Runtime or OpenVINO (exported once into a cache; "
                             "with --int8, an int8 export); the maps, the timing and models picked on the page stay "
                             "PyTorch's")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    try:
        explorer = Explorer(args.model, device, getattr(torch, args.dtype), args.speed)
        if args.runtime:
            explorer.runtime_model = load_exported(explorer.name, args.runtime, int8=args.speed == "int8")
    except (ValueError, CheckpointError) as error:  # a combination of options that cannot run, an export that fails
        raise SystemExit(f"app.py: {error}") from None
    if explorer.failed is not None:  # said on the page too (the banner)
        print(f"app.py: could not load {explorer.failed[0]}: {explorer.failed[1]}\n"
              f"app.py: serving the shipped '{FALLBACK_MODEL}' model instead (circles, squares, triangles, stars, "
              f"crosses).", file=sys.stderr, flush=True)
    demo = build_demo(explorer, args.models)
    demo.queue(default_concurrency_limit=1 if device == "cpu" else 2, max_size=QUEUE_SIZE)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, app_kwargs=uploads.app_kwargs(),
                **LAUNCH_OPTIONS)


if __name__ == "__main__":
    main()
