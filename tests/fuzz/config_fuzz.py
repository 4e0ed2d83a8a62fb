"""A seeded mutation fuzzer over config.json, through `from_pretrained`: every case must end in a loaded model or
one CheckpointError of one line, never another exception, and never a long allocation (the config's sizes are
bounded before anything is built).

    PYTHONPATH=. python tests/fuzz/config_fuzz.py --cases 5000 --seed 1

A case takes the config.json of a small saved model, changes one to three of its fields (top level and
backbone_config: zeros, negatives, huge values, floats, NaN and infinities, wrong types) and loads the folder.
Failures are printed with the config that made them, and written with --keep FOLDER.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

from vithybrid import CheckpointError, ViTHybridForImageClassification, resolve_model

REPLACEMENTS = [0, -1, -(2 ** 31), 1, 2, 3, 7, 1000, 1_000_000, 10 ** 9, 2 ** 63, 1e9, 0.5, -0.5, 1e-30, float("nan"),
                float("inf"), float("-inf"), True, False, None, "", "12", "same", "gelu", "stage1", [], [0], [1, 2],
                [-1, 4, 4, 4], [10 ** 9], {}, {"a": 1}, {"0": [1]}]


def mutate(value, rng: random.Random):
    """Another value for a field: one of REPLACEMENTS, or a number nearby, far off, or of the other kind."""
    choice = rng.random()
    if isinstance(value, bool) or not isinstance(value, (int, float, list)) or choice < 0.5:
        return copy.deepcopy(rng.choice(REPLACEMENTS))
    if isinstance(value, list):
        if not value:
            return [rng.choice(REPLACEMENTS)]
        changed = list(value)
        changed[rng.randrange(len(value))] = mutate(value[0], rng)
        return changed
    return rng.choice([value + 1, value - 1, -value, value * 1000, value * 10 ** 6, float(value), value / 3])


def fields(config: dict) -> list[tuple[str, ...]]:
    """(key,) for each top-level field, (backbone_config, key) for each backbone field."""
    return [(key,) for key in config] + [("backbone_config", key) for key in config.get("backbone_config", {})]


def mutated(base: dict, rng: random.Random) -> dict:
    config = copy.deepcopy(base)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(fields(base))
        holder = config if len(path) == 1 else config.get(path[0])
        if isinstance(holder, dict) and path[-1] in holder:
            holder[path[-1]] = mutate(holder[path[-1]], rng)
    return config


def names_a_field(message: str, fields: list[tuple[str, ...]]) -> bool:
    """Whether an error message says what is wrong: a field of config.json, or the weights that do not fit it."""
    return "weights" in message or any(path[-1] in message for path in fields)


def run_case(checkpoint: Path, folder: Path, config: dict, base: dict) -> str | None:
    """None if the case ended as it must (a model, or a CheckpointError of one line naming what is wrong);
    else what happened."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "preprocessor_config.json"):
        target = folder / name
        if not target.exists():
            target.symlink_to(checkpoint / name)
    (folder / "config.json").write_text(json.dumps(config))  # NaN and Infinity as Python's json writes them
    try:
        ViTHybridForImageClassification.from_pretrained(folder)
    except CheckpointError as error:
        if "\n" in str(error):
            return f"a CheckpointError of several lines: {error}"
        return None if names_a_field(str(error), fields(base)) else f"a CheckpointError that names no field: {error}"
    except Exception as error:  # noqa: BLE001 - any other exception is the finding
        return f"{type(error).__name__}: {error}"
    return None


def fuzz(checkpoint: Path, work: Path, cases: int, seed: int, report=None) -> list[tuple[dict, str]]:
    """Run `cases` mutations of checkpoint's config.json; returns the failures (config, what happened), each
    also passed to `report` as it is found."""
    base = json.loads((checkpoint / "config.json").read_text())
    rng = random.Random(seed)
    failures = []
    for _ in range(cases):
        config = mutated(base, rng)
        problem = run_case(checkpoint, work / "case", config, base)
        if problem:
            failures.append((config, problem))
            if report:
                report(config, problem)
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="shapes", help="a checkpoint folder with model.safetensors")
    parser.add_argument("--keep", type=Path, help="write each failing config.json into this folder")
    args = parser.parse_args(argv)
    logging.getLogger("vithybrid").setLevel(logging.ERROR)  # the warnings of configs that load are not findings

    def report(config: dict, problem: str) -> None:
        print(f"{problem}\n  {json.dumps(config)}", flush=True)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            (args.keep / f"config-{args.seed}-{len(list(args.keep.iterdir()))}.json").write_text(json.dumps(config))

    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        failures = fuzz(Path(resolve_model(args.model)), Path(work), args.cases, args.seed, report)
        seconds = time.perf_counter() - start
    print(f"{args.cases} cases, {len(failures)} failures, {seconds / args.cases * 1000:.0f} ms per case")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
