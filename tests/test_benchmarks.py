"""Benchmarks end to end at tiny sizes: benchmarks/speed.py (every variant runs, and transformers with our weights
gives our logits), checkpointing_memory.py (what a checkpointed layer keeps), analyze_speed.py (the local
backend, and a run that writes error rows stops it) and classroom.py (a class of two, one a browser, end to end;
each round's ratios against its own forward).
No timed assertions: the figures depend on the machine."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import missing
from oracle.env import oracle_python
from vithybrid import ViTHybridConfig
from vithybrid.training.train import PRESETS

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"


def test_speed_benchmark_quick_tiny(tmp_path):
    try:
        oracle_python()  # the script measures there when transformers and timm are not installed here
    except Exception as error:  # noqa: BLE001 - any failure to build the oracle's environment
        missing(f"the reference oracle's environment could not be built: {error}")
    # bfloat16 on the CPU takes the path a GPU's half-precision runs take (no int8, models cast, a panel each)
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--config", "tiny", "--device", "cpu",
                             "--dtypes", "float32,bfloat16", "--out-dir", str(tmp_path),
                             "--out-json", str(tmp_path / "speed.json")],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "speed.json").read_text())
    row, half = data["results"]
    assert (row["dtype"], row["batch"], half["dtype"], half["batch"]) == ("float32", 1, "bfloat16", 1)
    for name in ("ours sdpa", "ours eager", "ours eager + maps", "transformers sdpa", "transformers eager", "timm"):
        assert row["ms"][name] > 0 and half["ms"][name] > 0, name
    assert row["ms"]["ours int8"] > 0 and 0.99 < row["int8_cosine"] <= 1 + 1e-6  # int8 runs, close to float32
    assert row["max_logit_difference"] < 1e-4 < row["max_logit"]  # the same model, with logits that are not all 0
    assert "ours int8" not in half["ms"] and any("int8 not run in bfloat16" in n for n in data["notes"])
    assert half["max_logit_difference"] < 0.05 * half["max_logit"]  # the same model at bfloat16's precision
    markdown = (tmp_path / "speed.md").read_text()
    assert "| batch | ours sdpa |" in markdown and f"torch {data['meta']['torch']}" in markdown
    assert "**float32**" in markdown and "**bfloat16**" in markdown
    ms = row["ms"]  # the ratio columns divide what their labels say
    assert (f"| 1 | {ms['ours sdpa'] / ms['timm']:.2f} | {ms['ours sdpa'] / ms['transformers sdpa']:.2f} | "
            f"{ms['ours eager + maps'] / ms['ours sdpa']:.2f} | {ms['ours int8'] / ms['timm']:.2f} |") in markdown
    assert "python benchmarks/speed.py --quick --config tiny" in markdown
    assert (tmp_path / "speed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ours sdpa / timm" in result.stdout


def run_benchmark(name: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(SCRIPT.with_name(name)), *args], capture_output=True, text=True,
                            timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    return result


def test_checkpointing_memory_counts_the_input_each_checkpointed_layer_keeps(tmp_path):
    """With checkpointing, an encoder layer keeps only its input for the backward pass (torch's checkpoint saves
    it through the saved-tensor hooks the benchmark counts with), so one layer more adds exactly one
    (batch, tokens, hidden) float32 tensor to what is saved; without, it adds its activations, more than that."""
    batch, runs = 2, {}
    for layers in (1, 2):
        out = tmp_path / f"{layers}.json"
        result = run_benchmark("checkpointing_memory.py", "--config", "tiny", "--layers", str(layers), "--batch",
                               str(batch), "--rounds", "1", "--device", "cpu", "--json", str(out))
        assert "| off |" in result.stdout and "| on |" in result.stdout
        runs[layers] = json.loads(out.read_text())
    config = ViTHybridConfig(**PRESETS["tiny"])
    layer_input = batch * (config.grid_size[0] * config.grid_size[1] + 1) * config.hidden_size * 4
    assert runs[2]["on"]["saved"] - runs[1]["on"]["saved"] == layer_input
    assert runs[2]["off"]["saved"] - runs[1]["off"]["saved"] > layer_input
    assert all(run["on"]["saved"] < run["off"]["saved"] for run in runs.values())


def test_analyze_speed_local_quick():
    result = run_benchmark("analyze_speed.py", "--shapes-images", "3", "--full-images", "0", "--local-only")
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in result.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| model")]
    assert len(rows) == 1, result.stdout  # one model, one backend
    model, backend, images, seconds, rate, ratio = rows[0]
    assert (model, backend, images, ratio) == ("shapes", "local", "3", "1.00x")
    # images/s is 3 / seconds, each rounded as printed (seconds to 0.05, the rate to 0.005)
    assert 3 / (float(seconds) + 0.05) - 0.005 <= float(rate) <= 3 / max(float(seconds) - 0.05, 1e-9) + 0.005


def test_analyze_speed_stops_when_a_run_writes_an_error_row(tmp_path):
    spec = importlib.util.spec_from_file_location("analyze_speed", SCRIPT.with_name("analyze_speed.py"))
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    photos = benchmark.photo_folder(tmp_path / "photos", 2)
    (photos / "broken.png").write_bytes(b"not a PNG")
    with pytest.raises(SystemExit, match="3 rows, 1 with an error, for 3 photos"):
        benchmark.seconds(photos, "shapes", [], 2, tmp_path)


def test_the_classroom_benchmark_runs_a_small_class_and_checks_every_answer(tmp_path):
    """Two students at once, one of them a browser page, on the shipped tiny model: each gets its own photo's labels
    and maps from one pass, and the page's slider moves re-render without the model."""
    from conftest import CHROMIUM

    if not Path(CHROMIUM).exists():
        missing("Chromium is not installed (apt-get install -y chromium)")
    out = tmp_path / "class.json"
    # at the server's priority: a niced browser starved by a busy CI machine could be late beyond the app's window for
    # a photo's twin events, and show a second forward that a student on its own machine would not cause
    result = run_benchmark("classroom.py", "--students", "2", "--browsers", "1", "--model", "shapes", "--nice", "0",
                           "--json", str(out))
    [run] = json.loads(out.read_text())
    assert (run["students"], run["browsers"], run["rounds"], run["wrong"]) == (2, 1, 1, [])
    assert len(run["labels_s"]) == len(run["maps_s"]) == 2 and len(run["labels_x"]) == 2
    # each student's maps come with or after its labels, so the sorted times pair up
    assert all(labels <= maps for labels, maps in zip(sorted(run["labels_s"]), sorted(run["maps_s"])))
    assert len(run["rerender_s"]) == 4 and run["rerender_model_runs"] == 0  # SLIDER_MOVES moves of one page
    assert run["images_forwarded"] == 2  # one forward per photo: labels and maps from one pass
    assert "| 2 | " in result.stdout and "| 0 | 1.0 | " in result.stdout  # the row: no model re-run, 1 image each


