"""The app served on loopback with the shipped shapes model: its API, a real browser, the fallback banner."""

import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from gradio_client import handle_file

from conftest import ROOT, SAMPLE_PHOTOS, free_port
from helpers import malformed_exif_jpeg
from oracle.cases import PIL_MODES, mode_images
from vithybrid.training.shapes import CLASSES, sample


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """The Hub unreachable and its cache empty, whatever the machine: Hub ids fail at once."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))


def test_api_lists_classify_and_maps(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/classify", "/maps"} <= set(endpoints)


def test_the_api_keeps_its_single_image_signatures(client):
    """The Model dropdown is the UI's: the API still takes one image and answers with the startup model."""
    api = client.view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) == {"/classify", "/maps"} and not api["unnamed_endpoints"]
    for name, returns in (("/classify", "Label"), ("/maps", "Json")):
        endpoint = api["named_endpoints"][name]
        assert [(p["parameter_name"], p["component"], p["parameter_has_default"]) for p in endpoint["parameters"]] \
            == [("path", "Image", False)]
        assert [r["component"] for r in endpoint["returns"]] == [returns]


def test_the_model_dropdown_offers_the_startup_model_first_then_the_supported_ones(app_url, explorer, tiny_folder):
    from ui.header import model_choices
    from vithybrid.checkpoints.timm_format import SUPPORTED_CHECKPOINTS

    assert model_choices("google/vit-hybrid-base-bit-384") == [*SUPPORTED_CHECKPOINTS, "shapes"]
    assert model_choices("shapes", ["/x", "shapes"]) == ["shapes", *SUPPORTED_CHECKPOINTS, "/x"]
    with urllib.request.urlopen(app_url + "config", timeout=30) as response:
        components = json.load(response)["components"]
    dropdown = next(c["props"] for c in components if c.get("props", {}).get("elem_id") == "model")
    assert [choice[1] for choice in dropdown["choices"]] == ["shapes", *SUPPORTED_CHECKPOINTS, str(tiny_folder)]
    assert dropdown["value"] == explorer.name == "shapes"


class FakeLoader:
    """Stands in for loading a model: counts loads, takes `delay` seconds, fails for names starting 'bad',
    and loads names starting 'slow' only once `gate` is set (a download in progress)."""

    def __init__(self, delay: float = 0.0):
        self.delay, self.calls, self.gate = delay, [], threading.Event()

    def __call__(self, name):
        from types import SimpleNamespace

        from vithybrid import CheckpointError

        self.calls.append(name)
        time.sleep(self.delay)
        if name.startswith("slow"):
            assert self.gate.wait(timeout=60), "the test never let the download finish"
        if name.startswith("bad"):
            raise CheckpointError(f"{name} cannot be loaded")
        return SimpleNamespace(name=name)


def test_the_shelf_drops_the_least_recently_used_model_but_never_the_startup_one(explorer):
    from explorer import ModelShelf

    loader = FakeLoader()
    shelf = ModelShelf(explorer, max_loaded=3, loader=loader)
    a, b = shelf.get("a"), shelf.get("b")
    assert shelf.get("a") is a and loader.calls == ["a", "b"]  # on the shelf: not loaded again
    assert shelf.loaded == ["shapes", "b", "a"]
    shelf.get("c")  # one too many: "b" goes; "shapes" is used least recently but stays
    assert shelf.loaded == ["shapes", "a", "c"]
    assert shelf.get("shapes") is explorer and shelf.get("a") is a
    shelf.get("d")
    assert shelf.loaded == ["shapes", "a", "d"] and len(shelf.loaded) == shelf.max_loaded
    assert shelf.get("b") is not b and loader.calls == ["a", "b", "c", "d", "b"]  # dropped, so loaded again
    with pytest.raises(ValueError, match="at least 2"):
        ModelShelf(explorer, max_loaded=1)


def test_the_shelf_loads_a_model_once_for_sessions_asking_at_the_same_time(explorer):
    from concurrent.futures import ThreadPoolExecutor

    from explorer import ModelShelf

    loader = FakeLoader(delay=0.5)
    shelf = ModelShelf(explorer, loader=loader)
    start, progress = threading.Barrier(8), []

    def ask(_):
        start.wait()
        return shelf.get("x", on_load=lambda: progress.append(1))

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(ask, range(8)))
    assert loader.calls == ["x"] and all(g is got[0] for g in got)
    assert 1 <= len(progress) <= 8  # those that found it missing were told it loads
    progress.clear()
    shelf.get("x", on_load=lambda: progress.append(1))
    assert progress == []  # no progress for a model on the shelf

    slow = threading.Thread(target=shelf.get, args=("slow-y",))  # a download that goes on...
    slow.start()
    try:
        for _ in range(3000):  # up to 30 s for the slow load to begin (a guard against hanging, not a bound)
            if loader.calls == ["x", "slow-y"]:
                break
            time.sleep(0.01)
        assert loader.calls == ["x", "slow-y"]
        meanwhile = []
        other = threading.Thread(target=lambda: meanwhile.extend([shelf.get("shapes"), shelf.get("x")]))
        other.start()
        other.join(timeout=30)
        assert not other.is_alive() and meanwhile == [explorer, got[0]]  # ...until these were answered
    finally:
        loader.gate.set()
        slow.join()
    assert shelf.loaded == ["shapes", "slow-y"]  # max_loaded=2: "x" made room


def test_a_model_that_fails_to_load_leaves_the_shelf_as_it_was(explorer):
    from explorer import ModelShelf
    from vithybrid import CheckpointError

    loader = FakeLoader()
    shelf = ModelShelf(explorer, loader=loader)
    shelf.get("a")
    for _ in range(2):  # a failure is not remembered: the next request tries again (the network may be back)
        with pytest.raises(CheckpointError, match="bad-model cannot be loaded"):
            shelf.get("bad-model")
    assert loader.calls == ["a", "bad-model", "bad-model"] and shelf.loaded == ["shapes", "a"]


def test_the_shelf_loads_real_checkpoints_like_the_startup_model_and_never_falls_back(explorer, tiny_folder,
                                                                                     offline_hub):
    from explorer import ModelShelf
    from vithybrid import CheckpointError

    shelf = ModelShelf(explorer)
    tiny = shelf.get(str(tiny_folder))
    assert tiny.name == str(tiny_folder) and tiny.model.config.num_hidden_layers == 2 and tiny.grid == (4, 4)
    assert (tiny.device, tiny.dtype, tiny.speed, tiny.cache_mb) == (explorer.device, explorer.dtype, explorer.speed,
                                                                    explorer.cache_mb)
    assert shelf.get(str(tiny_folder)) is tiny
    began = time.perf_counter()
    with pytest.raises(CheckpointError, match="Could not download config.json"):  # not the shapes fallback
        shelf.get("timm/vit_tiny_r_s16_p8_224.augreg_in21k_ft_in1k")
    assert time.perf_counter() - began < 10
    assert shelf.loaded == ["shapes", str(tiny_folder)]


