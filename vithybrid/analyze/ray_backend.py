"""The Ray backend: Ray Data takes the rows the driver read from the source (less those OUT holds, with
--resume), decodes files in tasks, explains them in an actor pool (one model per actor, a GPU each when the
cluster has GPUs) and writes the Parquet parts, on a local Ray started for the run or on an existing cluster
(OUT must then be on storage every node sees at the same path).
Ray is an optional extra: `pip install -e '.[ray]'` in a clone of vithybrid."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data
import torch

import visualization
import vithybrid

from ..optimize import keep_freed_memory
from .maps import DECODED_SCHEMA, Explainer, decode, load
from .sources import SOURCE_SCHEMA


def decode_batch(batch: pa.Table, processor) -> pa.Table:
    return pa.Table.from_pylist([decode(row, processor) for row in batch.to_pylist()], schema=DECODED_SCHEMA)


class ExplainerActor:
    """One model per actor, loaded once; explains batches of decoded rows. With a `runtime`, `model` is an export
    folder, served with as many threads as the actor's CPUs give PyTorch (Ray sets OMP_NUM_THREADS)."""

    def __init__(self, model: str, maps: tuple[str, ...], top_k: int, device: str, runtime: str | None = None):
        keep_freed_memory()  # the actor's process is this command's own, like its driver (python -m vithybrid.analyze)
        threads = torch.get_num_threads() if runtime else None
        self.explain = Explainer(*load(model, device, runtime, attentions=bool(maps), threads=threads), maps=maps,
                                 top_k=top_k)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.explain(batch.to_pylist())


def start_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start a local Ray (`address` None; `num_cpus` default: all) or connect to a cluster ("auto": the one this
    machine belongs to; "ray://head:10001": a remote one), shipping this package's code to the workers so that
    a cluster needs only Ray and torch installed."""
    modules = [os.path.dirname(vithybrid.__file__), os.path.dirname(visualization.__file__)]
    ray.init(address=address, num_cpus=None if address else num_cpus or os.cpu_count(),
             runtime_env={"py_modules": modules}, log_to_driver=False)


def run_ray(rows: pd.DataFrame, out: Path, model: str, processor, maps: tuple[str, ...], top_k: int, batch_size: int,
            actors: int | None, address: str | None, runtime: str | None = None) -> None:
    """Explain `rows` (read_source's, as run_local does) into Parquet parts in `out` with Ray Data. `address` None
    starts a local Ray with this machine's CPUs for the run (and stops it); otherwise Ray connects there ("auto":
    the cluster this machine belongs to). A Ray already initialized in this process is used as it is. runtime
    "onnx" or "openvino": `model` is an export folder (on a cluster: at the same path on every node), served on
    CPUs."""
    staging = out / f".ray-{uuid.uuid4().hex}"  # hidden: readers of OUT skip it until its parts move out
    staging.mkdir()  # ours alone: fails if something (a link planted by another user) is there
    started = not ray.is_initialized()
    if started:
        start_ray(address)
    try:
        resources = ray.cluster_resources()
        gpus, cpus = 0 if runtime else int(resources.get("GPU", 0)), resources.get("CPU", 1)
        actors = actors or max(1, gpus)
        # Actors hold their CPUs for the whole run, and reading, repartitioning and writing need CPUs too: actors
        # that took every CPU would leave Ray Data waiting forever, so on CPUs they share what leaves room.
        actor_cpus = 1.0 if gpus else min(1.0, max(cpus - 1, cpus / 2) / actors)
        # blocks of about one batch, so that decoding spreads over the cluster
        dataset = ray.data.from_arrow(pa.Table.from_pandas(rows, schema=SOURCE_SCHEMA, preserve_index=False))
        dataset = dataset.repartition(target_num_rows_per_block=batch_size)
        dataset = dataset.map_batches(decode_batch, fn_kwargs={"processor": processor},
                                      batch_format="pyarrow", batch_size=batch_size)
        # Decoding runs in Ray tasks that feed the actors, except where Ray fuses it into them (when both ask
        # for the same resources: a whole CPU each and no GPU; then no pixels cross the object store).
        dataset = dataset.map_batches(ExplainerActor, fn_constructor_kwargs={
            "model": model, "maps": maps, "top_k": top_k, "device": "cuda" if gpus else "cpu", "runtime": runtime},
            batch_format="pyarrow", batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=actor_cpus, num_gpus=1 if gpus else 0)
        dataset.write_parquet(str(staging))
    finally:
        keep_whole_parts(staging, out)
        if started:
            ray.shutdown()


def keep_whole_parts(staging: Path, out: Path) -> None:
    """Move every Parquet file of `staging` whose footer reads into `out`, and drop the rest (a write cut short
    by Ctrl-C or a failure) with the staging folder: OUT only ever holds whole parts, and --resume goes on."""
    for part in sorted(staging.glob("*.parquet")):
        try:
            pq.read_metadata(part)
        except (OSError, pa.ArrowException):
            continue
        os.replace(part, out / part.name)
    shutil.rmtree(staging, ignore_errors=True)
