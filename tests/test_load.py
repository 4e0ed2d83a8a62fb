"""The small version of benchmarks/load.py: concurrent clients on loopback, each answered for its own image."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from load import resident_mb, run_load, serve, shape_files  # noqa: E402


@pytest.fixture(scope="module")
def served():
    from explorer import Explorer

    explorer = Explorer("shapes")
    demo, url = serve(explorer)
    yield explorer, url
    demo.close()


def test_concurrent_clients_each_get_their_own_answers(served, tmp_path):
    explorer, url = served
    files = shape_files(12, tmp_path)
    result = run_load(url, files, clients=4, requests=3, deadline_s=240)
    assert len(result.latencies) == 12 and result.wrong == []
    assert len(explorer.cache) <= explorer.cache.max_entries


def test_memory_stays_bounded_over_200_requests(served, tmp_path):
    explorer, url = served
    files = shape_files(40, tmp_path)
    run_load(url, files[:8], clients=2, requests=4)  # warm-up: caches, allocator pools
    before = resident_mb()
    result = run_load(url, files, clients=4, requests=50, deadline_s=300)
    assert len(result.latencies) == 200 and result.wrong == []
    assert resident_mb() - before < 100
    assert len(explorer.cache) == explorer.cache.max_entries  # full, and no larger
