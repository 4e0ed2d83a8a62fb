"""benchmarks/speed.py end to end at a tiny size: every variant runs, and transformers with our weights
gives our logits. No timed assertions: the figures depend on the machine."""

import json
import subprocess
import sys
from pathlib import Path

from conftest import missing
from oracle.env import oracle_python

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"


def test_speed_benchmark_quick_tiny(tmp_path):
    try:
        oracle_python()  # the script measures there when transformers and timm are not installed here
    except Exception as error:  # noqa: BLE001 - any failure to build the oracle's environment
        missing(f"the reference oracle's environment could not be built: {error}")
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--config", "tiny", "--out-dir", str(tmp_path),
                             "--out-json", str(tmp_path / "speed.json")],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "speed.json").read_text())
    (row,) = data["results"]
    assert (row["dtype"], row["batch"]) == ("float32", 1)
    for name in ("ours sdpa", "ours eager", "ours eager + maps", "transformers sdpa", "transformers eager", "timm"):
        assert row["ms"][name] > 0, name
    assert row["ms"]["ours int8"] > 0 and 0.99 < row["int8_cosine"] <= 1 + 1e-6  # int8 runs, close to float32
    assert row["max_logit_difference"] < 1e-4 < row["max_logit"]  # the same model, with logits that are not all 0
    markdown = (tmp_path / "speed.md").read_text()
    assert "| batch | ours sdpa |" in markdown and f"torch {data['meta']['torch']}" in markdown
    assert "python benchmarks/speed.py --quick --config tiny" in markdown
    assert (tmp_path / "speed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ours sdpa / timm" in result.stdout
