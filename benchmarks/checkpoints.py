"""Every supported checkpoint: size, compute, published accuracy and our CPU latency, into docs/checkpoints.md.

    python benchmarks/checkpoints.py [--repeats 3] [--threads N] [--out docs/checkpoints.md]

For google/vit-hybrid-base-bit-384 (our default ViTHybridConfig at 384) and timm's nine hybrid ViTs
(vithybrid.checkpoints.timm_format), a model with random weights is built from its config alone (nothing is
downloaded), with 1000 classes, at its native image size:
- parameters, in millions;
- GFLOPs per image: torch.utils.flop_counter.FlopCounterMode over one batch-1 pass of the base model
  over all tokens and the classifier on the CLS token, i.e. the architecture's count, whatever work our
  classification forward may skip; on the eager attention path (the counter does not know the CPU SDPA
  kernel; the attention matmuls are the same). It counts matrix multiplications and convolutions as 2
  FLOPs per multiply-add (GFLOPs = 2 x GMACs); norms, activations, softmax and padding are not counted;
- timm's published ImageNet-1k top-1 for the checkpoint's weights (results-imagenet.csv, TOP1_SOURCE);
- latency: float32, batch 1, SDPA, torch.inference_mode, the median of `repeats` forwards after one
  warm-up, with torch's thread count as set (printed). Progress goes to stderr, the table to stdout and
  to --out with the machine, versions and date.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts: idle threads sleep on a shared CPU

import argparse
import platform
import statistics
import sys
from datetime import datetime
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from speed import machine  # benchmarks/speed.py, beside this file
from vithybrid import ViTHybridConfig, ViTHybridForImageClassification
from vithybrid.checkpoints.timm_format import (ARCHITECTURES, IN21K_CHECKPOINTS, SUPPORTED_CHECKPOINTS,
                                               architecture_config)
from vithybrid.optimize import keep_freed_memory
from vithybrid.timing import forward_ms

ROOT = Path(__file__).resolve().parents[1]

TOP1_SOURCE = ("https://github.com/huggingface/pytorch-image-models/blob/0173a139a2c66db3a41ebfe1d8ac4fb02483642e/"
               "results/results-imagenet.csv")
# From TOP1_SOURCE: architecture -> (pretrained tag, top-1 %, timm's parameter count in M). Architectures
# without ImageNet-1k weights are absent.
TOP1 = {
    "vit_tiny_r_s16_p8_224": ("augreg_in21k_ft_in1k", 71.798, 6.34),
    "vit_tiny_r_s16_p8_384": ("augreg_in21k_ft_in1k", 75.962, 6.36),
    "vit_small_r26_s32_224": ("augreg_in21k_ft_in1k", 81.864, 36.43),
    "vit_small_r26_s32_384": ("augreg_in21k_ft_in1k", 84.048, 36.47),
    "vit_base_r50_s16_384": ("orig_in21k_ft_in1k", 84.976, 98.95),
    "vit_large_r50_s32_224": ("augreg_in21k_ft_in1k", 84.422, 328.99),
    "vit_large_r50_s32_384": ("augreg_in21k_ft_in1k", 86.182, 329.09),
}
GOOGLE = "google/vit-hybrid-base-bit-384"


def checkpoints() -> list[tuple[str, str, ViTHybridConfig, tuple | None]]:
    """(name, Hub id or a note, config, TOP1 entry) for google's checkpoint and timm's nine architectures."""
    hub_ids = {repo.split("/")[1].split(".")[0]: repo for repo in SUPPORTED_CHECKPOINTS + IN21K_CHECKPOINTS
               if repo.startswith("timm/")}
    rows = [(GOOGLE, GOOGLE, ViTHybridConfig(image_size=384, num_labels=1000), TOP1["vit_base_r50_s16_384"])]
    for name in ARCHITECTURES:
        top1 = TOP1.get(name)
        hub_id = f"timm/{name}.{top1[0]}" if top1 else hub_ids.get(name, "(no published weights)")
        rows.append((name, hub_id, architecture_config(name), top1))
    return rows


def measure(config: ViTHybridConfig, repeats: int) -> dict:
    torch.manual_seed(0)
    model = ViTHybridForImageClassification(config).eval()  # outside inference mode: weights stay ordinary tensors
    pixels = torch.randn(1, config.num_channels, config.image_size, config.image_size)
    model.set_attn_implementation("eager")
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:  # every token through every layer
        model.classifier(model.vit(pixels).last_hidden_state[:, 0])
    times = [forward_ms(model, pixels, "sdpa") for _ in range(1 + repeats)][1:]  # the first is the warm-up
    return dict(params=sum(p.numel() for p in model.parameters()) / 1e6, gflops=counter.get_total_flops() / 1e9,
                ms=statistics.median(times))


def table(results: list[dict]) -> str:
    lines = ["| checkpoint | Hub id | image | tokens | params (M) | timm's count (M) | GFLOPs | ImageNet top-1 (%) | "
             "CPU ms (SDPA, batch 1) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        top1 = r["top1"]
        accuracy = "-" if top1 is None else f"{top1[1]:.3f}" + (" *" if r["name"] == GOOGLE else "")
        timm_count = "-" if top1 is None or r["name"] == GOOGLE else f"{top1[2]:.2f}"
        lines.append(f"| {r['name']} | {r['hub_id']} | {r['image']} | {r['tokens']} | {r['params']:.2f} | "
                     f"{timm_count} | {r['gflops']:.1f} | {accuracy} | {r['ms']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per model after one warm-up")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "checkpoints.md")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, results = checkpoints(), []
    for index, (name, hub_id, config, top1) in enumerate(rows, 1):
        print(f"[{index}/{len(rows)}] {name}: building, counting FLOPs, timing...", file=sys.stderr, flush=True)
        result = measure(config, args.repeats)
        grid = "x".join(map(str, config.grid_size))
        results.append(dict(name=name, hub_id=hub_id, image=config.image_size, tokens=f"{grid} + 1", top1=top1,
                            **result))
        print(f"    {result['params']:.1f} M parameters, {result['gflops']:.1f} GFLOPs, {result['ms']:.0f} ms",
              file=sys.stderr, flush=True)
    body = table(results)
    print(body)
    setup = (f"{machine(torch.device('cpu'))}, {os.cpu_count()} CPUs, torch {torch.__version__} with "
             f"{torch.get_num_threads()} threads, Python {platform.python_version()}, "
             f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, load average {os.getloadavg()[0]:.1f} at the end")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"""# Supported checkpoints

