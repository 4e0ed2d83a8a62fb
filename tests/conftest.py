"""Shared fixtures: the reference oracle's outputs, the app served on loopback, a browser, and the rule that CI never
skips what it can install."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before anything imports gradio
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle threads sleep: much faster on a shared CPU

import shutil  # noqa: E402
import socket  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from oracle.env import run_oracle  # noqa: E402

CI = os.environ.get("CI") == "true"
# ONNX Runtime and OpenVINO are tested in a pytest process of their own (test_runtimes_process.py runs these
# files there): loaded into the process that runs the other tests, native code crashed later tests now and
# then (segmentation faults in test_export after the analyze tests, in test_explain after test_export; none
# under gdb, none in a process that runs one or the other, as a user's does).
RUNTIME_TEST_FILES = ["test_export.py", "test_runtimes.py"]
collect_ignore = [] if os.environ.get("VITHYBRID_RUNTIME_PROCESS") == "1" else RUNTIME_TEST_FILES
ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "examples"  # the free photographs of ../shared/images
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's; `playwright install` cannot download here
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
SAMPLE_PHOTOS = sorted(p for p in IMAGES.glob("*") if p.suffix in (".png", ".jpg") and not p.name.startswith("shape_"))


def missing(reason: str) -> None:
    """A part the tests need is not there: a failure under CI (which installs it), a skip elsewhere."""
    if CI:
        pytest.fail(f"{reason} (CI=true: CI installs this, so it must be present)")
    pytest.skip(reason)


def hub_reachable() -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return True
    except OSError:
        return False


def pytest_collection_modifyitems(config, items):
    if any("network" in item.keywords for item in items) and not hub_reachable():
        skip = pytest.mark.skip(reason="needs the Hugging Face Hub, which is unreachable from here")
        for item in items:
            if "network" in item.keywords:
                item.add_marker(skip)


def oracle_output(tmp_path_factory, command: str, what: str) -> Path:
    """A new folder filled by one oracle command (`reference.py COMMAND OUT PHOTO...`); missing() if it cannot run."""
    if not SAMPLE_PHOTOS:
        missing(f"the sample photos are not in {IMAGES}")
    out = tmp_path_factory.mktemp(what)
    try:
        run_oracle(command, str(out), *map(str, SAMPLE_PHOTOS))
    except Exception as error:  # noqa: BLE001 - any failure to build or run the oracle
        missing(f"the {what} oracle could not run: {error}")
    return out


@pytest.fixture(scope="session")
def oracle_dir(tmp_path_factory) -> Path:
    """Random checkpoints, inputs and transformers 4.46.3's outputs for every case in oracle/cases.py."""
    return oracle_output(tmp_path_factory, "generate", "reference")


@pytest.fixture(scope="session")
def reference_logits(tmp_path_factory):
    """transformers 4.46.3's eager and SDPA logits for a checkpoint folder and an inputs file."""
    def run(checkpoint: Path, inputs: Path) -> dict:
        from safetensors.torch import load_file

        out = tmp_path_factory.mktemp("reference_logits") / "logits.safetensors"
        run_oracle("logits", str(checkpoint), str(inputs), str(out))
        return load_file(out)
    return run


def expect_patiently() -> None:
    """Browser expectations wait up to 30 s for their state (Playwright's default is 5 s): a bound for a starved
    machine, not a speed the test asks for; a state that is reached returns at once."""
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (a fresh profile, 1280x900, English); missing() without Chromium."""
    if not Path(CHROMIUM).exists():
        missing("Chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    expect_patiently()
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=profile, executable_path=CHROMIUM, headless=True, viewport={"width": 1280, "height": 900},
            args=CHROMIUM_ARGS)
        yield context
        context.close()


@pytest.fixture(scope="module")
def playwright():
    """Playwright, for tests that open browsers of their own (open_page); missing() without Chromium."""
    if not Path(CHROMIUM).exists():
        missing("Chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    expect_patiently()
    with sync_playwright() as playwright:
        yield playwright


def open_page(playwright, url, locale="en-US", viewport=(1280, 900), color_scheme="light"):
    """A fresh browser (its own profile: no language cookie) in `locale`, on the app; page errors collected."""
    profile = tempfile.mkdtemp()
    context = playwright.chromium.launch_persistent_context(
        user_data_dir=profile, executable_path=CHROMIUM, headless=True, locale=locale, color_scheme=color_scheme,
        viewport={"width": viewport[0], "height": viewport[1]}, args=CHROMIUM_ARGS)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.goto(url)
    return context, page


# ------------------------------------------------- the app served on loopback (test_app, test_app_i18n)

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def explorer():
    from explorer import Explorer

    return Explorer("shapes")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A second model to pick in the Model dropdown: 2 layers and 2 heads (shapes has 4 and 4), a 4x4 grid
    (shapes: 8x8), labels LABEL_0..4."""
    from helpers import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("tiny"), num_attention_heads=2)


@pytest.fixture(scope="module")
def app_url(explorer, tiny_folder):
    from app import build_demo, serve

    demo = build_demo(explorer, extra_models=[str(tiny_folder)])
    port = free_port()
    serve(demo, prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def shape_files(tmp_path_factory):
    from vithybrid.training.shapes import CLASSES, sample

    folder = tmp_path_factory.mktemp("shapes")
    files = []
    for index in range(len(CLASSES)):
        drawn = sample(seed=2024, index=index, size=160)
        path = folder / f"{CLASSES[drawn.label]}_{index}.png"
        drawn.image.save(path)
        files.append((path, CLASSES[drawn.label]))
    return files
