"""The oracle's virtual environment: transformers 4.46.3 and timm beside (not inside) our own environment.

It is created once (a few minutes: torchvision brings a CUDA build of torch) and reused while its
requirements stay the same. numpy and Pillow are pinned to this environment's versions, so both sides
resize alike.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

import numpy
import PIL

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
DEFAULT_LOCATION = Path.home() / ".cache" / "vithybrid" / "oracle-venv"


def pinned_requirements() -> list[str]:
    lines = [line.strip() for line in REQUIREMENTS.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")] + [
        f"numpy=={numpy.__version__}", f"pillow=={PIL.__version__}"]


def oracle_python() -> Path:
    """Path of the oracle's python, creating its environment first if needed (raises on failure). Test runs at
    once wait for the one that creates it (each would otherwise clear the other's half-done install)."""
    location = Path(os.environ.get("VITHYBRID_ORACLE_VENV", DEFAULT_LOCATION))
    location.parent.mkdir(parents=True, exist_ok=True)
    with open(location.parent / f"{location.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when this process dies
        return _ensure_created(location)


def _ensure_created(location: Path) -> Path:
    python = location / "bin" / "python"
    requirements = pinned_requirements()
    stamp = location / "requirements.sha256"
    digest = hashlib.sha256("\n".join(requirements).encode()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return python
    print(f"Creating the oracle environment in {location} (transformers 4.46.3 and timm; once)...",
          file=sys.stderr)
    venv.EnvBuilder(clear=True, with_pip=True).create(location)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # torch and torchvision first and alone, so that no other package picks their versions.
    subprocess.run(pip + [r for r in requirements if r.startswith(("torch==", "torchvision=="))], check=True)
    subprocess.run(pip + requirements, check=True)
    stamp.write_text(digest)
    return python


def run_oracle(*args: str) -> None:
    """Run tests/oracle/reference.py in the oracle environment; raise with its output on failure."""
    result = subprocess.run([str(oracle_python()), str(HERE / "reference.py"), *args],
                            capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if result.returncode:
        raise RuntimeError(f"oracle failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
