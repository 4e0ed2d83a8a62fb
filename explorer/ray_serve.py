"""The startup model on Ray Serve (`python app.py --ray [ADDRESS] --replicas N`): N replicas of the model, on a
local Ray or a cluster, give the page's labels (Ray Serve batches the requests that reach a replica together) and
photos' whole passes (explorer.analysis.whole_pass, as the in-process path runs it). The Gradio process keeps the
page, the work queue, the analysis cache and its own copy of the model for everything else (other classes' maps,
CAMs, deletion/insertion, timing, and the models picked in the dropdown).

Ray is an optional extra (`pip install -e '.[ray]'`): only app.py --ray (and benchmarks/classroom.py --ray) import
this module.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import threading
from pathlib import Path

import ray
import torch
from ray import serve

import visualization
import vithybrid
from vithybrid.explain import PhotoMaps

from .analysis import STORED_DTYPE, whole_pass
from .runs import load_model

APP_NAME = "vithybrid-explorer"  # the Serve application: a restarted app replaces its predecessor's replicas
# Ray Serve merges the labels requests that reach one replica within LABELS_WAIT_S, up to LABELS_BATCH requests
# (each of them already a batch of up to WorkQueue.max_batch photos, 8: so at most 32 images in one forward).
LABELS_BATCH = 4
LABELS_WAIT_S = 0.005
CONNECT_TIMEOUT_S = 5


@serve.deployment
class ModelReplica:
    """One replica: the model loaded by name, on the CPU, with as many torch threads as the replica has CPUs."""

    def __init__(self, name: str, dtype: str, threads: int):
        torch.set_num_threads(threads)  # this replica's share of its node's cores (the replica's process is ours)
        self.model, _ = load_model(name, "cpu", getattr(torch, dtype))
        # One model run at a time: a pass's forward hooks would fire on a labels forward running beside it.
        self._running = threading.Lock()

    @serve.batch(max_batch_size=LABELS_BATCH, batch_wait_timeout_s=LABELS_WAIT_S)
    async def labels(self, batches: list[torch.Tensor]) -> list[torch.Tensor]:
        """(B, classes) logits for each request's (B, 3, H, W) pixels, from one forward of them all."""
        logits = await asyncio.to_thread(self._run, self._forward, torch.cat(batches))
        return list(logits.split([len(pixels) for pixels in batches]))

    async def whole_pass(self, pixels: torch.Tensor) -> tuple[PhotoMaps, list[torch.Tensor]]:
        """The photo's whole pass; its attentions in float16, as the Gradio process stores them (half the bytes to
        send: 96 MB for the full-size model), everything else as computed."""
        found, backbone = await asyncio.to_thread(self._run, whole_pass, self.model, pixels)
        return dataclasses.replace(found, attentions=tuple(a.to(STORED_DTYPE) for a in found.attentions)), backbone

    def _run(self, fn, *args):
        with self._running:  # in a thread, so that labels requests arriving meanwhile gather into one batch
            return fn(*args)

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(pixels).logits


class ServedModel:
    """The replicas as the Explorer calls them (`Explorer.remote`), from any thread: CPU tensors in and out."""

    def __init__(self, handle: serve.handle.DeploymentHandle, replicas: int, started_ray: bool):
        self.handle, self.replicas, self._started_ray = handle, replicas, started_ray

    def labels(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.handle.labels.remote(pixels.cpu()).result()

    def whole_pass(self, pixels: torch.Tensor) -> tuple[PhotoMaps, list[torch.Tensor]]:
        return self.handle.whole_pass.remote(pixels.cpu()).result()

    def close(self) -> None:
        """Remove the replicas (on a cluster they would outlive this process), and stop a Ray started here."""
        serve.delete(APP_NAME)
        if self._started_ray:
            serve.shutdown()
            ray.shutdown()


def check_reachable(address: str) -> None:
    """Raise OSError at once where nothing answers at ADDRESS's host:port: ray.init itself retries for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, ray://HOST:PORT or auto, got {address!r}")
    socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()


def serve_model(name: str, replicas: int, dtype: torch.dtype = torch.float32, address: str | None = None,
                num_cpus: int | None = None) -> ServedModel:
    """Deploy `replicas` replicas of the model `name` and return what calls them. `address` None starts a local Ray
    with `num_cpus` CPUs (default: this machine's); "auto" joins the cluster this machine is a node of;
    "HOST:PORT" (the head's GCS port, 6379) or "ray://HOST:10001" (Ray Client) connects there. A Ray already
    initialized in this process is used as it is. The replicas split the cluster's CPUs evenly; the project's
    code travels with them (a node needs Python, torch and the package's dependencies, not this checkout)."""
    if replicas < 1:
        raise ValueError(f"--replicas must be at least 1, got {replicas}")
    started_ray = not ray.is_initialized()
    if started_ray:
        if address not in (None, "auto"):
            check_reachable(address)
        modules = [str(Path(__file__).parent), os.path.dirname(vithybrid.__file__),
                   os.path.dirname(visualization.__file__)]
        # A local Ray without its dashboard: Serve's Python API needs none, and it costs ~1 GB in ten processes.
        ray.init(address=address, num_cpus=None if address else num_cpus, runtime_env={"py_modules": modules},
                 log_to_driver=False, include_dashboard=False if address is None else None)
    try:
        cpus = ray.cluster_resources().get("CPU", 1) / replicas
        serve.start(proxy_location="Disabled")  # called through handles only: no HTTP proxy, no port opened
        replica = ModelReplica.options(num_replicas=replicas, ray_actor_options={"num_cpus": cpus})
        handle = serve.run(replica.bind(name, str(dtype).removeprefix("torch."), max(1, int(cpus))), name=APP_NAME,
                           route_prefix=None)
    except BaseException:
        if started_ray:  # the app goes on in-process: leave no Ray of ours behind
            ray.shutdown()
        raise
    return ServedModel(handle, replicas, started_ray)
