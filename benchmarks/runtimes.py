"""ViT-Hybrid on the CPU beside the runtimes CPU users pick, in one interleaved run: ours (PyTorch) float32 and
int8 with three OpenMP settings (PASSIVE, a short spin of GOMP_SPINCOUNT=10000 as app.py sets, libgomp's
default), timm, ONNX Runtime float32 and int8
(MatMul-only dynamic quantization), OpenVINO float32 and int8 (nncf weight compression), at batch 1 and 4,
with the machine's float32 GEMM ceiling measured in the same run and each variant's fraction of it, and
each variant's logits against ours.

    python benchmarks/runtimes.py [--config base|tiny] [--batches 1,4] [--rounds 5] [--threads 2]
                                  [--no-timm] [--variants A,B] [--busy N] [--out-dir docs] [--out-json FILE]

All variants share one random checkpoint of google/vit-hybrid-base-bit-384's architecture (timm: its own
vit_base_r50_s16_384 with its own random weights, so no fidelity column). OpenMP reads its settings once,
at start, so the variants live in worker processes (one per setting, one for the runtimes, one for timm in the
test oracle's environment, where timm is installed) and this process calls them in turn: each round calls
every variant once per batch size, so drift in the machine's speed hits all alike. Medians of the rounds
after one warm-up; the GEMM ceiling is the median of one float32 matmul per round (4096^3 for base). Writes
runtimes.md (table, machine, load, versions, command) and runtimes.png to --out-dir.

--busy N keeps N other processes spinning on the CPU while the rounds run: a machine shared with other work,
where OpenMP's wait policy matters (its threads spin between parallel regions unless PASSIVE).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONFIGS = {  # our config; timm's model (None: not measured at this size); the GEMM's side
    "base": (dict(image_size=384, num_labels=1000), "vit_base_r50_s16_384", 4096),
    "tiny": (dict(image_size=64, num_labels=10, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=128, backbone_featmap_shape=[1, 128, 4, 4],
                  backbone_config=dict(depths=[1, 1, 1], hidden_sizes=[32, 64, 128], embedding_size=16,
                                       num_groups=4, out_features=["stage3"])), None, 512),
}
# variant -> worker process it lives in
VARIANTS = {
    "ours sdpa (OMP passive)": "torch passive", "ours int8 (OMP passive)": "torch passive",
    "ours sdpa (spin 10k)": "torch spin", "ours int8 (spin 10k)": "torch spin",
    "ours sdpa": "torch", "ours int8": "torch", "ours eager + maps": "torch", "timm": "timm",
    "ORT fp32": "runtimes", "ORT int8": "runtimes", "OpenVINO fp32": "runtimes", "OpenVINO int8": "runtimes",
}
# OpenMP's settings per worker (read once, at start): PASSIVE threads sleep as soon as a parallel region ends,
# libgomp's default spins 300,000 times first, GOMP_SPINCOUNT=10000 (what app.py sets) a short while
OPENMP = {"torch passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "torch spin": {"GOMP_SPINCOUNT": "10000"}}
REFERENCE = "ours sdpa"  # the logits every other variant is compared with
EXPORTS = {"ORT fp32": ("onnx", False), "ORT int8": ("onnx", True),
           "OpenVINO fp32": ("openvino", False), "OpenVINO int8": ("openvino", True)}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- the workers

def build(name: str, spec: dict, threads: int):
    """pixel values (torch) -> logits (torch), for one variant."""
    if name == "timm":
        import timm

        model = timm.create_model(CONFIGS[spec["config"]][1], pretrained=False).eval()
        return lambda pixels: model(pixels)
    if name in EXPORTS:
        from vithybrid.runtimes import RuntimeModel

        model = RuntimeModel.from_pretrained(spec["exports"][name], EXPORTS[name][0], threads=threads)
        return lambda pixels: model(pixels).logits
    from vithybrid import ViTHybridForImageClassification
    from vithybrid.optimize import quantize_int8

    model = ViTHybridForImageClassification.from_pretrained(spec["checkpoint"])
    if "int8" in name:
        model = quantize_int8(model)
    maps = name == "ours eager + maps"
    return lambda pixels: model(pixels, output_attentions=maps).logits


def gemm_gflops(side: int) -> float:
    """One side^3 float32 matmul: the machine's practical float32 ceiling, in GFLOP/s."""
    import torch

    a, b = torch.randn(side, side), torch.randn(side, side)
    a @ b
    start = time.perf_counter()
    a @ b
    return 2 * side ** 3 / (time.perf_counter() - start) / 1e9