def test_classify_returns_sorted_top5_and_the_right_shape(client, shape_files):
    for path, label in shape_files:
        result = client.predict(handle_file(str(path)), api_name="/classify")
        confidences = [c["confidence"] for c in result["confidences"]]
        assert len(confidences) == 5 and {c["label"] for c in result["confidences"]} == set(CLASSES)
        assert confidences == sorted(confidences, reverse=True) and sum(confidences) <= 1 + 1e-6
        assert result["label"] == label


def test_maps_have_the_grid_size(client, shape_files):
    from vithybrid import ViTHybridConfig
    from vithybrid.checkpoints.shipped import resolve_model

    rows, cols = ViTHybridConfig.from_pretrained(resolve_model("shapes")).grid_size
    result = client.predict(handle_file(str(shape_files[0][0])), api_name="/maps")
    assert result["grid"] == [rows, cols]
    for name in ("rollout", "class_map", "last_layer_cls_attention"):
        assert len(result[name]) == rows and all(len(row) == cols for row in result[name])
    assert max(map(max, result["last_layer_cls_attention"])) > 0
    assert list(result["labels"])[0] == shape_files[0][1]


def test_classify_without_image_says_so(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="Upload a photo first"):
        client.predict(None, api_name="/classify")


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"just some notes, not a picture", "is not an image that can be read"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "is not an image that can be read"),
    (malformed_exif_jpeg(), "is truncated or corrupt and cannot be read"),  # issue 26: was a traceback
])
def test_bad_files_get_a_message_and_the_app_keeps_serving(client, tmp_path, shape_files, content, message, capfd):
    from gradio_client.exceptions import AppError

    bad = tmp_path / "upload.png"
    bad.write_bytes(content)
    capfd.readouterr()
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(str(bad)), api_name="/classify")
    assert "Traceback" not in capfd.readouterr().err  # a user's mistake: one log line, no traceback (item 7)
    assert client.predict(handle_file(str(shape_files[0][0])), api_name="/classify")["label"] == shape_files[0][1]


def encoded(fmt: str, size=(160, 120), **options) -> bytes:
    import io

    from oracle.cases import gradient_image

    buffer = io.BytesIO()
    gradient_image(*size).save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("name, content, message", [
    ("cut.jpg", encoded("JPEG")[:2000], "is truncated or corrupt"),
    ("huge.png", None, "megapixels"),
])
def test_damaged_files_and_bombs_through_the_api(client, tmp_path, name, content, message):
    import zlib

    from gradio_client.exceptions import AppError

    if content is None:  # a PNG whose header claims 100000 x 100000 pixels
        data = bytearray(encoded("PNG"))
        data[16:24] = (100_000).to_bytes(4, "big") * 2
        data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
        content = bytes(data)
    (tmp_path / name).write_bytes(content)
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(str(tmp_path / name)), api_name="/classify")


@pytest.mark.parametrize("fmt, suffix", [("WEBP", "webp"), ("BMP", "bmp"), ("GIF", "gif"), ("TIFF", "tiff"),
                                         ("ICO", "ico")])
def test_every_accepted_format_gets_labels(client, tmp_path, fmt, suffix):
    path = tmp_path / f"photo.{suffix}"
    path.write_bytes(encoded(fmt, size=(64, 64)))
    result = client.predict(handle_file(str(path)), api_name="/classify")
    assert len(result["confidences"]) == 5


@pytest.mark.parametrize("mode", PIL_MODES)
def test_every_pil_mode_gets_labels(client, tmp_path, mode):
    path = tmp_path / "photo.tiff"
    mode_images()[mode].save(path)
    result = client.predict(handle_file(str(path)), api_name="/classify")
    assert len(result["confidences"]) == 5


@pytest.mark.parametrize("target", ["/etc/passwd", str(ROOT / ".git" / "config"), str(ROOT / "app.py")])
def test_the_file_route_serves_nothing_outside_examples_and_uploads(app_url, target):
    import httpx

    with (ROOT / "examples" / "shape_star.png").open("rb") as file:  # the route itself works for uploads...
        uploaded = httpx.post(app_url + "gradio_api/upload", files={"files": file}, timeout=30).json()[0]
    assert httpx.get(app_url + f"gradio_api/file={uploaded}", timeout=30).status_code == 200
    for route in (f"gradio_api/file={target}", f"file={target}"):  # ...and refuses everything else
        response = httpx.get(app_url + route, timeout=30)
        assert response.status_code in (403, 404), (route, response.status_code)
        assert "root:" not in response.text and "[core]" not in response.text


def test_uploads_above_the_size_limit_are_refused(app_url, tmp_path):
    import httpx

    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + bytes(21 * 1024 * 1024))
    with big.open("rb") as file:
        response = httpx.post(app_url + "gradio_api/upload", files={"files": file}, timeout=60)
    assert response.status_code == 413


