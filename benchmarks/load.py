"""Load on the app, on loopback only: concurrent clients, each checking that every answer is for its own image.

    python benchmarks/load.py [--clients 16] [--requests 5] [--rss-requests 200]

Serves the app in this process with the shipped shapes model on a free 127.0.0.1 port, sends
`clients` x `requests` classify and maps calls (bounded in count and by a deadline), prints p50/p95
latency, then sends `rss-requests` more and prints how much the process's resident memory grew.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import socket
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from gradio_client import Client, handle_file

from vithybrid.training.shapes import CLASSES, sample


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds per request
    wrong: list[str] = field(default_factory=list)  # answers that were not for the client's own image

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def shape_files(count: int, folder: Path, size: int = 128, seed: int = 4242) -> list[tuple[Path, str]]:
    """`count` distinct generated shapes saved as PNG, with their labels."""
    files = []
    for index in range(count):
        drawn = sample(seed, index, size)
        path = folder / f"{index:03d}_{CLASSES[drawn.label]}.png"
        drawn.image.save(path)
        files.append((path, CLASSES[drawn.label]))
    return files


def run_load(url: str, files: list[tuple[Path, str]], clients: int, requests: int,
             deadline_s: float = 300.0) -> LoadResult:
    """Each client sends `requests` calls, cycling through its own images; every answer is checked."""
    result, stop = LoadResult(), time.monotonic() + deadline_s

    def client_session(number: int) -> None:
        client = Client(url, verbose=False)
        for request in range(requests):
            if time.monotonic() > stop:
                result.wrong.append(f"client {number}: deadline reached")
                return
            path, label = files[(number * requests + request) % len(files)]
            start = time.perf_counter()
            if request % 2:
                answer = client.predict(handle_file(str(path)), api_name="/maps")["labels"]
                top = next(iter(answer))
            else:
                top = client.predict(handle_file(str(path)), api_name="/classify")["label"]
            result.latencies.append(time.perf_counter() - start)
            if top != label:
                result.wrong.append(f"client {number}, {path.name}: got {top}")

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client_session, range(clients)))
    return result


def resident_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def serve(explorer):
    """The app as `python app.py` serves it, on a free loopback port; returns (demo, url)."""
    from app import build_demo
    from app import serve as launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = build_demo(explorer)
    launch(demo, prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    return demo, f"http://127.0.0.1:{port}/"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=5, help="per client")
    parser.add_argument("--rss-requests", type=int, default=200)
    args = parser.parse_args(argv)

    from explorer import Explorer

    explorer = Explorer("shapes")
    demo, url = serve(explorer)
    try:
        with tempfile.TemporaryDirectory() as folder:
            files = shape_files(max(args.clients * args.requests, 20), Path(folder))
            run_load(url, files[:5], 1, 5)  # warm-up
            load = run_load(url, files, args.clients, args.requests)
            before = resident_mb()
            soak = run_load(url, files, 4, args.rss_requests // 4)
            growth = resident_mb() - before
        print(f"{args.clients} clients x {args.requests} requests: {len(load.latencies)} answered, "
              f"{len(load.wrong)} wrong; p50 {load.percentile(0.5) * 1000:.0f} ms, "
              f"p95 {load.percentile(0.95) * 1000:.0f} ms, mean {statistics.mean(load.latencies) * 1000:.0f} ms")
        print(f"{len(soak.latencies)} more requests: resident memory grew {growth:+.1f} MB; "
              f"analyses cached: {len(explorer.cache)}, {explorer.cache.bytes / 2 ** 20:.0f} MB of "
              f"{explorer.cache.budget_bytes / 2 ** 20:.0f} MB")
        for line in (load.wrong + soak.wrong)[:10]:
            print("  wrong:", line)
    finally:
        demo.close()


if __name__ == "__main__":
    main()
