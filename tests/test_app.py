"""The app served on loopback with the shipped shapes model: its API, a real browser, the fallback banner."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from conftest import SAMPLE_PHOTOS, missing
from oracle.cases import PIL_MODES, mode_images
from vithybrid.shapes import CLASSES, sample

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def explorer():
    sys.path.insert(0, str(ROOT))
    from explorer import Explorer

    return Explorer("shapes")


@pytest.fixture(scope="module")
def app_url(explorer):
    from app import LAUNCH_OPTIONS, QUEUE_SIZE, build_demo

    demo = build_demo(explorer)
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, **LAUNCH_OPTIONS)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def shape_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes")
    files = []
    for index in range(len(CLASSES)):
        drawn = sample(seed=2024, index=index, size=160)
        path = folder / f"{CLASSES[drawn.label]}_{index}.png"
        drawn.image.save(path)
        files.append((path, CLASSES[drawn.label]))
    return files


def test_api_lists_classify_and_maps(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/classify", "/maps"} <= set(endpoints)


def test_classify_returns_sorted_top5_and_the_right_shape(client, shape_files):
    for path, label in shape_files:
        result = client.predict(handle_file(str(path)), api_name="/classify")
        confidences = [c["confidence"] for c in result["confidences"]]
        assert len(confidences) == 5 and {c["label"] for c in result["confidences"]} == set(CLASSES)
        assert confidences == sorted(confidences, reverse=True) and sum(confidences) <= 1 + 1e-6
        assert result["label"] == label


def test_maps_have_the_grid_size(client, shape_files):
    from vithybrid import ViTHybridConfig
    from vithybrid.shipped import resolve_model

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
])
def test_bad_files_get_a_message_and_the_app_keeps_serving(client, tmp_path, shape_files, content, message):
    from gradio_client.exceptions import AppError

    bad = tmp_path / "upload.png"
    bad.write_bytes(content)
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(str(bad)), api_name="/classify")
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


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        missing("Chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=profile, executable_path=CHROMIUM, headless=True, viewport={"width": 1280, "height": 900},
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"])
        yield context
        context.close()


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
    expect(page.locator("#token-text")).to_contain_text("Token 1 ", timeout=10_000)
    # The picture is letterboxed inside its element: click at 97% of the picture itself (the last token).
    x, y = grid.evaluate("""img => {
        const r = img.getBoundingClientRect(), s = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);
        const w = img.naturalWidth * s, h = img.naturalHeight * s;
        return [(r.width - w) / 2 + 0.97 * w, (r.height - h) / 2 + 0.97 * h]; }""")
    grid.click(position={"x": x, "y": y})
    tokens = page.locator("#token-text")
    expect(tokens).not_to_contain_text("Token 1 ", timeout=30_000)
    last = int(tokens.inner_text().split("of ")[1].split(":")[0])
    expect(tokens).to_contain_text(f"Token {last} of {last}", timeout=10_000)

    page.get_by_role("tab", name="Eager vs SDPA timing").click()
    page.locator("#run-timing").click()
    expect(page.locator("#timing-info")).to_contain_text("Largest logit difference", timeout=120_000)
    table = page.locator("#timing")
    expect(table).to_contain_text("x", timeout=10_000)
    assert len(re.findall(r"\d+\.\d\dx", table.inner_text())) == 2  # a speed-up for batch 1 and for batch 2

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


def test_int8_explorer_classifies_like_float32_and_keeps_float_maps(explorer, shape_files):
    from PIL import Image

    from explorer import Explorer

    int8 = Explorer("shapes", speed="int8")
    assert int8.fast_model is not int8.model and "int8" in int8.environment()
    assert any(isinstance(m, __import__("torch").ao.nn.quantized.dynamic.Linear) for m in int8.fast_model.modules())
    for path, label in shape_files:
        image = Image.open(path).convert("RGB")
        fast, full = int8.classify(image), explorer.classify(image)
        assert next(iter(fast)) == next(iter(full)) == label
        assert all(abs(fast[k] - full.get(k, 0.0)) < 0.05 for k in fast)
        maps, float_maps = int8.analysis(image).attentions, explorer.analysis(image).attentions
        assert all(a.equal(b) for a, b in zip(maps, float_maps))  # the analysis runs the float32 model
    row = int8.time_paths(image, batch=2, repeats=1)
    assert row.eager_ms > 0 and row.sdpa_ms > 0


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


def test_the_analysis_cache_holds_what_fits_in_its_memory_budget(explorer):
    from explorer import CACHE_MB, Explorer

    config = explorer.model.config
    tokens = config.grid_size[0] * config.grid_size[1] + 1
    one_mb = config.num_hidden_layers * config.num_attention_heads * tokens ** 2 * 4 / 2 ** 20
    assert explorer.cache.max_entries == max(1, min(8, int(CACHE_MB // one_mb)))
    assert Explorer("shapes", cache_mb=2.5 * one_mb).cache.max_entries == 2
    assert Explorer("shapes", cache_mb=0).cache.max_entries == 1
