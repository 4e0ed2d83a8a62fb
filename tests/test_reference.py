"""Our models against transformers 4.46.3 on random checkpoints it wrote (see oracle/cases.py)."""

import pytest
import torch
from safetensors.torch import load_file

from helpers import assert_same_arithmetic
from oracle.cases import CASES
from vithybrid import ViTHybridForImageClassification, ViTHybridModel

LOGITS_ATOL = 1e-4
ATTENTIONS_ATOL = 1e-5


def load_case(oracle_dir, name):
    return load_file(oracle_dir / f"{name}.inputs.safetensors"), load_file(oracle_dir / f"{name}.expected.safetensors")


def close(actual, expected, atol):
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("name", CASES)
def test_logits_loss_attentions_hidden_states(oracle_dir, name, attn):
    inputs, expected = load_case(oracle_dir, name)
    model = ViTHybridForImageClassification.from_pretrained(oracle_dir / name, attn_implementation=attn)
    assert model.attn_implementation == attn
    with torch.no_grad():
        out = model(inputs["pixel_values"], labels=inputs["labels"], output_attentions=True, output_hidden_states=True)
    close(out.logits, expected[f"{attn}.logits"], LOGITS_ATOL)
    close(out.loss, expected[f"{attn}.loss"], LOGITS_ATOL)
    layers = CASES[name]["config"]["num_hidden_layers"]
    assert len(out.attentions) == layers and len(out.hidden_states) == layers + 1
    for i, attention in enumerate(out.attentions):  # real maps whatever the path
        close(attention, expected[f"eager.attentions.{i}"], ATTENTIONS_ATOL)
    for i, hidden in enumerate(out.hidden_states):
        close(hidden, expected[f"eager.hidden_states.{i}"], LOGITS_ATOL)


@pytest.mark.parametrize("name", CASES)
def test_switching_attention_in_place_keeps_weights_and_results(oracle_dir, name):
    inputs, expected = load_case(oracle_dir, name)
    model = ViTHybridForImageClassification.from_pretrained(oracle_dir / name, attn_implementation="eager")
    weights_before = [p.data_ptr() for p in model.parameters()]
    with torch.no_grad():
        for attn in ("sdpa", "eager", "sdpa"):
            model.set_attn_implementation(attn)
            close(model(inputs["pixel_values"]).logits, expected[f"{attn}.logits"], LOGITS_ATOL)
    assert [p.data_ptr() for p in model.parameters()] == weights_before
    with pytest.raises(ValueError, match="attn_implementation must be one of"):
        model.set_attn_implementation("flash")


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("name", CASES)
def test_head_mask_as_reference(oracle_dir, name, attn):
    inputs, expected = load_case(oracle_dir, name)
    model = ViTHybridForImageClassification.from_pretrained(oracle_dir / name, attn_implementation=attn)
    with torch.no_grad():
        out = model(inputs["pixel_values"], head_mask=inputs["head_mask"], output_attentions=True)
    close(out.logits, expected["head_mask.logits"], LOGITS_ATOL)
    for i, attention in enumerate(out.attentions):
        close(attention, expected[f"head_mask.attentions.{i}"], ATTENTIONS_ATOL)


@pytest.mark.parametrize("name", CASES)
def test_dropout_and_stochastic_depth_in_training_as_reference(oracle_dir, name):
    """Same seed, same order of random draws: the eager path in train mode reproduces the reference."""
    inputs, expected = load_case(oracle_dir, name)
    model = ViTHybridForImageClassification.from_pretrained(oracle_dir / name, attn_implementation="eager").train()
    torch.manual_seed(list(CASES).index(name) + 1)
    logits = model(inputs["pixel_values"]).logits.detach()
    close(logits, expected["train.logits"], LOGITS_ATOL)
    with torch.no_grad():
        eval_logits = model.eval()(inputs["pixel_values"]).logits
    uses_dropout = CASES[name]["config"].get("hidden_dropout_prob", 0) > 0
    assert (not torch.allclose(logits, eval_logits, atol=1e-4)) == uses_dropout


@pytest.mark.parametrize("name", CASES)
def test_interpolation_is_identity_at_trained_size(oracle_dir, name):
    inputs, expected = load_case(oracle_dir, name)
    model = ViTHybridForImageClassification.from_pretrained(oracle_dir / name)
    with torch.no_grad():
        logits = model(inputs["pixel_values"], interpolate_pos_encoding=True).logits
    close(logits, expected["interpolate.logits"], LOGITS_ATOL)


@pytest.mark.parametrize("name", CASES)
def test_base_model_with_pooler(oracle_dir, name):
    inputs, expected = load_case(oracle_dir, name)
    for attn in ("eager", "sdpa"):
        model = ViTHybridModel.from_pretrained(oracle_dir / name / "base", attn_implementation=attn)
        with torch.no_grad():
            out = model(inputs["pixel_values"])
        close(out.last_hidden_state, expected["base.last_hidden_state"], LOGITS_ATOL)
        close(out.pooler_output, expected["base.pooler_output"], LOGITS_ATOL)


@pytest.mark.parametrize("name", CASES)
def test_our_checkpoint_loads_in_transformers(oracle_dir, reference_logits, tmp_path, name):
    """save_pretrained writes what transformers 4.46.3 loads, to the same logits on both of its paths."""
    inputs, _ = load_case(oracle_dir, name)
    model = ViTHybridForImageClassification.from_pretrained(oracle_dir / name)
    model.save_pretrained(tmp_path / "ours")
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == ["config.json", "model.safetensors"]
    with torch.no_grad():
        ours = model(inputs["pixel_values"]).logits
    theirs = reference_logits(tmp_path / "ours", oracle_dir / f"{name}.inputs.safetensors")
    close(theirs["eager"], ours, LOGITS_ATOL)
    close(theirs["sdpa"], ours, LOGITS_ATOL)
    reloaded = ViTHybridForImageClassification.from_pretrained(tmp_path / "ours")
    assert reloaded.config == model.config
    with torch.no_grad():
        assert_same_arithmetic(reloaded(inputs["pixel_values"]).logits, ours)
