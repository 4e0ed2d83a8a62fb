"""Speed of ViT-Hybrid at 384x384 beside its peers, in one process, one torch and one machine.

Variants, all with the architecture of google/vit-hybrid-base-bit-384 and random weights:
- ours (vithybrid) on its SDPA path, on its eager path, on the eager path returning all 12 layers'
  attention probabilities (output_attentions=True, what the app's maps need), and dynamically
  int8-quantized (vithybrid.optimize.quantize_int8; CPU and float32 only);
- transformers 4.46.3's deprecated ViTHybridForImageClassification with eager and with SDPA attention,
  loaded with our weights (the key names are the same), so its logits must match ours;
- timm 1.0.31's vit_base_r50_s16_384 (the same architecture, its own random weights).

    python benchmarks/speed.py [--device cpu|cuda] [--dtypes float32,float16,bfloat16] [--batches 1,2,4,8]
                               [--repeats 3] [--warmup N] [--threads N] [--quick] [--config base|tiny]
                               [--out-dir docs] [--out-md FILE] [--out-png FILE] [--out-json FILE]

For each dtype and batch: warm-up calls of every variant (1; 3 on CUDA), then `repeats` rounds that call each variant
once in turn (round-robin, so drift in the machine's speed hits all alike), all under
torch.inference_mode, with CUDA synchronized around each call; the tables give medians in ms per forward
pass of the whole batch, ratios between variants, and the largest |logits difference| between our SDPA
path and transformers' on the same input. Progress goes to stderr, the tables to stdout, and
speed.md (tables, machine, versions, date, command) and speed.png (ms per image against batch size) to
--out-dir (default docs/).

Two processes, when needed. transformers 4.46.3 needs huggingface_hub < 1.0 and cannot live beside
gradio, so it and timm usually sit in the test oracle's virtual environment (tests/oracle/env.py).
When this interpreter lacks them, the script runs itself again there (creating that environment once)
with the hidden option --measure-only FILE: that child builds and times every model, ours included, in
one torch, and writes the raw results as JSON; this process reads them and writes the tables and the
figure (matplotlib lives here, not necessarily there). Where transformers and timm import here, both
halves run in this process. --out-json keeps the raw results.

OpenMP's wait policy is set to PASSIVE unless the environment says otherwise (before torch starts; the
child inherits it): on a shared CPU, spinning idle threads stall every multi-threaded op. The load
average is recorded before and after: on a busy machine the figures are noisy.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when torch's OpenMP runtime starts

import argparse
import copy
import importlib.metadata
import importlib.util
import json
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

import vithybrid
from vithybrid import ViTHybridConfig, ViTHybridForImageClassification
from vithybrid.optimize import keep_freed_memory, quantize_int8
from vithybrid.timing import SEED_A100

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = ("ours sdpa", "ours eager", "ours eager + maps", "ours int8", "transformers sdpa", "transformers eager",
            "timm")
# (label, numerator, denominator): ratios of median times; below 1 means the numerator is faster.
RATIOS = (("ours sdpa / timm", "ours sdpa", "timm"),
          ("ours sdpa / transformers sdpa", "ours sdpa", "transformers sdpa"),
          ("ours eager+maps / ours sdpa", "ours eager + maps", "ours sdpa"),
          ("ours int8 / timm", "ours int8", "timm"),
          ("ours SDPA speedup (eager / sdpa)", "ours eager", "ours sdpa"),
          ("transformers SDPA speedup (eager / sdpa)", "transformers eager", "transformers sdpa"))
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# "base" is google/vit-hybrid-base-bit-384; "tiny" is a smoke-test size for the tests (timm keeps its
# R50 stages there, only its transformer shrinks).
CONFIGS = {
    "base": dict(ours=dict(image_size=384, num_labels=1000), timm=dict()),
    "tiny": dict(ours=dict(image_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, num_labels=10, backbone_featmap_shape=[1, 64, 4, 4],
                           backbone_config=dict(depths=[1, 1, 1], hidden_sizes=[16, 32, 64, 128], embedding_size=8,
                                                num_groups=4, layer_type="bottleneck", global_padding="SAME",
                                                out_features=["stage3"], embedding_dynamic_padding=True)),
                 timm=dict(img_size=64, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, num_classes=10)),
}
TIMM_MODEL = "vit_base_r50_s16_384"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- measuring

@dataclass
class Variant:
    name: str
    run: Callable[[torch.Tensor], torch.Tensor]  # pixel values -> logits
    setup: Callable[[], None] = lambda: None  # called before each timed call, outside the timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[torch.Tensor], torch.Tensor], pixels: torch.Tensor) -> tuple[float, torch.Tensor]:
    """One call of `run(pixels)`: milliseconds (CUDA work finished on both ends) and its output."""
    synchronize(pixels.device)
    start = time.perf_counter()
    output = run(pixels)
    synchronize(pixels.device)
    return (time.perf_counter() - start) * 1000, output


def peers_importable() -> bool:
    """Whether transformers 4.x (which still has ViTHybrid) and timm are installed in this interpreter."""
    try:
        return importlib.metadata.version("transformers").startswith("4.") and bool(importlib.metadata.version("timm"))
    except importlib.metadata.PackageNotFoundError:
        return False


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def masters(config_name: str) -> dict[str, torch.nn.Module]:
    """float32 CPU models: ours, transformers' eager and SDPA models with our weights, and timm's."""
    import timm
    import transformers
    from transformers import ViTHybridConfig as TransformersConfig
    from transformers import ViTHybridForImageClassification as TransformersModel

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    ours = ViTHybridForImageClassification(ViTHybridConfig(**CONFIGS[config_name]["ours"])).eval()
    config = TransformersConfig(**ours.config.to_dict())
    models = {"ours": ours}
    # Passing attn_implementation="sdpa" raises in 4.46.3 (the BiT backbone check); left out, SDPA is the default.
    for name, kwargs in (("transformers eager", dict(attn_implementation="eager")), ("transformers sdpa", {})):
        model = TransformersModel._from_config(config, **kwargs).eval()
        model.load_state_dict(ours.state_dict())
        expected = "ViTHybridSdpaAttention" if name.endswith("sdpa") else "ViTHybridAttention"
        actual = type(model.vit.encoder.layer[0].attention).__name__
        if actual != expected:
            raise RuntimeError(f"{name}: transformers built {actual}, not {expected}")
        models[name] = model
    models["timm"] = timm.create_model(TIMM_MODEL, pretrained=False, **CONFIGS[config_name]["timm"]).eval()
    return models


def variants_for(models: dict[str, torch.nn.Module], device: torch.device, dtype: torch.dtype,
                 notes: list[str]) -> list[Variant]:
    ours = models["ours"]

    def use(implementation: str) -> Callable[[], None]:
        return lambda: ours.set_attn_implementation(implementation)

    variants = [
        Variant("ours sdpa", lambda x: ours(x).logits, use("sdpa")),
        Variant("ours eager", lambda x: ours(x).logits, use("eager")),
        Variant("ours eager + maps", lambda x: ours(x, output_attentions=True).logits, use("eager")),
    ]
    if device.type == "cpu" and dtype == torch.float32:
        ours.set_attn_implementation("sdpa")
        quantized = quantize_int8(ours)
        variants.append(Variant("ours int8", lambda x: quantized(x).logits))
    else:
        notes.append(f"ours int8 not run in {str(dtype).split('.')[-1]} on {device.type}: dynamic int8 "
                     "quantization is for float32 on the CPU.")
    variants += [Variant(name, lambda x, model=models[name]: model(x).logits)
                 for name in ("transformers sdpa", "transformers eager")]
    variants.append(Variant("timm", models["timm"]))
    return variants


def supported(dtype: str, device: torch.device) -> str | None:
    """Why `dtype` cannot run on `device`, or None."""
    if device.type == "cuda" and dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        return f"bfloat16 skipped: {torch.cuda.get_device_name(device)} does not support it."
    return None


def measure(args: argparse.Namespace) -> dict:
    """Build every model, time all variants round-robin per dtype and batch, and return the raw results."""
    import timm
    import transformers

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: this torch sees no CUDA device")
    dtypes = args.dtypes.split(",") if args.dtypes else (
        ["float32", "float16", "bfloat16"] if device.type == "cuda" else ["float32"])
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown:
        raise SystemExit(f"--dtypes: unknown {unknown}; choose from {list(DTYPES)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    # Before any model runs, so that every model in this process reuses freed memory alike (and
    # VITHYBRID_KEEP_FREED_MEMORY=0 is honoured).
    freed_memory_kept = device.type == "cpu" and keep_freed_memory()
    batches = [1] if args.quick else args.batches
    repeats = 1 if args.quick else args.repeats
    warmup = args.warmup if args.warmup is not None else (3 if device.type == "cuda" else 1)
    size = CONFIGS[args.config]["ours"]["image_size"]
    meta = dict(torch=torch.__version__, transformers=transformers.__version__, timm=timm.__version__,
                python=platform.python_version(), device=device.type, machine=machine(device),
                cpus=os.cpu_count(), threads=torch.get_num_threads(), omp_wait_policy=os.environ["OMP_WAIT_POLICY"],
                freed_memory_kept=freed_memory_kept,
                config=args.config, image_size=size, batches=batches, repeats=repeats, warmup=warmup,
                date=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"), load_before=os.getloadavg())
    log(f"Building the models ({args.config} config, random weights) under torch {torch.__version__}...")
    cpu_models = masters(args.config)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(max(batches), 3, size, size, generator=generator).clamp_(-1, 1)  # normalized pixel range
    notes: list[str] = []
    results = []
    for dtype_name in dtypes:
        reason = supported(dtype_name, device)
        if reason:
            notes.append(reason)
            log(reason)
            continue
        dtype = DTYPES[dtype_name]
        models = {name: copy.deepcopy(model).to(device=device, dtype=dtype) for name, model in cpu_models.items()}
        variants = variants_for(models, device, dtype, notes)
        with torch.inference_mode():
            for batch in batches:
                pixels = images[:batch].to(device=device, dtype=dtype)
                samples: dict[str, list[float]] = {v.name: [] for v in variants}
                logits: dict[str, torch.Tensor] = {}
                failed: dict[str, str] = {}
                for round_ in range(warmup + repeats):
                    stage = "warm-up" if round_ < warmup else f"run {round_ - warmup + 1}/{repeats}"
                    for variant in variants:
                        if variant.name in failed:
                            continue
                        try:
                            variant.setup()
                            ms, output = timed(variant.run, pixels)
                        except Exception as error:  # noqa: BLE001 - report it, keep timing the others
                            failed[variant.name] = f"{variant.name} failed in {dtype_name} at batch {batch}: {error!r}"
                            log(failed[variant.name])
                            continue
                        if round_ >= warmup:
                            samples[variant.name].append(ms)
                        logits[variant.name] = output
                        log(f"[{dtype_name} batch {batch} {stage}] {variant.name}: {ms:.1f} ms")
                notes.extend(failed.values())
                differences = {other: float((logits["ours sdpa"].float() - logits[other].float()).abs().max())
                               for other in ("transformers sdpa", "ours int8")
                               if other in logits and "ours sdpa" in logits}
                scale = float(logits["ours sdpa"].float().abs().max()) if "ours sdpa" in logits else None
                int8_cosine = (float(torch.nn.functional.cosine_similarity(
                    logits["ours sdpa"].float(), logits["ours int8"].float(), dim=-1).min())
                    if {"ours sdpa", "ours int8"} <= logits.keys() else None)
                results.append(dict(dtype=dtype_name, batch=batch, samples=samples, max_logit=scale,
                                    max_logit_difference=differences.get("transformers sdpa"),
                                    max_int8_logit_difference=differences.get("ours int8"), int8_cosine=int8_cosine,
                                    ms={name: statistics.median(s) if s else None for name, s in samples.items()}))
        del models, variants
        if device.type == "cuda":
            torch.cuda.empty_cache()
    meta["load_after"] = os.getloadavg()
    return dict(meta=meta, notes=list(dict.fromkeys(notes)), results=results)


def oracle_python() -> Path:
    """The test oracle's python (tests/oracle/env.py: transformers 4.46.3 and timm), its environment created on
    first use (a few minutes). tests/ is no package: its env.py is loaded from its file."""
    spec = importlib.util.spec_from_file_location("oracle_env", ROOT / "tests" / "oracle" / "env.py")
    oracle_env = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(oracle_env)
    return oracle_env.oracle_python()


def with_our_packages(env: dict[str, str]) -> dict[str, str]:
    """`env` with the folder this process imports vithybrid from first on PYTHONPATH, so that a child run by
    another interpreter (the oracle's, which has no vithybrid installed) imports the same code."""
    folder = str(Path(vithybrid.__file__).resolve().parents[1])
    return env | {"PYTHONPATH": os.pathsep.join(filter(None, [folder, env.get("PYTHONPATH")]))}


def measure_in_oracle(argv: list[str]) -> dict:
    """Run this script again in the oracle's environment (which has transformers and timm) to measure."""
    log("transformers 4.46.3 or timm is not installed here: measuring in the test oracle's environment "
        "(tests/oracle/env.py; created on first use, a few minutes).")
    try:
        python = oracle_python()
    except Exception as error:  # noqa: BLE001 - pip, network, disk
        raise SystemExit(f"Could not set up the oracle environment ({error}). Install transformers==4.46.3 "
                         f"and timm into an environment of their own, or set VITHYBRID_ORACLE_VENV to one.")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "speed.json"
        result = subprocess.run([str(python), str(Path(__file__).resolve()), *argv, "--measure-only", str(out)],
                                env=with_our_packages(dict(os.environ)), check=False)
        if result.returncode:
            raise SystemExit(f"The measuring process failed (exit status {result.returncode}).")
        return json.loads(out.read_text())


# ---------------------------------------------------------------------------------------------- reporting

def ratio(row: dict, numerator: str, denominator: str) -> str:
    a, b = row["ms"].get(numerator), row["ms"].get(denominator)
    return f"{a / b:.2f}" if a and b else "-"


def number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def spread(row: dict) -> str:
    """How far apart the repeated runs of one variant were, at worst: near 1 on a quiet machine."""
    spreads = [max(s) / min(s) for s in row["samples"].values() if len(s) > 1]
    return f"{max(spreads):.2f}" if spreads else "-"


def tables(data: dict) -> str:
    """Markdown: per dtype, median ms per forward pass for each variant, then ratios and the logits check."""
    meta, parts = data["meta"], []
    names = [n for n in VARIANTS if any(r["ms"].get(n) for r in data["results"])]
    for dtype in dict.fromkeys(r["dtype"] for r in data["results"]):
        rows = [r for r in data["results"] if r["dtype"] == dtype]
        parts += [(f"**{dtype}**, {meta['device']} ({meta['machine']}), torch {meta['torch']}: ms per forward "
                   f"pass of the whole batch (median of {meta['repeats']} run(s))"), "",
                  "| batch | " + " | ".join(names) + " |", "|---:" * (len(names) + 1) + "|"]
        parts += [f"| {r['batch']} | " + " | ".join(f"{r['ms'][n]:.1f}" if r["ms"].get(n) else "-" for n in names)
                  + " |" for r in rows]
        parts += ["", "| batch | " + " | ".join(label for label, *_ in RATIOS) + " | max abs logits diff, ours sdpa "
                  "vs transformers sdpa | max abs logits diff, ours int8 vs ours sdpa | min logits cosine, ours int8 "
                  "vs ours sdpa | max abs logit (scale) | noise: largest slowest/fastest run of a variant |",
                  "|---:" * (len(RATIOS) + 6) + "|"]
        for r in rows:
            checks = [number(r["max_logit_difference"], ".1e"), number(r.get("max_int8_logit_difference"), ".1e"),
                      number(r.get("int8_cosine"), ".4f"), number(r["max_logit"], ".2f"), spread(r)]
            parts.append(f"| {r['batch']} | " + " | ".join([*(ratio(r, a, b) for _, a, b in RATIOS), *checks]) + " |")
        parts.append("")
    return "\n".join(parts)


def header(data: dict) -> str:
    m = data["meta"]
    return (f"{m['config']} config ({m['image_size']}x{m['image_size']}, random weights) on {m['machine']}; "
            f"{m['cpus']} CPUs, {m['threads']} torch threads, OMP_WAIT_POLICY={m['omp_wait_policy']}; "
            f"torch {m['torch']}, "
            f"transformers {m['transformers']}, timm {m['timm']}, Python {m['python']}; {m['date']}; "
            f"load average {m['load_before'][0]:.1f} before, {m['load_after'][0]:.1f} after; "
            f"{m['warmup']} warm-up call(s), then {m['repeats']} round-robin run(s) per variant")


def markdown(data: dict) -> str:
    m = data["meta"]
    seed = ", ".join(f"batch {b}: {e:.0f} ms eager, {s:.0f} ms SDPA" for b, e, s in SEED_A100)
    model = (f"google/vit-hybrid-base-bit-384's architecture with random weights at {m['image_size']}x{m['image_size']}"
             if m["config"] == "base" else f"the {m['config']} config (a smoke test)")
    method = (f"Every model ran in the same process and the same torch; {m['warmup']} warm-up call(s), then "
              f"{m['repeats']} round(s) calling each variant in turn, medians. transformers' models carry our "
              f"weights, timm's ({TIMM_MODEL}) its own. \"ours eager + maps\" returns all layers' attention "
              "probabilities; \"ours int8\" (vithybrid.optimize.quantize_int8 of ours sdpa) shows its accuracy cost "
              "as the distance of its logits from ours sdpa's. Ratios below 1 mean the first named is faster; a "
              "noise figure well above 1 means the machine's speed changed during the runs. Load average "
              f"{m['load_before'][0]:.1f} before, {m['load_after'][0]:.1f} after: on a shared machine the figures "
              "are noisy.")
    kept = ", freed memory kept for reuse (vithybrid.optimize.keep_freed_memory)" if m.get("freed_memory_kept") else ""
    machine_line = (f"Machine: {m['machine']} ({m['device']}), {m['cpus']} CPUs, {m['threads']} torch threads "
                    f"(OMP_WAIT_POLICY={m['omp_wait_policy']}{kept}). torch {m['torch']}, transformers {m['transformers']}, "
                    f"timm {m['timm']}, Python {m['python']}. Date: {m['date']}.")
    lines = ["# Speed: ours against transformers 4.46.3 and timm", "", machine_line, "",
             f"Command: `{m['command']}`", "", f"Model: {model}.", "", method, "", tables(data)]
    if data["notes"]:
        lines += ["Notes:", "", *(f"- {note}" for note in data["notes"]), ""]
    lines += [f"For reference, the seed's A100 figures (float32, PyTorch 2.3): {seed}.", ""]
    return "\n".join(lines)


def plot(data: dict, path: Path) -> None:
    """ms per image against batch size, a line per variant, a panel per dtype (Agg canvas, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    dtypes = list(dict.fromkeys(r["dtype"] for r in data["results"]))
    figure = Figure(figsize=(5.5 * len(dtypes), 4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    m = data["meta"]
    figure.suptitle(f"ViT-Hybrid {m['image_size']}x{m['image_size']} on {m['machine']}, torch {m['torch']}",
                    fontsize=10)
    for index, dtype in enumerate(dtypes):
        axes = figure.add_subplot(1, len(dtypes), index + 1)
        rows = [r for r in data["results"] if r["dtype"] == dtype]
        for name in VARIANTS:
            points = [(r["batch"], r["ms"][name] / r["batch"]) for r in rows if r["ms"].get(name)]
            if points:
                axes.plot(*zip(*points), marker="o", label=name)
        axes.set_xscale("log", base=2)
        values = [r["ms"][n] / r["batch"] for r in rows for n in VARIANTS if r["ms"].get(n)]
        if max(values) > 4 * min(values):  # a log scale only where the spread needs one
            axes.set_yscale("log")
            plain = FuncFormatter(lambda value, _: f"{value:g}")
            axes.yaxis.set_major_formatter(plain)
            axes.yaxis.set_minor_formatter(plain)
        axes.set_xticks([r["batch"] for r in rows], [str(r["batch"]) for r in rows])
        axes.set_xlabel("batch size")
        axes.set_ylabel("ms per image (median)")
        axes.set_title(f"{dtype}, {m['device']}", fontsize=10)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(frameon=False, fontsize=8)
    figure.savefig(path)


def report(data: dict, args: argparse.Namespace) -> None:
    print(header(data) + "\n")
    print(tables(data))
    for note in data["notes"]:
        print(f"note: {note}")
    out_md = args.out_md or args.out_dir / "speed.md"
    out_png = args.out_png or args.out_dir / "speed.png"
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(markdown(data))
    written = [out_md]
    try:
        plot(data, out_png)
        written.append(out_png)
    except ImportError:
        log("matplotlib is not installed here: no figure.")
    if args.out_json:
        args.out_json.write_text(json.dumps(data, indent=1))
        written.append(args.out_json)
    log("Wrote " + ", ".join(map(str, written)))


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda if available")
    parser.add_argument("--dtypes", help="comma-separated, of float32, float16, bfloat16 (default: float32 on "
                                         "the CPU; float32,float16,bfloat16 on CUDA, bfloat16 where supported)")
    parser.add_argument("--batches", type=lambda s: [int(b) for b in s.split(",")], default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per batch (medians)")
    parser.add_argument("--warmup", type=int, help="warm-up calls per variant and batch (default 1; 3 on CUDA)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="batch 1 only, 1 run")
    parser.add_argument("--config", choices=tuple(CONFIGS), default="base", help="tiny: a smoke test")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs", help="for speed.md and speed.png")
    parser.add_argument("--out-md", type=Path, help="default: OUT_DIR/speed.md")
    parser.add_argument("--out-png", type=Path, help="default: OUT_DIR/speed.png")
    parser.add_argument("--out-json", type=Path, help="also write the raw results here")
    parser.add_argument("--measure-only", type=Path, help=argparse.SUPPRESS)  # the child: raw results to this file
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.measure_only:
        args.measure_only.write_text(json.dumps(measure(args)))
        return
    data = measure(args) if peers_importable() else measure_in_oracle(argv)
    data["meta"]["command"] = shlex.join(["python", "benchmarks/speed.py", *argv])
    report(data, args)


if __name__ == "__main__":
    main()
