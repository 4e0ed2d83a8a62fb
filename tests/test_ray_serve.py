"""`python app.py --ray [ADDRESS] --replicas N`: the startup model's labels and passes on Ray Serve replicas give
the in-process path's answers; a Ray that is missing or cannot be reached leaves the app serving in-process; the
queue feeds several replicas at once while work on this process's model still runs one at a time.

One local Ray (2 CPUs, 2 replicas of the shapes model) serves the whole module, started by its first test that
needs it and stopped at the end; the tests that must find no Ray in this process come first."""

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from conftest import IMAGES, ROOT, missing
from helpers import assert_same_arithmetic, env_hiding
from PIL import Image

from explorer import Explorer, WorkQueue
from explorer.analysis import whole_pass
from explorer.work import Priority, Work

PHOTOS = [IMAGES / "shape_circle.png", IMAGES / "shape_star.png", IMAGES / "chelsea.png"]
FLOAT16_ROUNDING = 2 ** -12  # half a float16 step in [0.5, 1), where attention probabilities are largest
# Two processes' float32 attentions differ by their arithmetic too (another thread count, other kernels: 1e-5 as in
# helpers.assert_same_arithmetic) before the float16 rounding, which can then land a step apart.
FLOAT32_ARITHMETIC = 1e-5
LIMIT_S = 300  # a bound that turns a hang into a failure, never a timing


def photos() -> list[Image.Image]:
    return [Image.open(path).convert("RGB") for path in PHOTOS]


# ----------------------------------------------------------------------------- several workers, one local model

def test_local_work_runs_alone_while_a_served_models_work_runs_beside_it():
    """A queue with two workers: while local work holds this process's model, more urgent local work waits and
    work sent elsewhere (local=False) runs on the other worker; the waiting local work runs after."""
    queue = WorkQueue(workers=2)
    holding, release, order = threading.Event(), threading.Event(), []

    def held(works):
        order.append("first local starts")
        holding.set()
        release.wait(LIMIT_S)
        order.append("first local ends")
        return [None]

    def record(what):
        return lambda works: order.append(what) or [what]

    first = Work(Priority.LONG, held)
    queue.submit(first).future()
    assert holding.wait(LIMIT_S)
    second = queue.submit(Work(Priority.LABELS, record("second local")))
    served = queue.submit(Work(Priority.MAPS, record("served"), local=False))
    second_done, served_done = second.future(), served.future()
    assert served_done.result(LIMIT_S) == "served"  # ran beside the first local work...
    assert "second local" not in order  # ...though the second, more urgent, waited for the model
    release.set()
    assert second_done.result(LIMIT_S) == "second local"
    assert order == ["first local starts", "served", "first local ends", "second local"]


# ----------------------------------------------------------------- no Ray: the app says so and serves in-process

def test_without_ray_installed_the_app_imports_and_says_why_it_serves_in_process(tmp_path, monkeypatch, capsys):
    """Ray is an optional extra: app.py imports without it, and --ray then says in one line what to install."""
    hidden = subprocess.run([sys.executable, "-c", "import app, sys; assert 'ray' not in sys.modules"],
                            env=env_hiding(tmp_path, "ray"), cwd=ROOT, capture_output=True, text=True, check=False)
    assert hidden.returncode == 0, hidden.stderr[-2000:]

    import app

    explorer = Explorer("shapes")
    queue = explorer.queue
    monkeypatch.setitem(sys.modules, "explorer.ray_serve", None)  # `import` raises ImportError, as without Ray
    app.serve_on_ray(explorer, app.LOCAL_RAY, 2)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("app.py: --ray needs Ray Serve (pip install -e '.[ray]'): ")
    assert lines[0].endswith("; serving in-process")
    assert explorer.remote is None and explorer.queue is queue


def ray_serve():
    try:
        from explorer import ray_serve
    except ImportError:
        missing("Ray Serve is not installed (pip install -e '.[ray]')")
    return ray_serve


def test_a_bad_address_gives_one_line_and_the_app_serves_in_process(capsys):
    """Nothing listens at the address: one line on stderr at once (Ray itself would retry for minutes), and the
    explorer answers in-process."""
    ray_serve()
    import ray

    assert not ray.is_initialized()  # else serve_model would use that Ray and never look at the address
    import app

    explorer = Explorer("shapes")
    app.serve_on_ray(explorer, "127.0.0.1:1", 2)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("app.py: could not reach Ray at 127.0.0.1:1: "), lines
    assert lines[0].endswith("; serving in-process") and not ray.is_initialized()
    assert explorer.remote is None and explorer.queue.workers == 1
    assert explorer.labels(photos()[0])[0][1] == "circle"  # in-process


def test_an_address_that_is_not_host_and_port_gives_one_line(capsys):
    ray_serve()
    import app

    explorer = Explorer("shapes")
    app.serve_on_ray(explorer, "head-without-port", 2)
    assert capsys.readouterr().err.splitlines() == [
        ("app.py: could not reach Ray at head-without-port: expected HOST:PORT, ray://HOST:PORT or auto, got "
         "'head-without-port'; serving in-process")]
    assert explorer.remote is None


# ------------------------------------------------------------------------ a local Ray, 2 CPUs, 2 replicas