def test_a_request_of_many_files_under_the_file_limit_is_refused_whole(app_url, explorer):
    """Issue 26: the 20 MB limit was per file, so one request with 5 x 19 MB was accepted (and kept). The whole
    request is bounded now, with or without a Content-Length; a photo at the file limit still goes through; and
    uploads are deleted on a schedule."""
    import httpx

    from app import build_demo
    from ui import uploads

    part = bytes(15 * 2**20)  # under the per-file limit; two are over the request's
    files = [("files", (f"photo{i}.png", b"\x89PNG" + part, "image/png")) for i in range(2)]
    response = httpx.post(app_url + "gradio_api/upload", files=files, timeout=60)
    assert response.status_code == 413 and "Request too large" in response.text

    def chunks():  # no Content-Length: a chunked body, counted as it arrives
        yield b"--x\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\n\r\n"
        for _ in range(30):
            yield bytes(2**20)
    response = httpx.post(app_url + "gradio_api/upload", content=chunks(), timeout=60,
                          headers={"content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 413
    one = httpx.post(app_url + "gradio_api/upload", files=files[:1], timeout=60)
    assert one.status_code == 200 and len(one.json()) == 1  # one photo under the limit: accepted
    assert uploads.MAX_REQUEST_BYTES < 2 * len(part) and build_demo(explorer).delete_cache == uploads.DELETE_CACHE


def test_the_upload_hook_hands_on_saved_uploads_one_at_a_time_and_never_fails_one():
    """ui.uploads.UploadHook on a bare app: the paths of an upload the route answered go to on_upload, on another
    thread; other routes and refused uploads do not; an upload that comes while on_upload runs is not handed on;
    what on_upload raises is logged, the upload answered all the same."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from starlette.middleware import Middleware
    from starlette.testclient import TestClient

    from ui.uploads import UploadHook

    handed, running, release = [], threading.Event(), threading.Event()

    def on_upload(paths):
        handed.append(paths)
        running.set()
        release.wait(30)
        if paths == ["bad"]:
            raise RuntimeError("a bug of the page's")

    app = FastAPI(middleware=[Middleware(UploadHook, on_upload=on_upload)])
    app.post("/gradio_api/upload")(lambda name: JSONResponse([name], status_code=413 if name == "big" else 200))
    app.post("/gradio_api/other")(lambda name: [name])
    with TestClient(app) as http:
        assert http.post("/gradio_api/other?name=a").json() == ["a"]
        assert http.post("/gradio_api/upload?name=big").status_code == 413
        assert http.post("/gradio_api/upload?name=c").json() == ["c"]
        assert running.wait(30) and handed == [["c"]]
        assert http.post("/gradio_api/upload?name=d").json() == ["d"]  # while c's runs: not handed on
        release.set()
        for name in ("bad", "e"):  # bad's raises, and the next upload is handed on all the same
            deadline = time.monotonic() + 30
            while [name] not in handed:  # until the one before has finished
                assert http.post(f"/gradio_api/upload?name={name}").status_code == 200
                assert time.monotonic() < deadline, f"{name} never handed on"
                time.sleep(0.05)
        assert handed[0] == ["c"] and ["d"] not in handed


def test_an_upload_starts_its_photos_pass_before_any_event(tmp_path):
    """The app hands each upload to the page (Page.prefetch): with the startup model idle and alone on the shelf, the
    photo's pass runs once, with no event asked, and its analysis is cached for the event; a file that is not a
    photo is never forwarded, and the page serves on."""
    import httpx

    from app import build_demo, serve
    from explorer import Explorer, WorkQueue

    explorer = Explorer("shapes", queue=WorkQueue())  # a queue of its own: idle but for this test's uploads
    sizes = []
    explorer.model.vit.embeddings.register_forward_hook(lambda module, args, output: sizes.append(len(output)))
    demo = build_demo(explorer)
    port = free_port()
    serve(demo, prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        url = f"http://127.0.0.1:{port}/gradio_api/upload"
        not_a_photo = tmp_path / "notes.png"
        not_a_photo.write_text("not an image")
        with not_a_photo.open("rb") as file:
            assert httpx.post(url, files={"files": file}, timeout=30).status_code == 200
        deadline = time.monotonic() + 60
        while not len(explorer.cache):  # uploaded again while the hook still reads the last upload: not handed on
            with (ROOT / "examples" / "shape_star.png").open("rb") as file:
                assert httpx.post(url, files={"files": file}, timeout=30).status_code == 200
            assert time.monotonic() < deadline, "the upload's photo was never analysed"
            time.sleep(0.2)
        while not explorer.queue.idle:  # the pass's run ends just after its analysis is stored
            assert time.monotonic() < deadline, "the upload's pass never ended"
            time.sleep(0.01)
        assert sizes == [1] and explorer.held_graph_bytes == 0
    finally:
        demo.close()


def test_the_served_queue_polls_less_often_and_answers():
    """serve() has Gradio's queue look for events every 10 ms and for progress every 50 ms, or less often
    (app.QUEUE_POLL_S: the attributes still exist in this Gradio, or the setting would be skipped; that the queue
    still reads them, and reads them afresh, only Gradio's source says), and an event is answered."""
    import platform

    import gradio as gr
    from gradio_client import Client

    from app import QUEUE_POLL_S, serve

    with gr.Blocks() as demo:
        number, doubled = gr.Number(), gr.Number()
        gr.Button().click(lambda x: 2 * x, number, doubled, api_name="double")
    port = free_port()
    serve(demo, prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        polls = {name: getattr(demo._queue, name) for name in QUEUE_POLL_S}
        assert polls == QUEUE_POLL_S or platform.system() == "Windows"  # where Gradio polls less often already
        assert all(polls[name] >= seconds for name, seconds in QUEUE_POLL_S.items())
        assert Client(f"http://127.0.0.1:{port}/", verbose=False).predict(21, api_name="/double") == 42
    finally:
        demo.close()


def test_in_a_real_browser(app_url, explorer, browser, shape_files):
    from playwright.sync_api import expect

    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(app_url)
    page.locator("#inp input[type=file]").set_input_files(str(SAMPLE_PHOTOS[1]))
    expect(page.locator("#inp img")).to_be_visible(timeout=30_000)
    expect(page.locator("#labels")).to_contain_text("%", timeout=30_000)
    rollout = page.locator("#rollout img")
    expect(rollout).to_be_visible(timeout=30_000)
    before = rollout.get_attribute("src")

    model_runs = []
    hook = explorer.model.register_forward_hook(lambda *args: model_runs.append(1))
    opacity = page.locator("#alpha input[type=number]")
    opacity.fill("0.9")
    opacity.press("Enter")
    expect(rollout).not_to_have_attribute("src", before, timeout=30_000)  # re-rendered...
    page.get_by_text("max", exact=True).click()
    page.wait_for_timeout(1500)
    assert model_runs == []  # ...from the cached maps, without running the model again

    page.get_by_role("tab", name="Token explorer").click()
    grid = page.locator("#token-grid img")
    expect(grid).to_be_visible(timeout=30_000)
    expect(page.locator("#token-text")).to_contain_text("Token 1 ", timeout=30_000)
    expect(page.locator("#token-text")).to_contain_text("Showing layer 4, all heads (max)")  # what the maps show
    # The picture is letterboxed inside its element: click at 97% of the picture itself (the last token).
    x, y = grid.evaluate("""img => {
        const r = img.getBoundingClientRect(), s = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);
        const w = img.naturalWidth * s, h = img.naturalHeight * s;
        return [(r.width - w) / 2 + 0.97 * w, (r.height - h) / 2 + 0.97 * h]; }""")
    grid.click(position={"x": x, "y": y})
    tokens = page.locator("#token-text")
    expect(tokens).not_to_contain_text("Token 1 ", timeout=30_000)
    last = int(tokens.inner_text().split("of ")[1].split(":")[0])
    expect(tokens).to_contain_text(f"Token {last} of {last}", timeout=30_000)

    page.get_by_role("tab", name="Eager vs SDPA timing").click()
    page.locator("#run-timing").click()
    expect(page.locator("#timing-info")).to_contain_text("Largest logit difference", timeout=120_000)
    expect(page.locator("#timing-info")).to_contain_text("On a CPU the two are close")
    table = page.locator("#timing")
    expect(table).to_contain_text("x", timeout=30_000)
    assert len(re.findall(r"\d+\.\d\dx", table.inner_text())) == 2  # a speed-up for batch 1 and for batch 2
    page.locator("#language").get_by_text("العربية", exact=True).click()  # the timings stay, under Arabic headers
    expect(table).to_contain_text("الدفعة", timeout=30_000)
    assert len(re.findall(r"\d+\.\d\dx", table.inner_text())) == 2
    page.locator("#language").get_by_text("English", exact=True).click()
    expect(page.get_by_role("tab", name="Rollout")).to_be_visible(timeout=30_000)

    # The README's screenshot: a shape example at the default opacity.
    opacity.fill("0.5")
    opacity.press("Enter")
    page.get_by_text("mean", exact=True).click()
    page.get_by_role("tab", name="Rollout").click()
    page.locator("#inp input[type=file]").set_input_files(str(ROOT / "examples" / "shape_star.png"))
    expect(page.locator("#labels")).to_contain_text("star", timeout=30_000)
    expect(rollout).not_to_have_attribute("src", rollout.get_attribute("src"), timeout=30_000)
    page.wait_for_timeout(1000)
    hook.remove()
    assert model_runs  # the hook does see the model run (timing, the new photo), so the check above means it
    shot = os.environ.get("VITHYBRID_SCREENSHOT", str(Path(tempfile.gettempdir()) / "vithybrid-app.png"))
    page.screenshot(path=shot, full_page=True)
    assert Path(shot).stat().st_size > 10_000
    assert not errors, errors
    page.close()


def test_a_new_photo_or_a_shared_control_redraws_the_open_tab_at_once_and_a_closed_one_when_opened(app_url, explorer,
                                                                                                     browser,
                                                                                                     monkeypatch):
    """A new photo's check and labels are one event. The colour map, the opacity and the head fusion have one change
    event each (not one per tab that uses them); a closed tab the change concerns is drawn again when it is opened,
    and only then; so is a closed tab after a new photo, the page's first one too (no class map asked for by the
    closed class map and lab tabs); a tab's opening draws it once."""
    import gradio as gr
    from playwright.sync_api import expect

    from app import build_demo

    demo = build_demo(explorer)
    for elem_id in ("cmap", "alpha", "fusion"):
        control = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == elem_id)
        assert sum((control._id, "change") in fn.targets for fn in demo.fns.values()) == 1, elem_id
    # The States through which a photo's labels start a tab's drawing sit outside the tabs: one inside a closed tab
    # fires its change on the first output it is given, even gr.skip(), and would draw that tab (checked below too)
    changes = {block for fn in demo.fns.values() for block, event in fn.targets if event == "change"}
    dues = [block for fn in demo.fns.values() if fn.name == "checked_and_labelled" for block in fn.outputs
            if isinstance(block, gr.State) and block._id in changes]
    assert dues and not any(isinstance(ancestor, gr.Tab) for due in dues for ancestor in ancestors(due))
    # A new photo's check, its labels and its open tab's cue are one event (a round trip each, before): a photo
    # that comes while one's labels are computed is answered after them, not dropped
    photo = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "inp")
    first = [fn for fn in demo.fns.values() if (photo._id, "change") in fn.targets]
    assert [fn.name for fn in first] == ["checked_and_labelled"] and first[0].trigger_mode == "always_last"
    assert inspect.isgeneratorfunction(first[0].fn)  # the check's note and clearing sent before the labels
    assert "labels" in [getattr(block, "elem_id", None) for block in first[0].outputs]

    asked, class_map_of = [], explorer.class_map
    monkeypatch.setattr(explorer, "class_map", lambda *args: asked.append(args) or class_map_of(*args))
    page = browser.new_page()
    page.goto(app_url)
    page.locator("#inp input[type=file]").set_input_files(str(ROOT / "examples" / "shape_circle.png"))
    rollout, class_map = page.locator("#rollout img"), page.locator("#class-map img")
    expect(rollout).to_be_visible(timeout=30_000)
    page.wait_for_timeout(1000)  # room for a wrong drawing of a closed tab to arrive
    assert not asked
    page.get_by_role("tab", name="Class map").click()
    expect(class_map).to_be_visible(timeout=30_000)
    page.wait_for_timeout(1000)  # the photo's other pictures
    drawn = class_map.get_attribute("src")
    page.get_by_role("tab", name="Rollout").click()
    before = rollout.get_attribute("src")
    opacity = page.locator("#alpha input[type=number]")
    opacity.fill("0.8")
    opacity.press("Enter")
    expect(rollout).not_to_have_attribute("src", before, timeout=30_000)
    page.wait_for_timeout(1000)  # room for a wrong redraw of the closed tab to arrive (never a false failure)
    assert class_map.get_attribute("src") == drawn  # closed: not drawn yet
    page.get_by_role("tab", name="Class map").click()
    expect(class_map).not_to_have_attribute("src", drawn, timeout=30_000)  # drawn on opening
    # A new photo with the class map closed: drawn when opened, not before; its labels asked for once (the Image
    # sends `change` twice when a photo replaces another)
    drawn = class_map.get_attribute("src")
    page.get_by_role("tab", name="Rollout").click()
    before = rollout.get_attribute("src")
    labelled, labels_of = [], explorer.labels
    monkeypatch.setattr(explorer, "labels", lambda *args: labelled.append(args) or labels_of(*args))
    page.locator("#inp input[type=file]").set_input_files(str(ROOT / "examples" / "shape_star.png"))
    expect(rollout).not_to_have_attribute("src", before, timeout=30_000)
    page.wait_for_timeout(1000)  # room for a wrong drawing of the closed tab, or a second labelling, to arrive
    assert class_map.get_attribute("src") == drawn
    assert len(labelled) == 1
    page.get_by_role("tab", name="Class map").click()
    expect(class_map).not_to_have_attribute("src", drawn, timeout=30_000)
    # The lab drawn once on its first opening (one agreement computed), and its picture (its hook reads the event's
    # request) redrawn by a change while its tab is open
    agreements, agreement_of = [], explorer.agreement
    monkeypatch.setattr(explorer, "agreement", lambda *args: agreements.append(args) or agreement_of(*args))
    page.get_by_role("tab", name="Explanation lab").click()
    cam = page.locator("#lab-cam img")
    expect(cam).to_be_visible(timeout=60_000)
    page.wait_for_timeout(1000)
    assert len(agreements) == 1
    drawn = cam.get_attribute("src")
    opacity.fill("0.6")
    opacity.press("Enter")
    expect(cam).not_to_have_attribute("src", drawn, timeout=30_000)
    page.close()


def test_pictures_asking_for_the_same_photo_at_once_share_one_analysis(explorer):
    """After a model switch several pictures of one photo ask for its analysis together: the model runs once."""
    from concurrent.futures import ThreadPoolExecutor

    image = sample(seed=77, index=3, size=150).image
    start, runs = threading.Barrier(6), []
    hook = explorer.model.register_forward_hook(lambda *args: runs.append(1))
    try:
        with ThreadPoolExecutor(6) as pool:
            analyses = list(pool.map(lambda _: (start.wait(), explorer.analysis(image))[1], range(6)))
    finally:
        hook.remove()
    assert len(runs) == 1 and all(a is analyses[0] for a in analyses)
    assert explorer.cache.pending == 0  # nothing left behind


def test_switching_models_in_a_real_browser(app_url, browser, client, tiny_folder, offline_hub, shape_files,
                                            monkeypatch):
    """A second model takes over every panel of this session only; a model that cannot load says why, the
    dropdown returns to the loaded model, and the app keeps answering."""
    from playwright.sync_api import expect

    from explorer import Explorer
    from vithybrid.images import load_image

    def choose(page, name):
        page.locator("#model input").click()
        page.get_by_role("option", name=name, exact=True).click()

    def tab(page, name):
        page.get_by_role("tab", name=name).click()

    tiny, star = str(tiny_folder), str(ROOT / "examples" / "shape_star.png")
    page, other = browser.new_page(), browser.new_page()
    errors = []
    for session in (page, other):
        session.on("pageerror", lambda error: errors.append(str(error)))
        session.goto(app_url)
    labels, slider = page.locator("#labels"), page.locator("#layer input[type=range]")
    page.locator("#inp input[type=file]").set_input_files(star)
    expect(labels).to_contain_text("star", timeout=30_000)
    rollout = page.locator("#rollout img")
    expect(rollout).to_be_visible(timeout=30_000)
    before = rollout.get_attribute("src")
    tab(page, "Class map")
    class_map = page.locator("#class-map img")
    expect(class_map).to_be_visible(timeout=30_000)
    class_map_before = class_map.get_attribute("src")
    tab(page, "Raw attention")
    expect(slider).to_have_attribute("max", "4")
    # The lab open on a class that is not the new model's top class: after the switch, the lab computes maps for
    # the new model's top class only (never for the class picked under the previous model).
    tiny_top = Explorer(tiny).analysis(load_image(star)).top[0][0]
    tab(page, "Explanation lab")
    expect(page.locator("#lab-cam img")).to_be_visible(timeout=60_000)
    page.locator("#lab-class input").click()
    page.get_by_role("option", name=re.compile(CLASSES[(tiny_top + 1) % len(CLASSES)])).click()
    expect(page.locator("#lab-class input")).to_have_value(re.compile(CLASSES[(tiny_top + 1) % len(CLASSES)]))
    cams = []  # (model, class) of every CAM computed from here on
    real_cam = Explorer.backbone_cam

    def recorded_cam(self, image, class_index, *args, **kwargs):
        cam = real_cam(self, image, class_index, *args, **kwargs)
        cams.append((self.name, class_index))  # once computed
        return cam

    monkeypatch.setattr(Explorer, "backbone_cam", recorded_cam)
    tab(page, "Raw attention")

    choose(page, tiny)
    expect(labels).to_contain_text("LABEL_", timeout=30_000)  # the photo classified again, by the new model
    expect(labels).not_to_contain_text("star")
    expect(page.locator("#intro")).to_contain_text(f"Model: {tiny}.")
    expect(slider).to_have_attribute("max", "2", timeout=30_000)
    expect(slider).to_have_value("2")
    expect(page.locator("#raw img")).to_be_visible(timeout=30_000)
    page.locator("#head input").click()
    expect(page.get_by_role("option")).to_have_count(3)
    assert [option.get_attribute("aria-label") for option in page.get_by_role("option").all()] == ["all", "1", "2"]
    page.keyboard.press("Escape")
    tab(page, "Class map")
    expect(page.locator("#class-index input")).to_have_value(re.compile(r"^LABEL_\d \(\d+\.\d%\)$"), timeout=30_000)
    expect(class_map).not_to_have_attribute("src", class_map_before, timeout=30_000)  # the new model's map
    top_class_map = class_map.get_attribute("src")
    page.locator("#class-index input").click()
    page.get_by_role("option").nth(1).click()  # another class: its own map
    expect(class_map).not_to_have_attribute("src", top_class_map, timeout=30_000)
    tab(page, "Token explorer")
    expect(page.locator("#token-text")).to_contain_text("Token 1 of 16:", timeout=30_000)
    tab(page, "How hybrid tokens work")
    expect(page.locator("#how")).to_contain_text("17 tokens in all", timeout=30_000)
    expect(page.locator("#how")).to_contain_text("2 transformer layers, each with 2 attention heads")
    expect(page.locator("#how")).to_contain_text(tiny)
    expect(page.locator("#how")).to_contain_text("4x4 map with 128 channels")
    tab(page, "Explanation lab")
    expect(page.locator("#lab-class input")).to_have_value(re.compile(rf"^LABEL_{tiny_top} "), timeout=30_000)
    # The picture shown may still be the previous model's (no model's CAM is cleared before the next is drawn): wait
    # for the new model's CAM itself to be computed.
    deadline = time.monotonic() + 60
    while not any(cam[0] == tiny for cam in cams):
        assert time.monotonic() < deadline, f"the new model's CAM was never computed: {cams}"
        page.wait_for_timeout(100)
    expect(page.locator("#lab-cam img")).to_be_visible(timeout=60_000)
    assert {cam for cam in cams if cam[0] == tiny} == {(tiny, tiny_top)}, cams  # (shapes' may still be landing)
    tab(page, "Eager vs SDPA timing")
    page.locator("#run-timing").click()
    expect(page.locator("#timing-info")).to_contain_text(f"{tiny}: ", timeout=60_000)  # timed the chosen model
    tab(page, "Rollout")
    expect(rollout).not_to_have_attribute("src", before, timeout=30_000)  # every picture re-rendered

    other.locator("#inp input[type=file]").set_input_files(star)  # another session keeps the startup model
    expect(other.locator("#labels")).to_contain_text("star", timeout=30_000)
    expect(other.locator("#intro")).to_contain_text("Model: shapes.")

    hub_id = "timm/vit_tiny_r_s16_p8_224.augreg_in21k_ft_in1k"  # offline here, and not in the (empty) cache
    choose(page, hub_id)
    expect(page.locator("[data-testid=toast-body]")).to_contain_text(
        f"Could not download config.json of '{hub_id}' from the Hugging Face Hub", timeout=30_000)
    expect(page.locator("#model input")).to_have_value(tiny, timeout=30_000)
    expect(page.locator("#intro")).to_contain_text(f"Model: {tiny}.")
    expect(labels).to_contain_text("LABEL_")

    choose(page, "shapes")  # the session still works, and so does the API
    expect(labels).to_contain_text("star", timeout=30_000)
    tab(page, "Raw attention")
    expect(slider).to_have_attribute("max", "4", timeout=30_000)
    path, label = shape_files[0]
    assert client.predict(handle_file(str(path)), api_name="/classify")["label"] == label
    assert not errors, errors
    page.close()
    other.close()


def test_falls_back_to_shapes_with_a_banner_when_the_hub_is_unreachable(tmp_path):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path), "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, config = time.time() + 120, None
        while time.time() < deadline and config is None:
            assert server.poll() is None, server.stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as response:
                    config = json.load(response)
            except OSError:
                time.sleep(0.5)
        assert config is not None, "the app did not start"
        texts = [c.get("props", {}).get("value") for c in config["components"]]
        banner = next(t for t in texts if isinstance(t, str) and "Could not load" in t)
        assert "google/vit-hybrid-base-bit-384" in banner and "shapes" in banner
        banner_component = next(c for c in config["components"] if c.get("props", {}).get("value") == banner)
        assert banner_component["props"]["visible"] is True
    finally:
        server.terminate()
        server.wait(timeout=30)
    terminal = server.stdout.read()
    assert "could not load google/vit-hybrid-base-bit-384" in terminal  # said in the terminal too (item 7)
    assert "serving the shipped 'shapes' model instead" in terminal


def test_int8_explorer_classifies_like_float32_and_keeps_float_maps(explorer, shape_files):
    from PIL import Image

    from explorer import Explorer

    int8 = Explorer("shapes", speed="int8")
    assert int8.fast_model is not int8.model and "int8" in int8.environment()
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in int8.fast_model.modules())
    for path, label in shape_files:
        image = Image.open(path).convert("RGB")
        fast, full = int8.classify(image), explorer.classify(image)
        assert next(iter(fast)) == next(iter(full)) == label
        assert all(abs(fast[k] - full.get(k, 0.0)) < 0.05 for k in fast)
        maps, float_maps = int8.analysis(image).attentions, explorer.analysis(image).attentions
        assert all(a.equal(b) for a, b in zip(maps, float_maps))  # the analysis runs the float32 model
    quantized = next(m for m in int8.fast_model.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear))
    calls = []
    hook = quantized.register_forward_hook(lambda *args: calls.append(1))
    try:
        row = int8.time_paths(image, batch=2, repeats=1)
    finally:
        hook.remove()
    assert row.batch == 2 and len(calls) >= 2  # both paths timed on the int8 model


