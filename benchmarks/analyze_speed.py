"""Images per second of `python -m vithybrid.analyze`: the local backend against Ray Data with 1 and 2 actors,
for the shipped shapes model and the full-size model (ViTHybridConfig(image_size=384, num_labels=1000),
random weights), both maps on.

Every configuration runs the command's own `main()` in this process on the same folder of photos (copies of
examples/, so decoding is real), into a fresh OUT, without the report; configurations are interleaved round
by round and the best round is kept. One local Ray is started first (its start-up, ~10-30 s here, is not
timed); what is timed includes loading the model (once locally, once per actor on Ray) and writing Parquet.
Every run must write one row per photo, none with an error, or the benchmark stops: a failed analysis times
nothing.

    python benchmarks/analyze_speed.py [--shapes-images 64] [--full-images 8] [--rounds 1] [--cpus N] [--local-only]

--full-images 0 leaves the full-size model out; --local-only leaves Ray out (a quick check).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep: fair on a shared CPU

ROOT = Path(__file__).resolve().parents[1]

import pyarrow.dataset as pads  # noqa: E402

from vithybrid import ViTHybridConfig, ViTHybridForImageClassification, ViTHybridImageProcessor  # noqa: E402
from vithybrid.optimize import keep_freed_memory  # noqa: E402
from vithybrid.analyze.__main__ import main  # noqa: E402

BACKENDS = {"local": [], "ray, 1 actor": ["--ray", "--actors", "1"], "ray, 2 actors": ["--ray", "--actors", "2"]}


def photo_folder(folder: Path, count: int) -> Path:
    folder.mkdir()
    examples = sorted(p for p in (ROOT / "examples").iterdir() if p.suffix in (".png", ".jpg"))
    for i in range(count):
        shutil.copy(examples[i % len(examples)], folder / f"{i:05d}{examples[i % len(examples)].suffix}")
    return folder


def full_size_model(folder: Path) -> Path:
    ViTHybridForImageClassification(ViTHybridConfig(image_size=384, num_labels=1000)).save_pretrained(folder)
    ViTHybridImageProcessor(size=384, crop_size=384, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)
    return folder


def seconds(source: Path, model: str, backend: list[str], batch_size: int, scratch: Path) -> float:
    out = Path(tempfile.mkdtemp(dir=scratch)) / "rows"
    start = time.perf_counter()
    status = main([str(source), "--out", str(out), "--model", model, "--batch-size", str(batch_size),
                   "--no-report", *backend])
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"analyze exited with {status} for {model} {backend}")
    errors, photos = pads.dataset(out).to_table(columns=["error"]).column("error"), len(list(source.iterdir()))
    if len(errors) != photos or errors.null_count != photos:
        raise SystemExit(f"analyze wrote {len(errors)} rows, {len(errors) - errors.null_count} with an error, for "
                         f"{photos} photos ({model} {backend})")
    return elapsed


def main_benchmark() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes-images", type=int, default=64)
    parser.add_argument("--full-images", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray (default: all)")
    parser.add_argument("--local-only", action="store_true", help="only the local backend (no Ray)")
    args = parser.parse_args()
    backends = {"local": BACKENDS["local"]} if args.local_only else BACKENDS
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        cases = [("shapes", "shapes", photo_folder(scratch / "shapes", args.shapes_images), 16)]
        if args.full_images:
            cases.append(("full-size (384)", str(full_size_model(scratch / "full")),
                          photo_folder(scratch / "photos", args.full_images), 4))
        if not args.local_only:
            from vithybrid.analyze.ray_backend import start_ray  # Ray is an extra of its own

            start_ray(num_cpus=args.cpus)
        best: dict[tuple[str, str], float] = {}
        for _ in range(args.rounds):
            for name, model, source, batch_size in cases:
                for backend, flags in backends.items():
                    elapsed = seconds(source, model, flags, batch_size, scratch)
                    best[name, backend] = min(best.get((name, backend), float("inf")), elapsed)
        load = os.getloadavg()[0]
        print(f"\n{os.cpu_count()} CPUs, load average {load:.1f} when done; maps: rollout,class\n")
        print("| model | backend | images | seconds | images/s | vs local |")
        print("|---|---|---:|---:|---:|---:|")
        for name, _, source, _ in cases:
            count = len(list(source.iterdir()))
            for backend in backends:
                elapsed = best[name, backend]
                print(f"| {name} | {backend} | {count} | {elapsed:.1f} | {count / elapsed:.2f} | "
                      f"{best[name, 'local'] / elapsed:.2f}x |")


if __name__ == "__main__":
    keep_freed_memory()  # as the CLIs do: this process's choice, made at its entry point
    main_benchmark()