@pytest.fixture(scope="module")
def served():
    """Two replicas of the shapes model on a local Ray with 2 CPUs, for the whole module."""
    module = ray_serve()
    model = module.serve_model("shapes", replicas=2, num_cpus=2)
    try:
        yield model
    finally:
        model.close()


@pytest.fixture(scope="module")
def in_process():
    return Explorer("shapes")


def test_the_replicas_give_the_in_process_logits_to_concurrent_requests(served, in_process):
    """Labels requests from several threads at once (Ray Serve batches those that meet at a replica): each gets
    the logits of its own photos, as this process's model gives them."""
    pixels = torch.cat([in_process.pixels(photo) for photo in photos()])
    with torch.inference_mode():
        expected = in_process.model(pixels).logits
    assert_same_arithmetic(served.labels(pixels), expected)
    requests = [pixels[i:i + 1] for i in range(len(pixels))] * 3 + [pixels[:2], pixels[1:]]
    with ThreadPoolExecutor(len(requests)) as pool:
        answers = list(pool.map(served.labels, requests))
    for request, answer in zip(requests, answers):
        with torch.inference_mode():
            assert_same_arithmetic(answer, in_process.model(request).logits)


def test_a_replicas_whole_pass_is_the_in_process_one(served, in_process):
    """Logits, class, every map and the backbone's record as computed here (float32); the attentions float16,
    within float16's rounding of this process's."""
    for photo in photos():
        pixels = in_process.pixels(photo)
        (found, backbone), (local, local_backbone) = served.whole_pass(pixels), whole_pass(in_process.model, pixels)
        assert_same_arithmetic(found.logits, local.logits)
        assert torch.equal(found.class_index, local.class_index)
        assert found.maps.keys() == local.maps.keys()
        for name in local.maps:
            assert_same_arithmetic(found.maps[name], local.maps[name])
        assert_same_arithmetic(found.stage_cam, local.stage_cam)
        for remote_map, local_map in zip(backbone, local_backbone, strict=True):
            assert_same_arithmetic(remote_map, local_map)
        assert len(found.attentions) == len(local.attentions)
        for remote_layer, local_layer in zip(found.attentions, local.attentions):
            assert remote_layer.dtype == torch.float16
            torch.testing.assert_close(remote_layer.float(), local_layer, rtol=0,
                                       atol=FLOAT16_ROUNDING + FLOAT32_ARITHMETIC)


def test_the_explorer_on_ray_answers_as_the_in_process_one(served, in_process):
    """The page's Explorer with the replicas as its remote, several photos at once from several sessions: the same
    labels, maps, backbone record and stored attention as in-process; another class's map (computed in this
    process) too."""
    explorer = Explorer("shapes", queue=WorkQueue(workers=3))
    explorer.remote = served
    forwards = []
    explorer.model.vit.embeddings.register_forward_hook(lambda module, args, output: forwards.append(len(output)))
    images = photos()
    with ThreadPoolExecutor(len(images)) as pool:
        labels = list(pool.map(lambda i: explorer.labels(images[i], f"student{i}"), range(len(images))))
        analyses = list(pool.map(lambda i: explorer.analysis(images[i], f"student{i}"), range(len(images))))
    assert forwards == []  # every label and pass came from the replicas
    for image, top, analysis in zip(images, labels, analyses):
        expected = in_process.analysis(image)
        assert [i for i, _, _ in top] == [i for i, _, _ in analysis.top] == [i for i, _, _ in expected.top]
        assert [p for _, _, p in analysis.top] == pytest.approx([p for _, _, p in expected.top], abs=1e-5)
        for name in expected.maps:
            assert_same_arithmetic(analysis.maps[name], expected.maps[name])
        for remote_map, local_map in zip(analysis.backbone, expected.backbone, strict=True):
            assert_same_arithmetic(remote_map, local_map)
        for layer in range(len(expected.attentions)):  # both stored as float16
            torch.testing.assert_close(analysis.attentions[layer], expected.attentions[layer], rtol=0,
                                       atol=2 * FLOAT16_ROUNDING + FLOAT32_ARITHMETIC)
        other = analysis.top[1][0]
        assert_same_arithmetic(explorer.class_map(image, other), in_process.class_map(image, other))
    assert forwards  # that other class's map ran here


def test_main_serves_the_startup_model_on_ray(served, monkeypatch):
    """app.serve_on_ray, as main() calls it for --ray: the startup model, by name and dtype, on a local Ray; the
    explorer gets the replicas as its remote and a queue with a worker per replica and one for this process's
    model; they are removed when the app exits. (Deployed once for the module: serve_model hands that back.)"""
    import app

    asked, at_exit = [], []
    monkeypatch.setattr(ray_serve(), "serve_model", lambda *args: asked.append(args) or served)
    monkeypatch.setattr("atexit.register", at_exit.append)  # the module's fixture stops this Ray
    explorer = Explorer("shapes")
    app.serve_on_ray(explorer, app.LOCAL_RAY, 2)
    assert asked == [("shapes", 2, torch.float32, None)] and at_exit == [served.close]
    assert explorer.remote is served and explorer.queue.workers == 3
    assert explorer.labels(photos()[1])[0][1] == "star"


def test_replicas_must_be_at_least_one(capsys):
    import app

    with pytest.raises(SystemExit) as exited:
        app.parse_args(["--ray", "--replicas", "0"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == "app.py: --replicas must be at least 1, got 0\n"
