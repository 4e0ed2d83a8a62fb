"""The small version of benchmarks/load.py: concurrent clients on loopback, each answered for its own image."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from helpers import plain_top5  # noqa: E402
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
    assert explorer.cache.bytes <= explorer.cache.budget_bytes


def test_memory_stays_bounded_over_200_requests(served, tmp_path):
    explorer, url = served
    files = shape_files(40, tmp_path)
    run_load(url, files[:8], clients=2, requests=4)  # warm-up: caches, allocator pools
    before = resident_mb()
    result = run_load(url, files, clients=4, requests=50, deadline_s=300)
    assert len(result.latencies) == 200 and result.wrong == []
    assert resident_mb() - before < 100
    assert len(explorer.cache) >= 40 and explorer.cache.bytes <= explorer.cache.budget_bytes  # every photo stays


def test_timing_neither_starves_nor_disturbs_classification(served, tmp_path):
    """New photos' labels get the model between the runs of a long timing, with unchanged answers."""
    import threading
    import time

    from PIL import Image

    explorer, _ = served
    images = [Image.open(path).convert("RGB").rotate(angle) for path, _ in shape_files(5, tmp_path)
              for angle in (7,)]  # not analysed by another test
    expected = [plain_top5(explorer, image) for image in images]
    timing = threading.Thread(target=explorer.time_paths, args=(images[0], 8, 30))
    runs = []  # per model run: was it the timing's?
    hook = explorer.model.register_forward_hook(lambda *args: runs.append(threading.current_thread() is timing))
    try:
        timing.start()
        while not runs:  # the timing has begun
            time.sleep(0.001)
        answers = [explorer.labels(image) for image in images]
        timing.join()
    finally:
        hook.remove()
    first_answer, last_answer = runs.index(False), len(runs) - 1 - runs[::-1].index(False)
    assert any(runs[last_answer:])  # the timing was still running after the fifth answer...
    assert runs[:first_answer] and all(runs[:first_answer])  # ...and had run before the first
    for answer, want in zip(answers, expected):
        assert [i for i, _, _ in answer] == [i for i, _, _ in want]
        assert [p for _, _, p in answer] == pytest.approx([p for _, _, p in want], abs=1e-5)
    assert explorer.model.attn_implementation == "sdpa"  # the timing put the model back as it found it


def test_two_timings_at_once_keep_each_run_on_one_path(served, tmp_path):
    """Every forward pass runs with all layers on the same attention path, whoever switched it."""
    import threading

    from PIL import Image

    explorer, _ = served
    image = Image.open(shape_files(1, tmp_path)[0][0]).convert("RGB")
    attention = [m for m in explorer.model.modules() if hasattr(m, "implementation")]
    seen = []
    hooks = [explorer.model.register_forward_pre_hook(lambda *args: seen.append({m.implementation for m in attention})),
             explorer.model.register_forward_hook(lambda *args: seen.append({m.implementation for m in attention}))]
    rows = {}
    try:
        timers = [threading.Thread(target=lambda b=b: rows.setdefault(b, explorer.time_paths(image, b, 10)))
                  for b in (1, 4)]
        for timer in timers:
            timer.start()
        for timer in timers:
            timer.join()
    finally:
        for hook in hooks:
            hook.remove()
    assert len(seen) == 2 * 2 * 2 * 11  # two timings x two paths x (1 warm-up + 10 runs), before and after
    assert all(len(paths) == 1 for paths in seen)  # never a model half on one path, half on the other
    assert {"eager"} in seen and {"sdpa"} in seen
    assert sorted(rows) == [1, 4] and all(row.batch == b and row.eager_ms > 0 and row.sdpa_ms > 0
                                          for b, row in rows.items())
    assert explorer.model.attn_implementation == "sdpa"


def test_a_burst_beyond_the_queue_bound_is_turned_away(tmp_path):
    """The same app with a queue of 2: a burst of 24 gets some answers, the rest a 'queue is full' error,
    never an unbounded wait; afterwards it serves as before."""
    import socket
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client, handle_file

    from app import build_demo, serve
    from explorer import Explorer

    explorer = Explorer("shapes")
    demo = build_demo(explorer)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve(demo, dict(default_concurrency_limit=1, max_size=2), prevent_thread_lock=True, server_name="127.0.0.1",
          server_port=port, quiet=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        files = shape_files(24, tmp_path)
        # httpx's default 5 s timeout (uploads, joins; the heartbeat's 20 s) is the client's, not the app's bound: on
        # a loaded machine a burst's upload may take longer, and the client would fail it itself
        clients = [Client(url, verbose=False, httpx_kwargs={"timeout": 120}) for _ in range(8)]

        def request(i):
            path, label = files[i]
            try:
                return next(iter(clients[i % 8].predict(handle_file(str(path)), api_name="/maps")["labels"])), label
            except Exception as error:  # noqa: BLE001 - the client raises its own error types
                return error, label

        with ThreadPoolExecutor(24) as pool:
            outcomes = list(pool.map(request, range(24)))
        errors = [f"{type(answer).__name__}: {answer}" for answer, _ in outcomes if isinstance(answer, Exception)]
        answered = [(answer, label) for answer, label in outcomes if not isinstance(answer, Exception)]
        assert errors and all("Queue is full" in error for error in errors), set(errors)
        assert answered and all(answer == label for answer, label in answered)
        assert explorer.cache.bytes <= explorer.cache.budget_bytes
        path, label = files[0]
        assert clients[0].predict(handle_file(str(path)), api_name="/classify")["label"] == label
    finally:
        demo.close()
