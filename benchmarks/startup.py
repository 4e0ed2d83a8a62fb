"""How long `python app.py` takes to serve, and its peak memory, with the full-size model's weights on disk.

    python benchmarks/startup.py [--model FOLDER_OR_HUB_ID] [--runs 3] [--app-args=--int8]

Without --model, a random checkpoint of google/vit-hybrid-base-bit-384's architecture (same files and
sizes: 99 M parameters, 396 MB of safetensors) is written to a temporary folder, so the figure is that
of a cached download, whatever the network. For each run, the app is started as users start it, the
clock stops at the first answer of its HTTP server; then one photo is classified and mapped through the
API, and the process's peak resident memory (VmHWM) is read after each step.
"""

from __future__ import annotations

import argparse
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "coffee.png"


def full_size_checkpoint(folder: Path) -> Path:
    from vithybrid import ViTHybridConfig, ViTHybridForImageClassification, ViTHybridImageProcessor

    model = ViTHybridForImageClassification(ViTHybridConfig(image_size=384, num_labels=1000))
    model.save_pretrained(folder)
    ViTHybridImageProcessor(size=384, crop_size=384, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc (Linux only)")


def one_run(model: str, app_args: list[str], timeout_s: float = 120.0) -> dict[str, float]:
    from gradio_client import Client, handle_file

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    start = time.perf_counter()
    # stderr to a file, not a pipe: a pipe nobody reads until the end would stall a chatty app once full
    log = tempfile.TemporaryFile(mode="w+")
    app = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--model", model, "--port", str(port), *app_args],
                           stdout=subprocess.DEVNULL, stderr=log, text=True)
    try:
        while True:
            if app.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"the app exited ({app.returncode}): {log.read()[-2000:]}")
            if time.perf_counter() - start > timeout_s:
                raise TimeoutError(f"the app did not answer within {timeout_s:.0f} s")
            try:
                with urllib.request.urlopen(url + "config", timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
        result = {"ready s": time.perf_counter() - start, "peak MB when ready": peak_rss_mb(app.pid)}
        client = Client(url, verbose=False)
        started = time.perf_counter()
        client.predict(handle_file(str(PHOTO)), api_name="/classify")
        result["first classify s"] = time.perf_counter() - started
        result["peak MB after classify"] = peak_rss_mb(app.pid)
        client.predict(handle_file(str(PHOTO)), api_name="/maps")
        result["peak MB after maps"] = peak_rss_mb(app.pid)
        return result
    finally:
        app.terminate()
        app.wait(timeout=30)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint folder or cached Hub id (default: a random full-size one)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--app-args", default="",
                        help="more arguments for app.py, e.g. --app-args=--int8 (with '=': they start with a dash)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.model is None:
            print("Writing a random full-size checkpoint...", file=sys.stderr)
        model = args.model or str(full_size_checkpoint(Path(tmp)))
        runs = []
        for run in range(args.runs):
            runs.append(one_run(model, shlex.split(args.app_args)))
            print(f"run {run + 1}/{args.runs}: " + ", ".join(f"{k} {v:.1f}" for k, v in runs[-1].items()),
                  file=sys.stderr)
    print(f"\n`python app.py --model {args.model or '<random full-size checkpoint>'} {args.app_args}`".rstrip()
          + f", median of {args.runs} runs\n")
    print("| measure | value |\n|---|---|")
    for key in runs[0]:
        print(f"| {key} | {statistics.median(r[key] for r in runs):.1f} |")


if __name__ == "__main__":
    main()
