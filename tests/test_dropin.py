"""vithybrid as a drop-in for transformers' ViTHybrid: the same user code (oracle/dropin_snippets.py) runs
under transformers 4.46.3 (the oracle) and here, on several random checkpoints, and must return the same
types, keys, tuple order, shapes, plain values, files written and, within float tolerance, tensors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import vithybrid
from conftest import missing
from oracle.cases import CASES
from oracle.dropin_snippets import PROCESSOR_SNIPPETS, SNIPPETS, run
from oracle.env import run_oracle

# Model outputs: float32 through different kernels (fused qkv, the CPU attention path), so 1e-4 as in
# the other oracle comparisons. Processor values: the same float32 arithmetic on the same uint8 pixels.
MODEL_TOLERANCE = dict(atol=1e-4, rtol=1e-4)
PROCESSOR_TOLERANCE = dict(atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("dropin")
    try:
        run_oracle("dropin", str(out))
    except Exception as error:  # noqa: BLE001 - any failure to build or run the oracle
        missing(f"the drop-in oracle could not run: {error}")
    return out


def compare(ours, theirs, our_tensors, their_tensors, tolerance, where="result"):
    """Walk both descriptions together; tensors by value within tolerance, everything else exactly."""
    if isinstance(theirs, dict) and ("tensor" in theirs or "ndarray" in theirs):
        assert isinstance(ours, dict) and {k: v for k, v in ours.items() if k not in ("tensor", "ndarray")} == \
            {k: v for k, v in theirs.items() if k not in ("tensor", "ndarray")}, f"{where}: {ours} != {theirs}"
        key_ours, key_theirs = ours.get("tensor", ours.get("ndarray")), theirs.get("tensor", theirs.get("ndarray"))
        a, b = our_tensors[key_ours], their_tensors[key_theirs]
        if a.is_floating_point():
            torch.testing.assert_close(a, b, **tolerance, msg=lambda m: f"{where}: {m}")
        else:
            assert torch.equal(a, b), f"{where}: integer tensors differ"
    elif isinstance(theirs, dict) and "items" in theirs and "keys" in theirs:  # a mapping
        assert isinstance(ours, dict) and ours.get("type") == theirs["type"], f"{where}: {ours} != {theirs}"
        # the key order of an output or BatchFeature is behaviour (tuple order); of a plain dict it is not
        same_keys = ours["keys"] == theirs["keys"] if theirs["type"] != "dict" else set(ours["keys"]) == set(theirs["keys"])
        assert same_keys, f"{where}: keys {ours['keys']} != {theirs['keys']}"
        for key in theirs["keys"]:
            compare(ours["items"][key], theirs["items"][key], our_tensors, their_tensors, tolerance, f"{where}.{key}")
    elif isinstance(theirs, dict):
        assert isinstance(ours, dict) and set(ours) == set(theirs), f"{where}: {ours} != {theirs}"
        for key in theirs:
            compare(ours[key], theirs[key], our_tensors, their_tensors, tolerance, f"{where}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), f"{where}: {ours} != {theirs}"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            compare(a, b, our_tensors, their_tensors, tolerance, f"{where}[{i}]")
    elif isinstance(theirs, float):
        assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-12), f"{where}: {ours} != {theirs}"
    else:
        assert ours == theirs, f"{where}: {ours!r} != {theirs!r}"


def check(reference, tmp_path, group: str, name: str, tolerance: dict, *args) -> None:
    expected = json.loads((reference / "results" / group / f"{name}.json").read_text())
    assert "error" not in expected, f"the snippet failed under transformers:\n{expected.get('error')}"
    their_tensors = load_file(reference / "results" / group / f"{name}.safetensors")
    ours, our_tensors = run(name, vithybrid, tmp_path / name, *args)
    compare(json.loads(json.dumps(ours)), expected, our_tensors, their_tensors, tolerance, name)


@pytest.mark.parametrize("case_name", CASES)
@pytest.mark.parametrize("name", SNIPPETS)
def test_model_and_config_code_runs_unchanged(reference, tmp_path, name, case_name):
    check(reference, tmp_path, case_name, name, MODEL_TOLERANCE, reference / "checkpoints" / case_name,
          CASES[case_name])


@pytest.mark.parametrize("name", PROCESSOR_SNIPPETS)
def test_processor_code_runs_unchanged(reference, tmp_path, name):
    check(reference, tmp_path, "processor", name, PROCESSOR_TOLERANCE, reference / "checkpoints" / next(iter(CASES)))
