"""The ONNX Runtime and OpenVINO tests (test_export.py, test_runtimes.py), run in a pytest process of their own:
see RUNTIME_TEST_FILES in conftest.py for why."""

import os
import subprocess
import sys
from pathlib import Path

from conftest import RUNTIME_TEST_FILES, missing

TESTS = Path(__file__).resolve().parent


def test_runtime_tests_pass_in_their_own_process():
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE",
                          *[str(TESTS / name) for name in RUNTIME_TEST_FILES]],
                         cwd=TESTS.parent, env={**os.environ, "VITHYBRID_RUNTIME_PROCESS": "1"},
                         capture_output=True, text=True, timeout=3600)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    if " passed" not in summary:  # every one skipped: the runtimes are not installed (a failure under CI=true)
        missing(f"the runtime tests ran none: {summary}")
