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
from vithybrid.runtimes import load_exported  # noqa: E402
from vithybrid.checkpoints.timm_format import SUPPORTED_CHECKPOINTS  # noqa: E402

COLORMAPS = ["jet", "turbo", "viridis", "inferno", "magma", "plasma"]
FUSIONS = list(viz.HEAD_FUSIONS)
TIMING_HEADERS = ["batch", "eager ms", "SDPA ms", "speed-up"]
CSS = "#banner {border-left: 4px solid #f59e0b; padding: 8px 12px;} .compact {max-width: 520px}"
LAUNCH_OPTIONS = dict(css=CSS, max_file_size="20mb", show_error=True)  # uploads above 20 MB: HTTP 413
QUEUE_SIZE = 32  # requests waiting beyond this are turned away instead of piling up


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


def intro(name: str) -> str:
    return ("# ViT-Hybrid Explorer\nDrop a photo: the model's top-5 guesses appear first, then where it looked. "
            f"Model: **{name}**.")


def how_it_works(facts: dict[str, object]) -> str:
    return (f"The BiT backbone turns the {facts['input']} crop into a {facts['feature map']} feature map "
            f"(stride {facts['backbone stride']}, {facts['backbone stages']} stages). Each cell becomes a "
            f"token: a {facts['grid']} grid, plus one CLS token, {facts['tokens']} in all, each of width "
            f"{facts['hidden size']}. {facts['layers']} transformer layers with {facts['heads']} heads read "
            f"them; the classifier reads the CLS token. {facts['parameters']} parameters.")


def head_choices(heads: int) -> list[str]:
    return ["all"] + [str(h) for h in range(1, heads + 1)]


