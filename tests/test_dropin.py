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
from helpers import TINY, tiny_model
from oracle.cases import CASES
from oracle.dropin_snippets import PROCESSOR_SNIPPETS, SNIPPETS, run
from oracle.env import run_oracle
from vithybrid.training.shapes import CLASSES, sample

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
        ordered = theirs["type"] != "dict"
        same = ours["keys"] == theirs["keys"] if ordered else set(ours["keys"]) == set(theirs["keys"])
        assert same, f"{where}: keys {ours['keys']} != {theirs['keys']}"
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


def training_step(model, pixels, labels, seed=0):
    """Loss and every parameter's gradient of one training step (dropout and drop-path drawn from `seed`)."""
    model.zero_grad()
    torch.manual_seed(seed)
    loss = model(pixels, labels=labels).loss
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("kwargs", [None, {"use_reentrant": False}], ids=["reentrant", "non_reentrant"])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(attn, kwargs):
    model = tiny_model(attn_implementation=attn).train()  # dropout 0.1 and drop-path 0.1: the RNG is replayed
    assert model.attn_implementation == attn
    pixels = torch.randn(2, 3, TINY["image_size"], TINY["image_size"], generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([1, 3])
    loss, grads = training_step(model, pixels, labels)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    assert model.is_gradient_checkpointing and model.vit.encoder.gradient_checkpointing
    calls = []
    checkpointed = model.vit.encoder._gradient_checkpointing_func
    model.vit.encoder._gradient_checkpointing_func = lambda *args, **kw: calls.append(1) or checkpointed(*args, **kw)
    loss_ckpt, grads_ckpt = training_step(model, pixels, labels)
    assert len(calls) == TINY["num_hidden_layers"]  # every layer went through checkpointing
    torch.testing.assert_close(loss_ckpt, loss, atol=1e-5, rtol=1e-5)
    assert grads_ckpt.keys() == grads.keys() and len(grads) == len(list(model.parameters()))
    for name in grads:
        torch.testing.assert_close(grads_ckpt[name], grads[name], atol=1e-5, rtol=1e-5, msg=lambda m: f"{name}: {m}")
    model.eval()
    calls.clear()
    with torch.no_grad():
        model(pixels)
    assert not calls  # inference never checkpoints


def test_fine_tuning_a_new_head_on_the_shipped_model_trains(caplog):
    """The fine-tuning idiom: the shipped body, a new 3-class head, and the loss goes down."""
    torch.manual_seed(0)  # the new head, dropout and drop-path draw from the global generator
    with caplog.at_level("WARNING", logger="vithybrid"):
        model = vithybrid.ViTHybridForImageClassification.from_pretrained(
            "shapes", num_labels=3, ignore_mismatched_sizes=True)
    assert "classifier.weight: found shape torch.Size([5, 128]) in the checkpoint and torch.Size([3, 128]) in the " \
        "model instantiated" in caplog.text
    assert model.config.num_labels == 3 and model.classifier.out_features == 3
    shipped = vithybrid.ViTHybridForImageClassification.from_pretrained("shapes")
    assert torch.equal(model.vit.embeddings.position_embeddings, shipped.vit.embeddings.position_embeddings)

    # a new 3-class task on the shipped classes: round shapes, straight-edged ones, the cross
    processor = vithybrid.ViTHybridImageProcessor.from_pretrained("shapes")
    samples = [sample(7, i, 64) for i in range(24)]
    pixels = processor([s.image for s in samples], return_tensors="pt").pixel_values
    labels = torch.tensor([{"circle": 0, "square": 1, "triangle": 1, "star": 1, "cross": 2}[CLASSES[s.label]]
                           for s in samples])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    losses = []
    for _ in range(10):
        loss = model(pixels, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