def worker(spec: dict, threads: int) -> None:
    """Serve commands from stdin, one JSON line each: {"time": variant, "batch": n}, {"logits": variant,
    "out": file}, {"gemm": side}; answer one JSON line each on stdout."""
    import torch

    from vithybrid.optimize import keep_freed_memory

    torch.set_num_threads(threads)
    # Every PyTorch worker (timm's too) keeps freed memory, so that none pays page faults the others do not; the
    # runtimes keep arenas of their own.
    keep_freed_memory()
    runs = {name: build(name, spec, threads) for name in spec["variants"]}
    size = spec["image_size"]
    inputs = {b: torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(b)) for b in spec["batches"]}
    print(json.dumps({"ready": True}), flush=True)
    with torch.inference_mode():
        for line in sys.stdin:
            command = json.loads(line)
            if "time" in command:
                pixels = inputs[command["batch"]]
                start = time.perf_counter()
                runs[command["time"]](pixels)
                answer = {"ms": (time.perf_counter() - start) * 1000}
            elif "logits" in command:
                torch.save(runs[command["logits"]](inputs[max(inputs)]).float(), command["out"])
                answer = {"saved": command["out"]}
            else:
                answer = {"gflops": gemm_gflops(command["gemm"])}
            print(json.dumps(answer), flush=True)