def build_demo(explorer: Explorer, extra_models: Sequence[str] = (), max_loaded: int = 2) -> gr.Blocks:
    """Lay out the page and wire every event. `explorer` is the startup model: the API's, and every new
    session's until it picks another in the Model dropdown (`extra_models` are offered there too). The
    models live on a shelf shared by all sessions; all rendering reads the chosen model's per-image cache."""
    shelf = ModelShelf(explorer, max_loaded)
    config = explorer.model.config
    layers, heads = config.num_hidden_layers, config.num_attention_heads
    on_gpu = explorer.device.type == "cuda"

    def model_of(name: str, on_load=None) -> Explorer:
        """The session's chosen model (loaded again if the shelf dropped it meanwhile)."""
        try:
            return shelf.get(name, on_load)
        except CheckpointError as error:
            raise gr.Error(str(error)) from None

    def need(path: str | None) -> Image.Image:
        if path is None:
            raise gr.Error("Upload a photo first (or pick an example).")
        try:
            return open_photo(path)
        except ImageError as error:
            raise gr.Error(str(error)) from None

    def photo(path: str | None) -> Image.Image | None:
        """For pictures that simply stay empty without a photo (the error shows once, on classify)."""
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

    def show_labels(name, path):
        return None if path is None else model_of(name).classify(need(path))

    def load_model(name, progress=gr.Progress(track_tqdm=True)):  # tqdm: huggingface_hub's download bars
        model_of(name, lambda: progress(0, desc=f"Loading {name} (downloading on first use)..."))
        return name, name  # the dropdown too: a pick made while this one loaded was dropped

    def show_model(name):
        """Everything on the page that describes the model (the pictures follow from the chain after it)."""
        chosen = model_of(name)
        config, facts = chosen.model.config, chosen.facts()
        return (intro(name), gr.update(maximum=config.num_hidden_layers, value=config.num_hidden_layers),
                gr.update(choices=head_choices(config.num_attention_heads), value="all"), how_it_works(facts),
                facts, 1, token_caption(name, 1), None, None, "")

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
            return viz.overlay_on_original(image, heatmap, analysis.geometry, cmap=cmap, alpha=alpha)
        return viz.overlay(analysis.crop, heatmap, cmap=cmap, alpha=alpha)

    def raw_pictures(name, path, layer, head, fusion, cmap, alpha):
        image = photo(path)
        if image is None:
            return None, None
        analysis = model_of(name).analysis(image)
        index = layer_index(analysis, layer)
        one = viz.raw_attention(analysis.attentions, analysis.grid, index, 0, head_index(analysis, head), fusion)[0]
        all_heads = viz.head_stack(analysis.attentions, analysis.grid, index)[0]
        figure = viz.small_multiples(all_heads, [f"head {h + 1}" for h in range(len(all_heads))], cmap=cmap,
                                     title=f"CLS attention, layer {index + 1}, every head")
        return viz.overlay(analysis.crop, one, cmap=cmap, alpha=alpha), figure

    def layers_picture(name, path, fusion, cmap):
        image = photo(path)
        if image is None:
            return None
        analysis = model_of(name).analysis(image)
        stack = viz.layer_stack(analysis.attentions, analysis.grid, head_fusion=fusion)[0]
        return viz.small_multiples(stack, [f"layer {i + 1}" for i in range(len(stack))], cmap=cmap,
                                   title=f"CLS attention in every layer ({fusion} of heads)")

    def class_picture(name, path, class_index, cmap, alpha):
        image = photo(path)
        if image is None or class_index is None:
            return None
        chosen = model_of(name)
        analysis = chosen.analysis(image)
        if int(class_index) >= chosen.model.config.num_labels:  # the previous model's class
            return None
        return viz.overlay(analysis.crop, chosen.class_map(image, int(class_index)), cmap=cmap, alpha=alpha)

    def token_pictures(name, path, token, layer, head, fusion, cmap, alpha):
        image = photo(path)
        if image is None:
            return None, None
        analysis = model_of(name).analysis(image)
        token = grid_token(analysis.grid, token)
        grid_picture = viz.draw_token_grid(analysis.crop, analysis.grid, highlight=token)
        attention = viz.raw_attention(analysis.attentions, analysis.grid, layer_index(analysis, layer), token,
                                      head_index(analysis, head), fusion)[0]
        return grid_picture, viz.overlay(analysis.crop, attention, cmap=cmap, alpha=alpha)

    def pick_token(name, path, evt: gr.SelectData):
        x, y = evt.index  # pixels of the shown picture: the crop the model saw, maybe enlarged
        analysis = model_of(name).analysis(need(path))
        return viz.token_at(x, y, (analysis.crop.height, analysis.crop.width), analysis.grid)

    def token_caption(name, token):
        grid = model_of(name).grid
        token = grid_token(grid, token)
        row, col = viz.token_to_cell(token, grid)
        return f"Token **{token}** of {grid[0] * grid[1]}: row {row + 1}, column {col + 1}."

    def backbone_picture(name, path):
        image = photo(path)
        return None if image is None else model_of(name).backbone_picture(image)

    def maps(path: str | None) -> dict:
        """The maps behind the pictures, as numbers: rollout, top class relevance and last-layer CLS attention."""
        image = need(path)
        analysis = explorer.analysis(image)
        rollout = viz.cls_map(viz.attention_rollout(analysis.attentions, rows=[0]), analysis.grid)[0]
        best = analysis.top[0][0]
        return {"grid": list(analysis.grid), "labels": {label: p for _, label, p in analysis.top},
                "rollout": rollout.tolist(), "class_map": explorer.class_map(image, best).tolist(),
                "last_layer_cls_attention": viz.raw_attention(analysis.attentions, analysis.grid)[0].tolist()}

    def run_timing(name, path, batches, repeats, progress=gr.Progress()):
        image = need(path)
        if not batches:
            raise gr.Error("Pick at least one batch size.")
        chosen = model_of(name)
        rows = []
        steps = sorted(int(b) for b in batches)
        progress(0, desc="Warming up")
        for i, batch in enumerate(steps):
            progress(i / len(steps), desc=f"Timing batch {batch} (eager and SDPA, {repeats} runs each)")
            rows.append(chosen.time_paths(image, batch, int(repeats)))
            table = [[r.batch, round(r.eager_ms, 1), round(r.sdpa_ms, 1), f"{r.speedup:.2f}x"] for r in rows]
            yield table, timing_chart(rows), gr.update()
        difference = chosen.logit_difference(image)
        on_cpu = chosen.device.type == "cpu"
        cpu_note = (" On a CPU the two are close: without gradients, this project's eager path keeps each layer's "
                    "scores in cache, which is most of what SDPA's fused kernel gains there." if on_cpu else "")
        yield gr.update(), gr.update(), (f"{name}: {chosen.environment()}. Largest logit difference between the "
                                         f"paths: {difference:.2e}.{cpu_note}")

    with gr.Blocks(title="ViT-Hybrid Explorer") as demo:
        header = gr.Markdown(intro(explorer.name), elem_id="intro")
        gr.Markdown(explorer.notice or "", visible=explorer.notice is not None, elem_id="banner")
        chosen = gr.State(explorer.name)  # this session's model, once loaded (the dropdown returns to it on failure)
        model = gr.Dropdown(model_choices(explorer.name, extra_models), value=explorer.name, label="Model",
                            info="Hub models download on first use; switching re-analyses the photo.",
                            elem_id="model")
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                image = PhotoInput(type="filepath", label="Photo", sources=["upload", "clipboard", "webcam"],
                                   height=340, elem_id="inp")
                examples = sorted(p for p in EXAMPLES_DIR.glob("*") if p.suffix in (".png", ".jpg"))
                gr.Examples([[str(p)] for p in examples], inputs=image, label="Examples")
                gr.Markdown("Example photos: CC0 or public domain (scikit-image's sample data; see "
                            "examples/SOURCES.md). Shapes: drawn by `vithybrid.training.shapes`.", elem_classes="compact")
            with gr.Column(scale=1, min_width=320):
                labels = gr.Label(num_top_classes=5, label="Top-5", elem_id="labels")
        with gr.Row():
            cmap = gr.Dropdown(COLORMAPS, value="jet", label="Colormap", elem_id="cmap")
            alpha = gr.Slider(0, 1, value=0.5, step=0.05, label="Opacity", elem_id="alpha")
            fusion = gr.Radio(FUSIONS, value="mean", label="Head fusion", elem_id="fusion")
        with gr.Tabs():
            with gr.Tab("Rollout", elem_id="tab-rollout"):
                with gr.Row():
                    discard = gr.Slider(0, 0.95, value=0, step=0.05, label="Discard ratio (weakest links)",
                                        elem_id="discard")
                    on_original = gr.Checkbox(label="Draw on the whole photo (crop outlined)", elem_id="on-original")
                rollout_image = gr.Image(label="Attention rollout (Abnar & Zuidema 2020)", elem_id="rollout",
                                         height=420, interactive=False)
            with gr.Tab("Class map", elem_id="tab-class"):
                class_index = gr.Dropdown([], label="Class", elem_id="class-index")
                class_image = gr.Image(label="Class-specific relevance (Chefer et al. 2021)", elem_id="class-map",
                                       height=420, interactive=False)
            with gr.Tab("Raw attention", elem_id="tab-raw"):
                with gr.Row():
                    layer = gr.Slider(1, layers, value=layers, step=1, label="Layer", elem_id="layer")
                    head = gr.Dropdown(head_choices(heads), value="all", label="Head (all: fused)", elem_id="head")
                with gr.Row():
                    raw_image = gr.Image(label="CLS attention", elem_id="raw", height=360, interactive=False)
                    heads_image = gr.Image(label="Every head", elem_id="heads", height=360, interactive=False)
            with gr.Tab("All layers", elem_id="tab-layers"):
                layers_image = gr.Image(label="CLS attention per layer", elem_id="layers", interactive=False)
            with gr.Tab("Token explorer", elem_id="tab-tokens"):
                gr.Markdown("Click a token on the left; the right shows what it attends to (layer and head from "
                            "the Raw attention tab).")
                token = gr.State(1)
                with gr.Row():
                    grid_image = gr.Image(label="Tokens (click one)", elem_id="token-grid", height=400,
                                          interactive=False)
                    token_image = gr.Image(label="Its attention", elem_id="token-attention", height=400,
                                           interactive=False)
                token_text = gr.Markdown(token_caption(explorer.name, 1), elem_id="token-text")
            with gr.Tab("How hybrid tokens work", elem_id="tab-how"):
                facts = explorer.facts()
                how_text = gr.Markdown(how_it_works(facts), elem_id="how")
                facts_json = gr.JSON(facts, label="This model", elem_id="facts")
                backbone_image = gr.Image(label="From pixels to tokens", elem_id="backbone", interactive=False)
            with gr.Tab("Eager vs SDPA timing", elem_id="tab-timing"):
                with gr.Row():
                    batches = gr.CheckboxGroup([1, 2, 4, 8], value=[1, 2, 4, 8] if on_gpu else [1, 2],
                                               label="Batch sizes", elem_id="batches")
                    repeats = gr.Slider(1, 10, value=3, step=1, label="Timed runs per path", elem_id="repeats")
                with gr.Row():
                    run = gr.Button("Time both paths", variant="primary", elem_id="run-timing")
                    cancel = gr.Button("Cancel", elem_id="cancel-timing")
                with gr.Row():
                    timing_table = gr.Dataframe(headers=TIMING_HEADERS, label="This machine", elem_id="timing",
                                                interactive=False)
                    gr.Dataframe(seed_table(), headers=["batch", "eager ms", "SDPA ms", "speed-up"],
                                 label="The seed's A100 (float32, PyTorch 2.3)", interactive=False)
                timing_plot = gr.Image(label="Milliseconds per forward", elem_id="timing-chart", interactive=False)
                timing_info = gr.Markdown(elem_id="timing-info")
        api_only = gr.Button(visible=False)  # the public API: one image in, the startup model's answers out

        private = dict(api_visibility="private")
        rollout_inputs = [chosen, image, fusion, discard, cmap, alpha, on_original]
        raw_inputs = [chosen, image, layer, head, fusion, cmap, alpha]
        token_inputs = [chosen, image, token, layer, head, fusion, cmap, alpha]
        class_inputs = [chosen, image, class_index, cmap, alpha]
        timing_outputs = [timing_table, timing_plot, timing_info]
        # A model switch: load it (once for all sessions; the dropdown shows the progress, and on failure the
        # error and its previous model), then describe it. `select`, not `input`: a pick sends `input` twice.
        loaded = model.select(load_model, model, [chosen, model], show_progress_on=model, concurrency_limit=None,
                              **private)
        loaded.failure(lambda name: name, chosen, model, **private)
        shown = loaded.success(show_model, chosen, [header, layer, head, how_text, facts_json, token, token_text,
                                                    *timing_outputs], **private)
        # A new photo or a new model: labels first (fast SDPA path), then the maps, without holding the labels back.
        for trigger in (image.change, shown.success):
            analysed = trigger(show_labels, [chosen, image], labels, show_progress="minimal", **private).then(
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
        for control in (fusion, cmap):
            control.change(layers_picture, [chosen, image, fusion, cmap], layers_image, **private)
        class_index.select(class_picture, class_inputs, class_image, **private)  # a pick; new photos: the chain
        for control in (cmap, alpha):
            control.change(class_picture, class_inputs, class_image, **private)
        grid_image.select(pick_token, [chosen, image], token, **private).then(
            token_pictures, token_inputs, [grid_image, token_image], **private).then(
            token_caption, [chosen, token], token_text, **private)
        timing = run.click(run_timing, [chosen, image, batches, repeats], timing_outputs, **private)
        cancel.click(None, cancels=[timing], **private)
        api_only.click(classify, image, labels, api_name="classify")
        api_only.click(maps, image, gr.JSON(visible=False, label="Maps"), api_name="maps")
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
                        help="classify with ONNX Runtime or OpenVINO (exported once into a cache; with --int8, an "
                             "int8 export); the maps and the timing stay PyTorch's")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device == "cpu":
        keep_freed_memory()  # no page faults on every forward (see vithybrid.optimize)
    try:
        explorer = Explorer(args.model, device, getattr(torch, args.dtype), args.speed)
        if args.runtime:
            explorer.runtime_model = load_exported(explorer.name, args.runtime, int8=args.speed == "int8")
    except (ValueError, CheckpointError) as error:  # a combination of options that cannot run, an export that fails
        raise SystemExit(f"app.py: {error}") from None
    demo = build_demo(explorer, args.models)
    demo.queue(default_concurrency_limit=1 if device == "cpu" else 2, max_size=QUEUE_SIZE)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **LAUNCH_OPTIONS)


if __name__ == "__main__":
    main()
