"""python -m vithybrid.analyze SOURCE --out OUT: explain every image of a folder, glob or table into Parquet
rows (one per file) and an HTML report beside them, in one process or on a Ray cluster (--ray)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from ..atomic import check_writable, write_text
from ..checkpoints.hub import CheckpointError
from ..checkpoints.shipped import resolve_model
from ..loading import DEFAULT_MODEL
from ..optimize import keep_freed_memory
from ..runtimes import RUNTIMES

EXTRA = ("pandas", "pyarrow", "tqdm")  # the analyze extra; the core package does without them
try:
    import pyarrow.dataset as pads

    from .local import run_local
    from .maps import MAPS, RUNTIME_MAPS, Explainer, load
    from .report import report_path, write_report
    from .sources import SourceError, read_source
except ImportError as missing:
    if (missing.name or "").split(".")[0] not in EXTRA:
        raise
    print(f"error: python -m vithybrid.analyze needs {missing.name.split('.')[0]}: pip install -e '.[analyze]' "
          f"(or pip install {' '.join(EXTRA)})", file=sys.stderr)
    raise SystemExit(2) from None


SETTINGS = "_analyze.json"  # in OUT: what its rows were made with (Parquet readers skip names starting "_")
FLAGS = {"model": "--model", "runtime": "--runtime", "int8": "--int8", "maps": "--maps", "top_k": "--top-k"}


class UsageError(Exception):
    """Input the run cannot start with; the message is printed as one line, and the exit status is 2."""


def parse_maps(text: str) -> tuple[str, ...]:
    maps = tuple(m.strip() for m in text.split(",") if m.strip() and m.strip() != "none")
    unknown = [m for m in maps if m not in MAPS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown map {', '.join(unknown)}; choose from {', '.join(MAPS)} or none")
    return maps


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vithybrid.analyze", description=(
        "Explain every image of a folder, glob or table with ViT-Hybrid: Parquet rows (top-k, maps, where they "
        "point) and an HTML report."))
    p.add_argument("source", help="an image folder (searched recursively), a glob, or a CSV/Parquet file with a "
                                  "'path' column (optional: 'label', 'bbox' = x0 y0 x1 y1 in photo pixels)")
    p.add_argument("--follow-symlinks", action="store_true",
                   help="read links (in a folder or glob source) to files outside the folder searched; by default "
                        "they are left out, with a note (links to folders are never searched; a table's paths are "
                        "read as listed)")
    p.add_argument("--out", required=True, type=Path, help="the folder of Parquet parts to write; the report goes "
                                                           "beside it as OUT.html")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="Hub id, checkpoint folder or 'shapes' (default: %(default)s); with --runtime, also an "
                        "export folder (python -m vithybrid.export)")
    p.add_argument("--maps", type=parse_maps, default=None, help="maps to compute: rollout, class, rollout,class "
                                                                 "(default: rollout,class; with --runtime: rollout) "
                                                                 "or none")
    p.add_argument("--runtime", choices=tuple(RUNTIMES),
                   help="explain with ONNX Runtime or OpenVINO (a checkpoint is exported once into a cache): "
                        "labels and rollout maps only, class maps need PyTorch")
    p.add_argument("--int8", action="store_true", help="with --runtime: classify with the int8 export (faster, "
                                                       "slightly different scores); rollout stays float32")
    p.add_argument("--top-k", type=int, default=5, help="labels per image (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=8, help="images per model call (default: %(default)s)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="local backend: decoding processes (default: %(default)s; 0 decodes in the main process)")
    p.add_argument("--device", default=None, help="local backend: torch device (default: cuda if available, else cpu)")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run on Ray Data: alone, a local Ray started for the run; with ADDRESS (e.g. auto or "
                        "ray://head:10001), that cluster")
    p.add_argument("--actors", type=int, default=None, help="Ray: model actors (default: one per GPU, else 1)")
    p.add_argument("--resume", action="store_true",
                   help="keep the rows already in OUT and add the missing ones; OUT must have been made with the "
                        "same --model, --runtime, --int8, --maps and --top-k (an OUT from an older version, which "
                        "did not record them, is refused)")
    p.add_argument("--no-report", action="store_true", help="write the Parquet rows only")
    return p


def run_settings(args: argparse.Namespace, model, explainer: Explainer) -> dict:
    """What makes the rows what they are (FLAGS' keys), for --resume to compare: a local model folder by its
    absolute path (a shipped name stays a name), int8 and top-k as served (an export folder keeps its own
    precision; top-k is at most the number of labels)."""
    local = Path(args.model).is_dir() and resolve_model(args.model) == args.model
    return {"model": str(Path(args.model).resolve()) if local else args.model, "runtime": args.runtime,
            "int8": args.runtime is not None and bool(model.info.get("int8")), "maps": list(args.maps),
            "top_k": explainer.top_k}


def shown(value) -> str:
    if isinstance(value, list):
        return ",".join(value) or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "none" if value is None else str(value)


def check_settings(out: Path, settings: dict) -> None:
    """OUT was made with `settings` (UsageError if not, or if it does not say)."""
    try:
        recorded = json.loads((out / SETTINGS).read_text())
    except FileNotFoundError:
        raise UsageError(f"cannot resume: {out} does not record what its rows were made with (an older version of "
                         f"analyze wrote it), so rows of another model or other options could be mixed in: choose "
                         f"another --out and run without --resume") from None
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot resume: {out / SETTINGS} cannot be read ({error})") from None
    differences = [f"{FLAGS[key]} ({shown(recorded.get(key))}; this run: {shown(value)})"
                   for key, value in settings.items() if recorded.get(key) != value]
    if differences:
        raise UsageError(f"cannot resume: {out} was made with other {', other '.join(differences)}; resume with "
                         f"the same options, or choose another --out")


def check_report(out: Path) -> None:
    """The report can go beside OUT once the run is over (UsageError if not): its name is not a folder's, and its
    folder takes new files. Writes nothing that stays."""
    report = report_path(out)
    if report.is_dir() and not report.is_symlink():  # a link is replaced, a folder cannot be
        raise UsageError(f"cannot write the report to {report}: it is a folder; move it, choose another --out, or "
                         f"pass --no-report")
    if report.parent.is_dir():  # else made with OUT, by us
        try:
            check_writable(report.parent)
        except OSError as error:
            raise UsageError(f"cannot write the report to {report.parent}: {error.strerror or error}; choose another "
                             f"--out, or pass --no-report") from None


def prepare_out(out: Path, resume: bool, settings: dict, report: bool = True) -> frozenset[str]:
    """Make sure OUT can take the rows of a run with `settings` (run_settings; recorded in a new OUT), and the
    report its place beside OUT (`report`), before the first image is read; return the paths OUT already holds
    (with --resume). Raises UsageError."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"cannot write to {out}: it is a file, not a folder")
    existing = out.is_dir() and any(not p.name.startswith((".", "_")) for p in out.iterdir())
    if existing and not resume:
        raise UsageError(f"{out} already holds results; pass --resume to add the missing rows, or choose another --out")
    if report:
        check_report(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        check_writable(out)
    except OSError as error:
        raise UsageError(f"cannot write to {out}: {error.strerror or error}") from None
    if not existing:
        write_text(out / SETTINGS, json.dumps(settings, indent=1) + "\n")
        return frozenset()
    try:
        dataset = pads.dataset(out, format="parquet")
    except Exception as error:  # noqa: BLE001 - pyarrow raises several kinds for a foreign folder
        raise UsageError(f"cannot resume: {out} holds files that are not Parquet rows ({error})") from None
    check_settings(out, settings)
    return frozenset(dataset.to_table(columns=["path"]).column("path").to_pylist())


def check_device(device: str) -> None:
    """A torch device this machine has (UsageError if not)."""
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise UsageError(f"--device {device}: not a torch device (cpu, cuda, cuda:1, ...)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: this machine has no CUDA GPU that torch can use; use --device cpu")


def check_runtime(args: argparse.Namespace) -> list[str]:
    """Check --runtime's limits (UsageError) and fill in --maps' default (with --runtime: rollout only); returns
    the notes to print once the run starts."""
    if args.runtime is None:
        if args.int8:
            raise UsageError("--int8 works with --runtime onnx|openvino only here (the PyTorch path computes class maps "
                             "from float32 gradients): add --runtime, or drop --int8")
        args.maps = tuple(MAPS) if args.maps is None else args.maps
        return []
    notes = []
    if args.maps is None:
        args.maps = RUNTIME_MAPS
        notes.append(f"note: with --runtime the maps are {','.join(RUNTIME_MAPS)} only (class maps need PyTorch's "
                     f"gradients)")
    if set(args.maps) - set(RUNTIME_MAPS):
        raise UsageError(f"--maps class needs PyTorch (gradients of the attention maps, which {RUNTIMES[args.runtime]} "
                         f"cannot give): use --maps rollout, or drop --runtime")
    if args.device not in (None, "cpu"):
        raise UsageError(f"--device {args.device}: {RUNTIMES[args.runtime]} runs on the CPU here; drop --device")
    return notes


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if min(args.batch_size, args.top_k) < 1 or args.workers < 0 or (args.actors is not None and args.actors < 1):
            raise UsageError("--batch-size, --top-k and --actors must be at least 1, --workers at least 0")
        notes = check_runtime(args)
        rows, outside = read_source(args.source, args.follow_symlinks)
        if outside:
            notes.append(f"note: left out {len(outside)} link(s) to files outside {args.source} (such as "
                         f"{outside[0]}); pass --follow-symlinks to read them")
        # With --ray the model is loaded here only to check it (the actors load their own; a checkpoint given
        # with --runtime is exported here, once, and the actors load the export).
        device = "cpu" if args.ray or args.runtime else args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        check_device(device)
        model, processor = load(args.model, device, args.runtime, args.int8, attentions=bool(args.maps))
        if args.int8 and not model.info.get("int8"):
            notes.append(f"note: --int8 has no effect on {args.model}: an export folder is served as it was "
                         f"exported (float32; export it with --int8 for int8)")
        explainer = Explainer(model, processor, args.maps, args.top_k)
        done = prepare_out(args.out, args.resume, run_settings(args, model, explainer), not args.no_report)
    except (UsageError, SourceError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for note in notes:
        print(note, file=sys.stderr)
    todo = rows[~rows.path.isin(done)]
    print(f"{len(todo)} of {len(rows)} files to explain ({len(rows) - len(todo)} already in {args.out})",
          file=sys.stderr)
    try:
        if args.ray and not todo.empty:
            try:
                from .ray_backend import run_ray  # Ray is an optional extra: imported only when asked for
            except ImportError:
                print("error: --ray needs Ray Data: pip install -e '.[ray]' (in a clone of vithybrid)",
                      file=sys.stderr)
                return 2
            run_ray(todo, args.out, str(model.folder) if args.runtime else args.model, processor, args.maps,
                    args.top_k, args.batch_size, args.actors, None if args.ray == "local" else args.ray, args.runtime)
        elif not todo.empty:
            run_local(todo, args.out, explainer, args.batch_size, args.workers)
    except KeyboardInterrupt:
        print(f"interrupted: the rows explained so far are in {args.out}; rerun with --resume to add the rest",
              file=sys.stderr)
        return 130
    if not args.no_report:
        served = f" ({RUNTIMES[args.runtime]}{', int8' if model.info.get('int8') else ''})" if args.runtime else ""
        try:
            print(f"report: {write_report(args.out, processor, args.model + served)}", file=sys.stderr)
        except OSError as error:  # checked before the run, but the disk may fill or the folder change meanwhile
            print(f"error: cannot write the report beside {args.out}: {error.strerror or error}; the rows are in "
                  f"{args.out}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    keep_freed_memory()  # this process's choice, as an entry point (see vithybrid.optimize)
    sys.exit(main())