class Worker:
    def __init__(self, python: str, spec: dict, threads: int, openmp: dict[str, str]):
        from speed import with_our_packages

        env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")} | openmp
        env = with_our_packages(env)  # the oracle's python, timm's, has no vithybrid of its own
        self.process = subprocess.Popen([python, __file__, "--worker", json.dumps(spec), "--threads", str(threads)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.ask(None)

    def ask(self, command: dict | None) -> dict:
        if command is not None:
            self.process.stdin.write(json.dumps(command) + "\n")
            self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"a worker stopped (exit status {self.process.wait()}); see its messages above")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def timm_python() -> str:
    """This interpreter if timm imports here, else the test oracle's environment (created once, a few minutes)."""
    import importlib.util

    if importlib.util.find_spec("timm") is not None:
        return sys.executable
    from speed import oracle_python

    log("timm is not installed here: it runs in the test oracle's environment (tests/oracle/env.py)")
    return str(oracle_python())


# ---------------------------------------------------------------------------------------------- measuring

def prepare(config_name: str, folder: Path, variants: list[str]) -> dict:
    """A random checkpoint, its exports, and its FLOPs per image (counted on the eager path, which runs
    every product as a countable op: SDPA's would be missed)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from vithybrid import ViTHybridConfig, ViTHybridForImageClassification, ViTHybridImageProcessor
    from vithybrid.runtimes import export_model

    config = ViTHybridConfig(**CONFIGS[config_name][0])
    torch.manual_seed(0)
    model = ViTHybridForImageClassification(config).eval()
    checkpoint = folder / "checkpoint"
    model.save_pretrained(checkpoint)
    size = config.image_size
    ViTHybridImageProcessor(size=size, crop_size=size, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(checkpoint)
    exports = {}
    for name in [v for v in variants if v in EXPORTS]:
        log(f"exporting for {name}...")
        runtime, int8 = EXPORTS[name]
        exports[name] = str(folder / name.replace(" ", "-"))
        export_model(checkpoint, exports[name], runtime, int8=int8, attentions=False)
    model.set_attn_implementation("eager")
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, size, size))
    return dict(checkpoint=str(checkpoint), exports=exports, image_size=size, flops=counter.get_total_flops())


def spin() -> None:
    while True:
        pass


def measure(args: argparse.Namespace) -> dict:
    variants = [v for v in VARIANTS if not (v == "timm" and (args.no_timm or CONFIGS[args.config][1] is None))]
    if args.variants:
        variants = [v for v in variants if v in args.variants or v == REFERENCE]
    notes = [] if "timm" in variants else ["timm not measured (--no-timm, or no timm model at this size)"]
    side = CONFIGS[args.config][2]
    with tempfile.TemporaryDirectory() as scratch:
        spec = prepare(args.config, Path(scratch), variants) | dict(config=args.config, batches=args.batches)
        workers = {}
        for name in dict.fromkeys(VARIANTS[v] for v in variants):
            python = timm_python() if name == "timm" else sys.executable
            log(f"starting worker '{name}'...")
            mine = [v for v in variants if VARIANTS[v] == name]
            workers[name] = Worker(python, spec | dict(variants=mine), args.threads, OPENMP.get(name, {}))
        load_before = os.getloadavg()[0]
        samples = {(v, b): [] for v in variants for b in args.batches}
        gemm = []
        spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.busy)]
        for spinner in spinners:
            spinner.start()
        try:
            for round_ in range(1 + args.rounds):  # round 0 warms up
                gemm.append(workers["torch"].ask({"gemm": side})["gflops"])
                for batch in args.batches:
                    for variant in variants:
                        answer = workers[VARIANTS[variant]].ask({"time": variant, "batch": batch})
                        samples[variant, batch].append(answer["ms"])
                log(f"round {round_}/{args.rounds} done" + (" (warm-up)" if round_ == 0 else ""))
            load_after = os.getloadavg()[0]
        finally:
            for spinner in spinners:
                spinner.terminate()
        logits = {}
        for variant in variants:
            out = Path(scratch) / f"{variant}.pt"
            workers[VARIANTS[variant]].ask({"logits": variant, "out": str(out)})
            logits[variant] = out
        fidelity = compare_logits(logits, variants)
        for w in workers.values():
            w.close()
    return dict(
        config=args.config, threads=args.threads, rounds=args.rounds, batches=args.batches, flops=spec["flops"],
        busy=args.busy,
        gemm_gflops=statistics.median(gemm[1:]), gemm_side=side, load=[load_before, load_after], notes=notes,
        ms={f"{v}|{b}": statistics.median(s[1:]) for (v, b), s in samples.items()}, fidelity=fidelity,
        meta=versions(), command="python benchmarks/runtimes.py " + " ".join(sys.argv[1:]),
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def compare_logits(files: dict[str, Path], variants: list[str]) -> dict:
    import torch
    import torch.nn.functional as F

    reference = torch.load(files[REFERENCE])
    out = {}
    for variant in variants:
        if variant == "timm":
            continue
        logits = torch.load(files[variant])
        out[variant] = dict(max_abs_diff=(logits - reference).abs().max().item(),
                            min_cosine=F.cosine_similarity(logits, reference).min().item(),
                            top1=(logits.argmax(-1) == reference.argmax(-1)).float().mean().item())
    return out


def versions() -> dict:
    import importlib.metadata

    from speed import machine  # the CPU's name, as benchmarks/speed.py writes it
    import torch

    names = ("torch", "onnxruntime", "openvino", "nncf", "onnx")
    return {"machine": machine(torch.device("cpu")), "cores": os.cpu_count(),
            **{n: importlib.metadata.version(n) for n in names}}


# ------------------------------------------------------------------------------------------------ reports

def fastest_runtime(data: dict, batch: int, kind: str) -> float | None:
    names = ("ORT fp32", "OpenVINO fp32") if kind == "fp32" else ("ORT int8",)
    return min((data["ms"][f"{n}|{batch}"] for n in names if f"{n}|{batch}" in data["ms"]), default=None)


def markdown(data: dict) -> str:
    batches = data["batches"]
    variants = list(dict.fromkeys(key.split("|")[0] for key in data["ms"]))
    head = ["variant"] + [f"batch {b} ms" for b in batches] + [f"/ fastest runtime, b{b}" for b in batches] + \
        [f"of GEMM ceiling, b{b}" for b in batches] + ["max abs logit diff", "min cosine"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant in variants:
        ms = [data["ms"][f"{variant}|{b}"] for b in batches]
        kind = "int8" if "int8" in variant else "fp32"
        vs = [m / fastest if (fastest := fastest_runtime(data, b, kind)) else None for m, b in zip(ms, batches)]
        ceiling = [data["flops"] * b / (m / 1000) / (data["gemm_gflops"] * 1e9) for m, b in zip(ms, batches)]
        fid = data["fidelity"].get(variant)
        cells = [variant, *(f"{m:.0f}" for m in ms), *("n/a" if v is None else f"{v:.2f}" for v in vs), *(f"{c:.2f}" for c in ceiling),
                 f"{fid['max_abs_diff']:.1e}" if fid else "n/a (own weights)", f"{fid['min_cosine']:.5f}" if fid else ""]
        rows.append("| " + " | ".join(cells) + " |")
    meta = data["meta"]
    busy = (f" Busy machine: {data['busy']} other process(es) spinning on the CPU through the rounds." if data.get("busy")
            else " Above the thread count before the run: other work was running, figures are noisy."
            if data["load"][0] > data["threads"] else "")
    lines = [
        f"ViT-Hybrid ({data['config']} config, random weights, {data['flops'] / 1e9:.3g} GFLOP per "
        f"image) on {meta['machine']} ({meta['cores']} cores), {data['threads']} threads everywhere; "
        f"{data['date']}. Medians of {data['rounds']} interleaved rounds after a warm-up, ms per forward of the "
        f"whole batch. `/ fastest runtime`: against the faster of ONNX Runtime and OpenVINO float32 (int8 rows: "
        f"against ONNX Runtime int8); below 1 is faster. `of GEMM ceiling`: FLOPs per second over one "
        f"{data['gemm_side']}^3 float32 matmul's ({data['gemm_gflops']:.0f} GFLOP/s, measured in the same run). "
        f"Logits against `{REFERENCE}` on a batch of {max(batches)}. OpenMP: libgomp's default (300,000 spins) "
        f"unless a row says `OMP passive` (OMP_WAIT_POLICY=PASSIVE) or `spin 10k` (GOMP_SPINCOUNT=10000); every "
        f"PyTorch worker (timm's too) keeps freed memory (vithybrid.optimize.keep_freed_memory).", "", *rows, "",
        f"torch {meta['torch']}, onnxruntime {meta['onnxruntime']}, openvino {meta['openvino']}, nncf {meta['nncf']}, "
        f"onnx {meta['onnx']}. Load average {data['load'][0]:.1f} before, {data['load'][1]:.1f} after.{busy}",
        *data["notes"], "",
        f"`{data['command']}`"]
    return "\n".join(lines) + "\n"


def plot(data: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    variants = list(dict.fromkeys(key.split("|")[0] for key in data["ms"]))
    figure = Figure(figsize=(9, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / len(data["batches"])
    for i, batch in enumerate(data["batches"]):
        per_image = [data["ms"][f"{v}|{batch}"] / batch for v in variants]
        axes.barh([j + i * width for j in range(len(variants))], per_image, width, label=f"batch {batch}")
    axes.set_yticks([j + width * (len(data["batches"]) - 1) / 2 for j in range(len(variants))], variants)
    axes.invert_yaxis()
    axes.set_xlabel("ms per image (lower is faster)")
    axes.set_title(f"ViT-Hybrid on the CPU ({data['meta']['machine']}, {data['threads']} threads)")
    axes.legend()
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=CONFIGS, default="base")
    parser.add_argument("--batches", type=lambda s: [int(b) for b in s.split(",")], default=[1, 4])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-timm", action="store_true", help="leave timm out (it runs in the oracle's environment)")
    parser.add_argument("--variants", type=lambda s: s.split(","), help=f"only these (comma-separated) and "
                        f"{REFERENCE!r}; default: all of {', '.join(VARIANTS)}")
    parser.add_argument("--busy", type=int, default=0, help="processes kept spinning on the CPU while timing")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs")
    parser.add_argument("--out-json", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker), args.threads)
    unknown = set(args.variants or ()) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)}")
    data = measure(args)
    if args.out_json:
        args.out_json.write_text(json.dumps(data, indent=2))
    text = markdown(data)
    print(text)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "runtimes.md").write_text(text)
    plot(data, args.out_dir / "runtimes.png")


if __name__ == "__main__":
    main()
