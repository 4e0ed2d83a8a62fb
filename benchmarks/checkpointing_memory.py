"""Memory of one training step (forward + backward) with and without gradient checkpointing.

    python benchmarks/checkpointing_memory.py [--batch 2] [--image-size 384] [--layers 12] [--rounds 2]
                                              [--config base|shapes|tiny] [--json OUT]

Prints, per setting, averaged over interleaved rounds on one model:
- saved for backward: the bytes of the tensors autograd keeps from the forward pass for the backward
  one (each storage once), which is what checkpointing trades for recomputation;
- peak: how far the step raised memory above what was in use before it (the weights' gradients, about
  4 bytes per parameter, included in both): on a CPU the process's peak resident memory, reset before
  each step (Linux's /proc/self/clear_refs), on a GPU torch.cuda.max_memory_allocated;
- time of the step, which checkpointing lengthens by one more forward of the encoder layers.
Random weights of the google/vit-hybrid-base-bit-384 architecture (or, for a quick check, of a training
preset's, at its own image size). The BiT backbone is not
checkpointed (transformers does not either), so its activations count in both settings. With checkpointing,
what the encoder layers keep is their inputs: torch's (non-reentrant) checkpoint saves them through the
saved-tensor hooks too, so they count.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import logging
import time
from pathlib import Path

import torch

from vithybrid import ViTHybridConfig, ViTHybridForImageClassification
from vithybrid.optimize import keep_freed_memory
from vithybrid.training.train import PRESETS

MIB = 2 ** 20


def build(args: argparse.Namespace) -> ViTHybridForImageClassification:
    logging.disable(logging.WARNING)  # a featmap-shape note for non-default image sizes
    if args.config == "base":
        grid = args.image_size // 16
        config = ViTHybridConfig(image_size=args.image_size, num_labels=1000, num_hidden_layers=args.layers,
                                 backbone_featmap_shape=[1, 1024, grid, grid])
    else:
        config = ViTHybridConfig(**{**PRESETS[args.config], "num_hidden_layers": args.layers})
    torch.manual_seed(0)
    return ViTHybridForImageClassification(config).to(args.device).train()


def saved_bytes(model, pixels, labels) -> int:
    """Bytes autograd saves for backward in one forward pass, each storage counted once, the weights
    (which exist anyway) not counted."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def keep(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        model(pixels, labels=labels).loss.backward()
    return sum(storages.values())


def resident_kib(field: str) -> int:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, in KiB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def peak_of_step(model, pixels, labels) -> tuple[int, float]:
    """(bytes the step raised memory by at its peak, seconds)."""
    model.zero_grad(set_to_none=True)
    gc.collect()
    cuda = pixels.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed memory back, so resident memory is what is in use
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak
        before = resident_kib("VmRSS") * 1024
    start = time.perf_counter()
    model(pixels, labels=labels).loss.backward()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if cuda else resident_kib("VmHWM") * 1024
    return peak - before, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=384, help="with --config base")
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--config", choices=("base", *PRESETS), default="base",
                        help="base: google/vit-hybrid-base-bit-384's architecture; or a training preset's")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, help="also write the means, in bytes and seconds, here")
    args = parser.parse_args()

    model = build(args)
    size = model.config.image_size
    pixels = torch.randn(args.batch, 3, size, size, device=args.device)
    labels = torch.arange(args.batch, device=args.device)
    settings = {"off": model.gradient_checkpointing_disable,
                "on": lambda: model.gradient_checkpointing_enable({"use_reentrant": False})}
    results = {name: [] for name in settings}
    peak_of_step(model, pixels, labels)  # warm-up: kernels, allocator
    for _ in range(args.rounds):
        for name, switch in settings.items():  # interleaved
            switch()
            peak, seconds = peak_of_step(model, pixels, labels)
            model.zero_grad(set_to_none=True)
            results[name].append({"peak": peak, "seconds": seconds, "saved": saved_bytes(model, pixels, labels)})

    def mean(name, key):
        return sum(run[key] for run in results[name]) / len(results[name])

    gradients = sum(p.numel() * p.element_size() for p in model.parameters())
    if args.json:
        means = {name: {key: mean(name, key) for key in ("saved", "peak", "seconds")} for name in settings}
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "gradients": gradients,
                                         **means}, indent=1))
    print(f"One training step of ViT-Hybrid ({args.layers} layers, {size}x{size}, batch "
          f"{args.batch}, float32, {args.device}, {args.rounds} interleaved rounds; the weights' gradients "
          f"take {gradients / MIB:.0f} MiB of each peak)\n")
    print("| gradient checkpointing | saved for backward | peak memory of the step | time |")
    print("|---|---|---|---|")
    for name in settings:
        print(f"| {name} | {mean(name, 'saved') / MIB:.0f} MiB | {mean(name, 'peak') / MIB:.0f} MiB | "
              f"{mean(name, 'seconds'):.2f} s |")
    print(f"\nWith checkpointing: {mean('on', 'saved') / mean('off', 'saved'):.2f}x the saved activations, "
          f"{mean('on', 'peak') / mean('off', 'peak'):.2f}x the peak, "
          f"{mean('on', 'seconds') / mean('off', 'seconds'):.2f}x the time.")


if __name__ == "__main__":
    keep_freed_memory()  # as the CLIs do: this process's choice, made at its entry point
    main()
