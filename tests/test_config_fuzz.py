"""Untrusted config.json: absurd sizes and wrong types end in one line naming the field, before anything is
allocated, from from_pretrained, the CLI and analyze; a seeded fuzzer over every field (tests/fuzz/config_fuzz.py)."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from fuzz.config_fuzz import fuzz
from helpers import tiny_checkpoint
from vithybrid import CheckpointError, ViTHybridForImageClassification
from vithybrid.__main__ import main as classify_main
from vithybrid.checkpoints.hub import parameters_in

ABSURD = [("num_hidden_layers", 1_000_000), ("hidden_size", 1e9), ("num_attention_heads", 0)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny"))


def with_config(checkpoint, folder, **changes):
    """A copy of the checkpoint whose config.json has these changes."""
    folder.mkdir(exist_ok=True)
    for name in ("model.safetensors", "preprocessor_config.json"):
        (folder / name).symlink_to(checkpoint / name)
    config = json.loads((checkpoint / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    return folder


@pytest.mark.parametrize("field, value", ABSURD)
def test_absurd_sizes_are_one_line_naming_the_field(checkpoint, tmp_path, field, value):
    folder = with_config(checkpoint, tmp_path / "bad", **{field: value})
    with pytest.raises(CheckpointError, match=field) as error:
        ViTHybridForImageClassification.from_pretrained(folder)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("field, value", ABSURD)
def test_the_cli_says_it_in_one_line(checkpoint, tmp_path, capsys, field, value):
    folder = with_config(checkpoint, tmp_path / "bad", **{field: value})
    Image.new("RGB", (60, 60), "red").save(tmp_path / "red.png")
    assert classify_main(["--model", str(folder), str(tmp_path / "red.png")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and field in lines[0]


def test_analyze_exits_2(checkpoint, tmp_path, capsys):
    pytest.importorskip("pyarrow")  # the analyze extra
    from vithybrid.analyze.__main__ import main as analyze_main

    folder = with_config(checkpoint, tmp_path / "bad", num_hidden_layers=1_000_000)
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (60, 60), "red").save(tmp_path / "photos" / "red.png")
    assert analyze_main([str(tmp_path / "photos"), "--out", str(tmp_path / "out"), "--model", str(folder)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith("error: ") and "num_hidden_layers" in error[-1]


def test_a_config_much_bigger_than_its_weights_is_refused_before_it_is_built(checkpoint, tmp_path):
    # sane sizes (a 4096-wide, 48-layer model), but the weights file holds a tiny model's values
    folder = with_config(checkpoint, tmp_path / "big", hidden_size=4096, num_attention_heads=32,
                         intermediate_size=16384, num_hidden_layers=48)
    with pytest.raises(CheckpointError, match=r"describes a model of [\d,]+ parameters \(hidden_size=4096, "
                                              r"num_hidden_layers=48.*holds [\d,]+ values"):
        ViTHybridForImageClassification.from_pretrained(folder)


def test_weights_file_size_is_read_from_its_header(checkpoint, tmp_path):
    state = load_file(checkpoint / "model.safetensors")
    values = sum(t.numel() for t in state.values())
    assert parameters_in(checkpoint / "model.safetensors") == values
    torch.save(state, tmp_path / "pytorch_model.bin")
    assert parameters_in(tmp_path / "pytorch_model.bin") >= values  # a pickle: its size in bytes bounds it
    (tmp_path / "model.safetensors").write_bytes((2 ** 62).to_bytes(8, "little") + b"{}")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        parameters_in(tmp_path / "model.safetensors")


def test_config_fuzz_ends_in_a_model_or_one_clear_error(checkpoint, tmp_path):
    failures = fuzz(checkpoint, tmp_path, cases=300, seed=2024)
    assert failures == [], "\n".join(f"{problem}: {json.dumps(config)}" for config, problem in failures[:5])
