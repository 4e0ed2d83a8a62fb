"""ViT-Hybrid Explorer: upload a photo, see what ViT-Hybrid predicts, where it looked, and how fast its
eager attention runs against PyTorch's fused SDPA.

    python app.py [--model google/vit-hybrid-base-bit-384 | shapes | FOLDER] [--models MODEL ...]
                  [--host 127.0.0.1] [--port 7860]
                  [--device auto|cpu|cuda] [--dtype float32|float16|bfloat16] [--int8 | --compile] [--share]
                  [--runtime onnx|openvino] [--cache-mb MB] [--ray [ADDRESS] [--replicas N]]
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported
# Idle OpenMP threads spin only briefly before sleeping: libgomp's default spinning stalls every multi-threaded
# op when other work shares the CPU (a Space, a classroom server, Gradio's own threads), and never spinning costs
# on an idle CPU; the README's OpenMP table has the measurements. libgomp lets GOMP_SPINCOUNT override
# OMP_WAIT_POLICY, so a policy (or a spin count) the environment sets is left to rule.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")  # about 0.1 ms

import argparse  # noqa: E402
import atexit  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import torch  # noqa: E402

from explorer import DEFAULT_MODEL, FALLBACK_MODEL, Explorer, ModelShelf, WorkQueue  # noqa: E402
from ui import (api, class_map, experiments, header, lab, layers, raw, rollout, save, timing, tokens,  # noqa: E402
                uploads, walk)
from ui.i18n import I18N, LOAD_JS, RTL_CSS  # noqa: E402
from ui.theme import CSS as A11Y_CSS, THEME  # noqa: E402
from vithybrid import CheckpointError  # noqa: E402
from vithybrid.optimize import keep_freed_memory  # noqa: E402
from vithybrid.runtimes import load_exported  # noqa: E402

LOCAL_RAY = "local"  # --ray without an address
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
TABS = [rollout, class_map, lab, experiments, raw, layers, tokens, walk, timing]  # page order; any order builds
CSS = ("#banner, #examples-note {border-left: 4px solid #f59e0b; padding: 8px 12px;} .compact {max-width: 520px} "
       "#photo-note {border-left: 4px solid #dc2626; padding: 8px 12px;} "
       # a phone: a shorter photo box, so that the answer under it is on the first screen after an upload
       "@media (max-width: 640px) {#inp {height: 220px !important}} " + RTL_CSS)
# Every event may wait for the model at once: the work queue (explorer.work) orders the model's runs, so Gradio's
# own queue admits every event (no concurrency limit) and only bounds how many wait; a class of 30 keeps about
# two events each waiting, so threads must not be the limit either.
QUEUE_OPTIONS = dict(default_concurrency_limit=None, max_size=256)
# On Linux, Gradio's queue looks for a new event every 1 ms while none waits, and for progress to send every 10 ms:
# about 4% of a core on this project's 2-core machine with nobody connected (2% at these settings), taken from the
# model's forwards (about 2.5% slower in one of two interleaved runs in process: OpenMP's other thread waits for the
# one that was preempted). Gradio has no option for it; these are its queue's attributes (a test checks they still
# exist), never made shorter (Gradio on Windows polls every 50 ms and 100 ms). An event, each of a chain, starts at
# most 10 ms after it joins; progress bars are sent at most every 50 ms.
QUEUE_POLL_S = dict(sleep_when_free=0.01, progress_update_sleep_when_free=0.05)
# A file above the limit: HTTP 413; a whole request above it too (uploads.app_kwargs, new for each launch: see serve).
LAUNCH_OPTIONS = dict(css=CSS + A11Y_CSS, theme=THEME, js=LOAD_JS, i18n=I18N, max_file_size=f"{uploads.MAX_FILE_MB}mb",
                      show_error=True, max_threads=128)


class PhotoInput(gr.Image):
    """gr.Image that hands on the uploaded file's path unopened, so that every bad file (not an image,
    truncated, a decompression bomb...) gets load_image's message instead of a generic failure. (Defined here:
    Gradio writes a type stub beside the file of every component class, and app.pyi is ignored.)"""

    is_template = True  # drawn by gr.Image's front end

    def preprocess(self, payload):
        return payload.path if payload is not None and payload.path else super().preprocess(payload)


def build_demo(explorer: Explorer, extra_models: Sequence[str] = (), max_loaded: int = 2) -> gr.Blocks:
    """The page: the header (ui.header), one tab per module of TABS, the public API (ui.api). `explorer` is the
    startup model: the API's, and every new session's until it picks another in the Model dropdown (`extra_models`
    are offered there too); the models live on a shelf shared by all sessions (at most `max_loaded`)."""
    with gr.Blocks(title="ViT-Hybrid Explorer", delete_cache=uploads.DELETE_CACHE) as demo:
        page, top = header.build(explorer, ModelShelf(explorer, max_loaded), PhotoInput, EXAMPLES_DIR, extra_models)
        tabs = []
        with gr.Tabs(overflow_behavior="wrap"):  # every tab on screen, on a phone too
            for tab in TABS:
                with gr.Tab(I18N(tab.TITLE), elem_id=tab.ELEM_ID) as page.tab:
                    tab.build(page)
                tabs.append(page.tab)
        page.tab = None
        save.build(page)
        header.wire(demo, page, top)
        page.wire_redraws(tabs)
        api.add_endpoints(page)
    demo.on_upload = page.prefetch  # serve() hands it every upload (ui.uploads.UploadHook)
    return demo


def serve(demo: gr.Blocks, queue_options: dict | None = None, **launch_options):
    """Queue and launch the page as `python app.py` does (tests and benchmarks serve it this way too)."""
    demo.queue(**(queue_options or QUEUE_OPTIONS))
    for name, seconds in QUEUE_POLL_S.items():
        if hasattr(demo._queue, name):  # another Gradio may poll otherwise: then it is left as it is
            setattr(demo._queue, name, max(getattr(demo._queue, name), seconds))
    return demo.launch(app_kwargs=uploads.app_kwargs(getattr(demo, "on_upload", None)),
                       **{**LAUNCH_OPTIONS, **launch_options})


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
    parser.add_argument("--cache-mb", type=float, default=None,
                        help="memory for cached analyses, in MB; default $VITHYBRID_CACHE_MB or a quarter of the "
                             "machine's memory (about 100 MB per photo for the full-size model)")
    parser.add_argument("--passes-mb", type=float, default=None,
                        help="memory for the graphs held between a pass's forward (the labels) and its backward (the "
                             "maps), in MB; default $VITHYBRID_PASSES_MB or an eighth of the machine's memory (about "
                             "200 MB per photo for the full-size model)")
    parser.add_argument("--runtime", choices=["onnx", "openvino"],
                        help="classify the startup model with ONNX Runtime or OpenVINO (exported once into a cache; "
                             "with --int8, an int8 export); the maps, the timing and models picked on the page stay "
                             "PyTorch's")
    parser.add_argument("--ray", nargs="?", const=LOCAL_RAY, metavar="ADDRESS",
                        help="send the startup model's labels and maps to Ray Serve replicas: alone, on a local Ray "
                             "started here; with ADDRESS (HEAD:6379, ray://HEAD:10001 or auto), on that cluster")
    parser.add_argument("--replicas", type=int, default=1, help="with --ray: model replicas; default %(default)s")
    args = parser.parse_args(argv)
    if args.replicas < 1:
        parser.exit(2, f"app.py: --replicas must be at least 1, got {args.replicas}\n")
    return args


def serve_on_ray(explorer: Explorer, address: str, replicas: int) -> None:
    """Send the startup model's labels and whole passes to `replicas` replicas on Ray Serve (explorer.ray_serve) at
    `address` (LOCAL_RAY: a Ray started here), its queue feeding them all at once. Where Ray is missing or cannot
    be reached, say so in one line and leave the explorer serving in-process."""
    try:
        from explorer.ray_serve import serve_model

        remote = serve_model(explorer.name, replicas, explorer.dtype, None if address == LOCAL_RAY else address)
    except ImportError as error:
        reason = f"--ray needs Ray Serve (pip install -e '.[ray]'): {error}"
    except Exception as error:  # noqa: BLE001 - whatever Ray raises, the page still serves, in-process
        said = str(error).strip().splitlines()  # Ray's messages run to many lines: their first says what happened
        reason = f"could not reach Ray at {address}: {said[0] if said else type(error).__name__}"
    else:
        # one worker per replica, and one for the model work that stays in this process
        explorer.remote, explorer.queue = remote, WorkQueue(workers=replicas + 1)
        atexit.register(remote.close)
        return
    print(f"app.py: {reason}; serving in-process", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    keep_freed_memory()  # a server: keep the activations' memory for the next request (vithybrid.optimize)
    try:
        explorer = Explorer(args.model, device, getattr(torch, args.dtype), args.speed, args.cache_mb,
                            passes_mb=args.passes_mb)
        if args.runtime:
            explorer.runtime_model = load_exported(explorer.name, args.runtime, int8=args.speed == "int8")
    except (ValueError, CheckpointError) as error:  # a combination of options that cannot run, an export that fails
        raise SystemExit(f"app.py: {error}") from None
    if explorer.failed is not None:  # said on the page too (the banner)
        print(f"app.py: could not load {explorer.failed[0]}: {explorer.failed[1]}\n"
              f"app.py: serving the shipped '{FALLBACK_MODEL}' model instead (circles, squares, triangles, stars, "
              f"crosses).", file=sys.stderr, flush=True)
    if args.ray is not None:
        serve_on_ray(explorer, args.ray, args.replicas)
    explorer.warm_up()
    demo = build_demo(explorer, args.models)
    serve(demo, server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