Written by `python benchmarks/checkpoints.py` ({setup}).

{body}

- Every model is built from its config with random weights and 1000 classes at its native image size;
  nothing is downloaded. The Hub ids are the published weights these architectures have (timm's ImageNet-1k
  fine-tunes where they exist; `vit_base_r50_s16_224` has only ImageNet-21k features, `vit_base_r26_s32_224`
  no weights at all). `tokens` is the grid of image tokens plus the CLS token.
- params: our count; "timm's count" is the param_count column of the source below, for the same weights.
- GFLOPs per image, counted with `torch.utils.flop_counter.FlopCounterMode` over one batch-1 pass of every
  token through every layer and the classifier (eager attention path, so the attention matmuls count too):
  matrix multiplications and convolutions, 2 FLOPs per multiply-add (so GMACs = GFLOPs / 2); norms,
  activations and softmax are not counted. The latency column times our classification forward as it is.
- ImageNet top-1: timm's published evaluation, {TOP1_SOURCE} (each row's tag as in its Hub id).
  \\* google/vit-hybrid-base-bit-384 holds the same weights as timm's `vit_base_r50_s16_384.orig_in21k_ft_in1k`
  (transformers converted them from timm), so its number is timm's for that checkpoint; its config differs only
  in LayerNorm eps (1e-12 there, 1e-6 in timm), whose effect on accuracy was not measured here.
- CPU ms: float32, batch 1, SDPA attention, `torch.inference_mode`, median of {args.repeats} forwards after
  one warm-up, on the machine above; a shared machine makes these noisy. The first row and
  `vit_base_r50_s16_384` are the same architecture, so their difference shows the noise of this run.
""", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    keep_freed_memory()  # as the CLIs do: this process's choice, made at its entry point
    main()
