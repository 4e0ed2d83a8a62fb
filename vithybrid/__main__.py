"""python -m vithybrid IMAGE... : the top-5 labels of each image (or JSON with --json)."""

from __future__ import annotations

import argparse
import json
import sys

from .checkpoints.hub import CheckpointError
from .loading import DEFAULT_MODEL
from .optimize import keep_freed_memory
from .pipeline import open_image, pipeline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vithybrid", description="Classify images with ViT-Hybrid.")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="Hub id, checkpoint folder or 'shapes' (default: %(default)s)")
    parser.add_argument("--top-k", type=int, default=5, help="labels per image (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object: {file: [{label, score}]}")
    parser.add_argument("--int8", action="store_true", help="run the linear layers in int8 (CPU; faster, slightly "
                                                            "different scores: see the README's benchmark)")
    parser.add_argument("--runtime", choices=("onnx", "openvino"),
                        help="classify with ONNX Runtime or OpenVINO: --model is then an export folder (python -m "
                             "vithybrid.export), or a checkpoint that is exported once into a cache")
    args = parser.parse_args(argv)

    try:
        classify = pipeline(args.model, top_k=args.top_k, runtime=args.runtime, int8=args.int8)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        if args.model == DEFAULT_MODEL:  # most often: no network; the shipped model needs none
            print("hint: without network, try --model shapes (the shipped model: circles, squares, triangles, "
                  "stars, crosses)", file=sys.stderr)
        return 2
    results, failed = {}, 0
    for path in args.images:
        try:
            results[path] = classify(open_image(path))
        except ValueError as error:  # ImageError says what is wrong with the file
            failed += 1
            print(f"error: cannot read {path}: {error}", file=sys.stderr)
            continue
        if not args.json:
            print(path)
            for rank, guess in enumerate(results[path], 1):
                print(f"  {rank}. {guess['score']:7.2%}  {guess['label']}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    keep_freed_memory()  # this process's choice, as an entry point (see vithybrid.optimize)
    sys.exit(main())
