"""benchmarks/runtimes.py end to end at a tiny size: every variant runs in its worker, the runtimes' logits are
ours, and the table's ratio and ceiling columns divide what their labels say. No timed assertions."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from conftest import missing

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "runtimes.py"


def test_runtimes_benchmark_tiny(tmp_path):
    for package in ("onnxscript", "onnxruntime", "openvino", "nncf", "matplotlib"):
        if importlib.util.find_spec(package) is None:
            missing(f"{package} is not installed")
    result = subprocess.run([sys.executable, str(SCRIPT), "--config", "tiny", "--rounds", "1", "--batches", "1,2",
                             "--threads", "1", "--no-timm", "--out-dir", str(tmp_path),
                             "--out-json", str(tmp_path / "runtimes.json")],
                            capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "runtimes.json").read_text())
    variants = ["ours sdpa (OMP passive)", "ours int8 (OMP passive)", "ours sdpa (spin 10k)", "ours int8 (spin 10k)",
                "ours sdpa", "ours int8", "ours eager + maps", "ORT fp32", "ORT int8", "OpenVINO fp32", "OpenVINO int8"]
    assert sorted(data["ms"]) == sorted(f"{v}|{b}" for v in variants for b in (1, 2))
    assert all(ms > 0 for ms in data["ms"].values()) and data["gemm_gflops"] > 0 and data["flops"] > 0
    fidelity = data["fidelity"]
    for name in ("ours sdpa (OMP passive)", "ours sdpa (spin 10k)", "ours eager + maps", "ORT fp32", "OpenVINO fp32"):
        assert fidelity[name]["max_abs_diff"] < 1e-4, name  # float32 everywhere: the same logits
    for name in ("ours int8", "ORT int8", "OpenVINO int8"):
        assert 0.99 < fidelity[name]["min_cosine"] and fidelity[name]["max_abs_diff"] > 1e-6, name  # int8, close
    markdown = (tmp_path / "runtimes.md").read_text()
    ms = data["ms"]
    fastest = min(ms["ORT fp32|2"], ms["OpenVINO fp32|2"])
    ceiling = data["flops"] * 2 / (ms["ours sdpa|2"] / 1000) / (data["gemm_gflops"] * 1e9)
    row = next(line for line in markdown.splitlines() if line.startswith("| ours sdpa |"))
    assert row.split(" | ")[4] == f"{ms['ours sdpa|2'] / fastest:.2f}" and row.split(" | ")[6] == f"{ceiling:.2f}"
    assert "timm not measured" in markdown and "python benchmarks/runtimes.py --config tiny" in markdown
    assert (tmp_path / "runtimes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_runtimes_benchmark_on_a_busy_machine_with_some_variants(tmp_path):
    """--variants times only those (and the reference the logits are compared with); --busy keeps processes
    spinning through the rounds and says so under the table, and stops them afterwards."""
    import os

    result = subprocess.run([sys.executable, str(SCRIPT), "--config", "tiny", "--rounds", "1", "--batches", "1",
                             "--threads", "1", "--no-timm", "--variants", "ours sdpa (OMP passive)", "--busy", "1",
                             "--out-dir", str(tmp_path), "--out-json", str(tmp_path / "runtimes.json")],
                            capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "runtimes.json").read_text())
    assert sorted(data["ms"]) == ["ours sdpa (OMP passive)|1", "ours sdpa|1"] and data["busy"] == 1
    assert "Busy machine: 1 other process(es) spinning" in (tmp_path / "runtimes.md").read_text()
    spinning = subprocess.run(["pgrep", "-f", str(SCRIPT)], capture_output=True, text=True).stdout.split()
    assert [pid for pid in spinning if int(pid) != os.getpid()] == []  # no spinner left behind

    wrong = subprocess.run([sys.executable, str(SCRIPT), "--variants", "ours bf16"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "unknown variant(s) ours bf16" in wrong.stderr