def test_the_classroom_benchmark_takes_each_round_against_its_own_forward(monkeypatch):
    """A student alone's rounds, each timed against the forward measured around it: the printed ratios are the
    rounds' own (a slow round on a slow machine is not a slow app), their p50 / p95, not pooled seconds over one
    forward."""
    monkeypatch.setattr("os.environ", dict(os.environ))  # the script's environment settings stay in this test
    spec = importlib.util.spec_from_file_location("classroom", SCRIPT.with_name("classroom.py"))
    benchmark = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "classroom", benchmark)  # its dataclasses look their module up
    spec.loader.exec_module(benchmark)
    rounds = [benchmark.ClassResult(1, [], labels_s=[labels], maps_s=[maps]).against(forward)
              for labels, maps, forward in ((1.2, 2.4, 1.0), (2.2, 4.6, 2.0), (1.1, 2.2, 1.0))]
    alone = rounds[0].add(rounds[1]).add(rounds[2])
    assert alone.rounds == 3 and alone.forward_s == [1.0, 2.0, 1.0] and alone.labels_s == [1.2, 2.2, 1.1]
    assert alone.labels_x == pytest.approx([1.2, 1.1, 1.1]) and alone.maps_x == pytest.approx([2.4, 2.3, 2.2])
    row = benchmark.report(alone)
    assert "| 1, API client (3 times) | 1.2 s / 2.2 s (1.10x / 1.20x) | 2.4 s / 4.6 s (2.30x / 2.40x) |" in row