def test_int8_on_a_gpu_and_bad_speed_modes_are_refused_before_loading():
    from explorer import Explorer

    with pytest.raises(ValueError, match="CPU only"):
        Explorer("shapes", device="cuda", speed="int8")
    with pytest.raises(ValueError, match="speed must be one of"):
        Explorer("shapes", speed="fp4")
    run = subprocess.run([sys.executable, str(ROOT / "app.py"), "--int8", "--device", "cuda"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "int8 runs on the CPU only" in run.stderr
    assert "Traceback" not in run.stderr
    run = subprocess.run([sys.executable, str(ROOT / "app.py"), "--int8", "--compile"], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 2 and "not allowed with argument" in run.stderr


def test_the_cache_and_held_graphs_budgets_come_from_the_machine_or_the_flags(explorer, monkeypatch):
    from app import parse_args
    from explorer import Explorer, ModelShelf, default_budget_mb
    from explorer.cache import machine_memory_mb
    from explorer.runs import PASSES_VARIABLE
    from vithybrid import resolve_model

    monkeypatch.delenv("VITHYBRID_CACHE_MB", raising=False)
    monkeypatch.delenv(PASSES_VARIABLE, raising=False)
    assert explorer.cache.budget_bytes == int(default_budget_mb() * 2 ** 20)
    assert explorer.passes_mb == pytest.approx(machine_memory_mb() / 8)
    set_by_hand = Explorer("shapes", cache_mb=12, passes_mb=7)
    assert set_by_hand.cache.budget_bytes == 12 * 2 ** 20 and set_by_hand.passes_mb == 7
    picked = ModelShelf(set_by_hand).get(str(resolve_model("shapes")))  # a model picked on the page (by its folder)
    assert picked is not set_by_hand and (picked.cache_mb, picked.passes_mb) == (12, 7)  # the same budgets
    with pytest.raises(ValueError, match="budget must be positive"):
        Explorer("shapes", cache_mb=0)
    with pytest.raises(ValueError, match="cannot be negative"):
        Explorer("shapes", passes_mb=-1)
    assert parse_args(["--cache-mb", "3000"]).cache_mb == 3000 and parse_args([]).cache_mb is None
    assert parse_args(["--passes-mb", "500"]).passes_mb == 500 and parse_args([]).passes_mb is None


def test_a_space_sets_the_model_and_speed_through_variables(monkeypatch):
    from app import parse_args

    assert (parse_args([]).model, parse_args([]).speed) == ("google/vit-hybrid-base-bit-384", "none")
    monkeypatch.setenv("VITHYBRID_MODEL", "shapes")
    monkeypatch.setenv("VITHYBRID_SPEED", "int8")
    assert (parse_args([]).model, parse_args([]).speed) == ("shapes", "int8")
    assert parse_args(["--model", "x", "--compile"]).model == "x" and parse_args(["--compile"]).speed == "compile"
    monkeypatch.setenv("VITHYBRID_MODEL", "")  # variables left blank in a Space's settings: the defaults
    monkeypatch.setenv("VITHYBRID_SPEED", "")
    assert (parse_args([]).model, parse_args([]).speed) == ("google/vit-hybrid-base-bit-384", "none")


def test_the_backbone_picture_runs_no_model(explorer, shape_files):
    """What it draws was recorded during the photo's pass."""
    from PIL import Image

    image = Image.open(shape_files[0][0]).convert("RGB").rotate(90)  # not analysed by another test yet
    explorer.analysis(image)
    backbone = explorer.model.vit.embeddings.patch_embeddings.backbone
    calls = []
    hook = backbone.register_forward_hook(lambda *args: calls.append(1))
    try:
        picture = explorer.backbone_picture(image)
    finally:
        hook.remove()
    assert calls == [] and picture.width > 100


def test_maps_add_the_backbone_grad_cam_and_the_mean_attention_distances(client, explorer, shape_files):
    """The new /maps keys, against the library called directly on a fresh run of the model."""
    import visualization as viz
    from vithybrid.images import load_image
    from vithybrid.model.backbone import token_stage

    model = explorer.model
    for path, _ in shape_files:  # a shape whose Grad-CAM is not all clipped to zero, so that its values say something
        pixels = explorer.pixels(load_image(path))
        with torch.no_grad():
            output = model(pixels, output_attentions=True)
        top = int(output.logits.argmax(-1))
        cam = viz.backbone_cam(model, token_stage(model.vit.embeddings.patch_embeddings.backbone), pixels, top)[0]
        if cam.max() > 0:
            break
    assert abs(cam.max() - 1) < 1e-5 and tuple(cam.shape) == model.config.grid_size  # as pytorch-grad-cam scales
    result = client.predict(handle_file(str(path)), api_name="/maps")
    distances = viz.mean_attention_distance(output.attentions, model.config.grid_size, explorer.crop_hw)[0]
    assert list(result["labels"])[0] == model.config.id2label[top]
    # Same arithmetic on another attention kernel (the app's analysis runs eager): float32 rounding, nothing more.
    torch.testing.assert_close(torch.tensor(result["backbone_grad_cam"]), cam, atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.tensor(result["mean_attention_distance"]), distances, atol=1e-3, rtol=1e-5)
    assert distances.shape == (model.config.num_hidden_layers, model.config.num_attention_heads)


def test_the_explanation_lab_in_a_real_browser(app_url, explorer, browser):
    """Both halves' maps, their agreement as the explorer computes it, the faithfulness run to its verdict, a
    cancelled run that stops scoring, and the walk's Figure 7 pictures."""
    from playwright.sync_api import expect

    from vithybrid.images import load_image

    star = ROOT / "examples" / "shape_star.png"
    explorer.cache.clear()  # the module's app is shared: another test's session may have opened the lab on this photo
    page, errors = browser.new_page(), []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(app_url)
    page.locator("#inp input[type=file]").set_input_files(str(star))
    expect(page.locator("#labels")).to_contain_text("star", timeout=30_000)
    expect(page.locator("#rollout img")).to_be_visible(timeout=30_000)
    page.wait_for_timeout(2000)  # the rest of the photo's pictures
    image = load_image(star)
    # A session that has not opened the lab pays nothing for it: only the pass's own Grad-CAM is there.
    analysis = explorer.analysis(image)
    assert list(analysis.cams) == [(analysis.top[0][0], "Grad-CAM", explorer.stage_names[-1])]
    page.get_by_role("tab", name="Explanation lab").click()
    for picture in ("#lab-cam img", "#lab-classmap img"):
        expect(page.locator(picture)).to_be_visible(timeout=60_000)
    expected = explorer.agreement(image, explorer.analysis(image).top[0][0])
    agreement = page.locator("#lab-agreement")
    expect(agreement).to_contain_text(f"Agreement: {expected:+.2f}", timeout=30_000)
    expect(agreement).to_contain_text("8x8 token grid")
    assert any(sentence in agreement.inner_text() for sentence in viz_sentences())

    page.locator("#lab-run").click()
    status = page.locator("#lab-status")
    expect(status).to_contain_text(re.compile("Most faithful here|No map beat a random order"), timeout=60_000)
    expect(page.locator("#lab-curves img")).to_be_visible()
    table = page.locator("#lab-areas")
    for name in ("Attention rollout", "Class map", "Last-layer attention", "Grad-CAM (backbone)", "Random order"):
        expect(table).to_contain_text(name)

    # A run whose first batch is held until the cancel has been shown: no batch is scored after that one.
    scored, gate, batches = [], threading.Event(), threading.Semaphore(0)  # batches of perturbed images scored

    def held(module, args):
        if len(args[0]) > 1:  # faithfulness scores batches of several
            scored.append(1)
            batches.release()
            assert gate.wait(timeout=120), "the test never let the batch finish"

    hold = explorer.model.register_forward_pre_hook(held)
    try:
        page.locator("#lab-run").click()
        assert batches.acquire(timeout=120), "the run never started scoring"
        page.locator("#lab-cancel").click()
        expect(status).to_contain_text("Stopped")
        gate.set()  # the batch under way finishes; the cancelled run asks for no other
        page.wait_for_timeout(3000)  # room for a wrongly continuing run to show itself (never a false failure)
        assert len(scored) == 1
    finally:
        gate.set()
        hold.remove()

    page.get_by_role("tab", name="How hybrid tokens work").click()
    for picture in ("#fig7-filters img", "#fig7-positions img", "#fig7-distances img"):
        expect(page.locator(picture)).to_be_visible(timeout=30_000)
        page.wait_for_function(f"() => document.querySelector('{picture}').naturalWidth > 0", timeout=30_000)
    expect(page.locator("#tab-how")).to_contain_text("less pronounced in hybrid models")

    page.get_by_role("tab", name="Explanation lab").click()
    page.locator("#lab-run").click()
    expect(status).to_contain_text(re.compile("Most faithful here|No map beat a random order"), timeout=60_000)
    shot = os.environ.get("VITHYBRID_LAB_SCREENSHOT")
    if shot:
        page.locator("#tab-lab").screenshot(path=shot)
    assert not errors, errors
    page.close()


def viz_sentences() -> list[str]:
    """The English agreement sentences, as the page shows them."""
    from ui import lab
    from ui.i18n import text

    return [text("en", key) for key in lab.AGREEMENT_KEYS.values()]


def test_the_lab_offers_every_backbone_stage_and_the_token_stage_last(explorer, shape_files):
    """backbone_stages are the modules whose outputs the backbone returns; token_stage's grid is the token grid."""
    from vithybrid.model.backbone import backbone_stages, token_stage

    backbone, seen = explorer.backbone, []
    hooks = [stage.register_forward_hook(lambda module, args, output: seen.append(output))
             for stage in backbone_stages(backbone)]
    try:
        with torch.no_grad():
            maps = backbone(explorer.pixels(sample(seed=5, index=0, size=80).image), keep_stages=True)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(seen) == len(maps) == len(explorer.stage_names) and all(a is b for a, b in zip(seen, maps))
    assert explorer.stage_names == ["stem", *(f"stage{i}" for i in range(1, len(maps)))]
    assert token_stage(backbone) is backbone_stages(backbone)[-1] and tuple(maps[-1].shape[-2:]) == explorer.grid


def test_without_grad_cam_the_app_serves_both_halves(tmp_path):
    """pytorch-grad-cam is an optional extra: without it the app starts, every map (Grad-CAM on the token stage
    included: the photo's pass gives it) is there and measured, and the lab says what the other CAM methods and
    stages need."""
    from helpers import env_hiding
    from vithybrid.explain import MAP_NAMES

    code = """
import json, os
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
from PIL import Image
import visualization as viz
import app
from explorer import Explorer
from ui.i18n import text
explorer = Explorer("shapes", fallback=False)
image = Image.open("examples/shape_star.png")
maps = explorer.explanation_maps(image, 3)
*_, run = explorer.faithfulness(image, 3)
demo = app.build_demo(explorer)
print(json.dumps({"available": viz.grad_cam_available(), "maps": sorted(maps), "measured": sorted(run.areas),
                  "message": text("ar", "lab.no_grad_cam")}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            env=env_hiding(tmp_path, "pytorch_grad_cam"))
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["available"] is False
    # Grad-CAM on the token stage comes from the photo's pass: every map, without the extra
    assert found["maps"] == sorted(MAP_NAMES) and set(found["measured"]) == {*MAP_NAMES, "random"}
    assert "pip install" in found["message"]  # what the lab says of the other CAM methods and stages


@pytest.mark.parametrize("environment, expected", [({}, "10000"), ({"OMP_WAIT_POLICY": "PASSIVE"}, None),
                                                   ({"GOMP_SPINCOUNT": "5"}, "5")])
def test_the_app_sets_a_short_openmp_spin_unless_the_environment_chose(environment, expected):
    """OpenMP threads spin 10,000 times before sleeping (measured in the README), unless the environment sets a
    wait policy or a spin count: libgomp lets GOMP_SPINCOUNT override OMP_WAIT_POLICY, so setting it then would
    overrule the user's choice."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")} | environment
    run = subprocess.run([sys.executable, "-c", "import os, app; print(os.environ.get('GOMP_SPINCOUNT'))"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[-1] == str(expected)


def ancestors(block) -> list:
    """The layout blocks around `block`, innermost first."""
    found = []
    while (block := getattr(block, "parent", None)) is not None:
        found.append(block)
    return found


def test_tab_marks_draw_the_tab_open_when_a_photo_came_and_each_other_tab_when_opened(monkeypatch):
    """A new photo: its labels draw the tab open when it came, if open still, every other tab is drawn when opened
    (whole, once); a tab left before the labels came is drawn when opened again; a shared control marks closed tabs
    without undoing a photo's mark; a session's marks go when unused for TabMarks.KEEP_S; the latest photo is not new
    again while its event runs or just after."""
    from ui.page import TabMarks

    marks = TabMarks()
    marks.tabs = ["a", "b", "c"]
    assert marks.photo_tab("s") is None  # no photo yet
    marks.new_photo("s")  # a session that has not picked a tab: the first one is open
    assert marks.photo_tab("s") == "a" and marks.photo_tab("s") == "a"  # a second photo's labels draw it too
    assert marks.opened("s", "b") == TabMarks.PHOTO and marks.opened("s", "b") is None  # drawn once, on opening
    assert marks.photo_tab("s") is None  # "a" left before the labels came...
    assert marks.opened("s", "a") == TabMarks.PHOTO  # ...drawn whole when opened again
    assert marks.photo_tab("s") is None  # and not by a later photo's labels: by its opening
    assert marks.changed("s", "a") and not marks.changed("s", "b")
    assert marks.opened("s", "c") == TabMarks.PHOTO and marks.opened("s", "b") == TabMarks.CONTROLS
    marks.new_photo("t")
    assert marks.opened("t", "c") == TabMarks.PHOTO  # sessions apart
    monkeypatch.setattr(TabMarks, "KEEP_S", 0.0)
    marks.new_photo("u")
    assert marks.sessions == {"u"}  # the others, unused since, are forgotten...
    monkeypatch.setattr(TabMarks, "KEEP_S", 3600.0)
    assert marks.opened("t", "b") is None and marks.photo_tab("u") == "a"  # ...marks and all (t's "b" was out of date)
    assert marks.sessions == {"t", "u"}
    # The latest photo is not new again while its event runs (the Image's twin `change`)...
    star = ("model", "star.png")
    assert marks.new_photo("v", star) and marks.opened("v", "b") == TabMarks.PHOTO
    assert not marks.new_photo("v", star) and marks.opened("v", "c") == TabMarks.PHOTO
    assert marks.opened("v", "a") is None  # nothing marked by the twin ("a" would be, "b" being open then)
    marks.photo_done("v", ("other model", "star.png"))  # not the latest: nothing changes
    assert not marks.new_photo("v", star)
    marks.photo_done("v", star)  # ...nor just after it ended...
    assert not marks.new_photo("v", star)
    monkeypatch.setattr(TabMarks, "TWIN_S", 0.0)
    assert marks.new_photo("v", star)  # ...but later, the same file uploaded again is answered
    assert marks.new_photo("v", ("other model", "star.png")) and marks.new_photo("v") and marks.new_photo("v")
    # Of a session's events at once, the one started last is the latest; a twin is not an event of its own
    monkeypatch.setattr(TabMarks, "TWIN_S", 1.0)
    photo, model, other = marks.new_photo("w", star), marks.new_photo("w"), marks.new_photo("x")
    assert model > photo and not marks.latest("w", photo) and marks.latest("w", model) and marks.latest("x", other)
    assert marks.new_photo("w", ("model", "moon.png")) and not marks.latest("w", model)
    assert marks.new_photo("w", ("model", "moon.png")) is None and not marks.latest("w", None)


def test_of_a_photo_and_a_model_switch_at_once_the_later_event_writes_the_labels(explorer):
    """A session's photo event and its model switch's run at once, each with the photo and model of the moment it
    started: the one that started first and ends last writes nothing (else the page would show the labels of a model
    or photo it no longer has), the later one writes its labels and cues its tab's drawing."""
    import gradio as gr
    from gradio.context import LocalContext

    from explorer import ModelShelf
    from ui.page import Page

    page = Page(explorer, ModelShelf(explorer, 2), *[None] * 5)
    page.marks.tabs = ["rollout"]
    page.renders.append((gr.Tab(elem_id="rollout"), (lambda: None, [], [])))
    started, release, computed = threading.Event(), threading.Event(), []

    def labels(model, photo):
        if model == "old":  # the photo's event, started before the switch: slow
            started.set()
            release.wait(120)
        computed.append(model)
        return f"{model}: {photo}"

    event, inputs, outputs = page.new_photo((lambda: "checked", [], [None]), (labels, [None, None], [None]))
    assert len(inputs) == 2 and len(outputs) == 3  # the check's note, the labels and the open tab's cue

    def run(model, photo, answers):
        token = LocalContext.request.set(type("Request", (), {"session_hash": "student"})())
        try:
            answers.extend(event(model, photo))
        finally:
            LocalContext.request.reset(token)

    first, second = [], []
    photo_event = threading.Thread(target=run, args=("old", "cat.png", first), daemon=True)
    photo_event.start()
    assert started.wait(10)
    run("new", "cat.png", second)  # the switch, while the photo's labels are computed
    release.set()
    photo_event.join(60)
    assert not photo_event.is_alive() and computed == ["new", "old"]  # both labels computed, the switch's first
    assert second[-1][1] == "new: cat.png" and isinstance(second[-1][2], int)  # labels, and the tab's cue
    assert first == [["checked", gr.skip(), gr.skip()]]  # the check's answer only


def test_a_language_switch_runs_no_model_for_a_tab_not_drawn_for_the_photo(tmp_path):
    """The lab (opened once, closed since) and the token tab are drawn for a new photo when opened; a language switch
    meanwhile rewrites what the computed maps allow and leaves the rest to that drawing: no model runs (the lab's
    agreement for a class whose maps nobody asked for would cost a pass)."""
    import gradio as gr

    import app
    from explorer import Explorer, ModelShelf
    from ui import header, lab, tokens
    from vithybrid.images import load_image
    from vithybrid.training.shapes import sample

    explorer = Explorer("shapes", cache_mb=50)
    with gr.Blocks():
        page, _ = header.build(explorer, ModelShelf(explorer), app.PhotoInput, app.EXAMPLES_DIR)
        hooks_before = len(page.texts)
        for tab in (lab, tokens):
            with gr.Tab(tab.TITLE) as page.tab:
                tab.build(page)
    path = tmp_path / "photo.png"
    sample(seed=31, index=2, size=160).image.save(path)
    runs = []
    explorer.model.vit.embeddings.register_forward_hook(lambda *_: runs.append(1))

    def switch(class_index=None) -> dict:
        """{output's elem_id or type: value} of the two tabs' hooks, called as a switch to Arabic calls them: the lab
        opened before (its State), the photo, the lab's class."""
        written = {}
        for fn, inputs, outputs in page.texts[hooks_before:]:
            values = [str(path) if component is page.image else
                      True if isinstance(component, gr.State) and component.value is False else
                      class_index if component.elem_id == "lab-class" else component.value for component in inputs]
            result = fn("ar", explorer, *values)
            for component, value in zip(outputs, result if len(outputs) > 1 else [result]):
                written[component.elem_id or type(component).__name__] = value
        return written

    about_the_photo = ["lab-agreement", "lab-cam-text", "lab-classmap-text", "token-text", "token-attention"]
    written = switch()
    assert not runs and all(written[key] == gr.update() for key in about_the_photo)  # not analysed yet: left as is
    analysis = explorer.analysis(load_image(path))
    runs.clear()
    written = switch(analysis.top[1][0])  # analysed, but the lab's class's maps not computed
    assert not runs and all(written[key] == gr.update() for key in about_the_photo[:3])
    assert isinstance(written["token-text"], str) and written["token-attention"]["alt_text"]  # from the analysis
    written = switch()  # the top class: its maps came with the photo's pass, so the lab's words are written
    assert not runs and all(isinstance(written[key], str) and written[key] for key in about_the_photo[:3])
