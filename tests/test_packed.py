"""Linear layers on weights packed once for MKL's GEMM (vithybrid/model/packed.py): the same products as the
plain ones to float32 rounding, only where nothing can tell the difference (inference, no hooks, no tracer),
and out of the way of everything that copies or changes a model."""

import copy
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import CI
from helpers import assert_same_arithmetic, tiny_model
from vithybrid.model import packed
from vithybrid.optimize import quantize_int8

pytestmark = pytest.mark.skipif(not packed.packing_available() and not CI,
                                reason="this torch build has no MKL packed GEMM")


def float32_bound(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """What float32 rounding may move each output: K terms, each product and partial sum rounded once."""
    k = x.shape[-1]
    magnitude = x.double().abs() @ layer.weight.double().abs().T + layer.bias.double().abs()
    return 2 * k * torch.finfo(torch.float32).eps * magnitude


def linear_layer(k: int, n: int, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(k, n)


@pytest.mark.parametrize("k, n", [(768, 2304), (3072, 768), (48, 20)])
def test_packed_products_equal_the_plain_ones_at_every_row_count(k, n):
    layer = linear_layer(k, n)
    with torch.inference_mode():
        for rows in (577, 1, 7, 1154):  # packed for the first; the others are checked once, then served
            x = torch.randn(rows, k)
            out = packed.linear(layer, x)
            exact = F.linear(x.double(), layer.weight.double(), layer.bias.double())
            assert ((out.double() - exact).abs() <= float32_bound(x, layer)).all()
            assert rows in packed.PACKS[layer].rows
        batched = torch.randn(2, 5, k)  # leading dimensions are rows too
        assert_same_arithmetic(packed.linear(layer, batched), F.linear(batched, layer.weight, layer.bias))


def test_a_pack_that_does_not_serve_a_row_count_is_made_again():
    """The check at a new row count: a pack whose layout does not fit (here: another matrix's) is replaced."""
    layer, other = linear_layer(64, 32), linear_layer(64, 32, seed=1)
    with torch.inference_mode():
        packed.linear(layer, torch.randn(10, 64))
        packed.PACKS[layer].weight = torch.ops.mkl._mkl_reorder_linear_weight(other.weight, 10)
        x = torch.randn(3, 64)
        assert_same_arithmetic(packed.linear(layer, x), F.linear(x, layer.weight, layer.bias))
        assert packed.PACKS[layer].rows == {3}
        assert_same_arithmetic(packed.linear(layer, x), F.linear(x, layer.weight, layer.bias))  # the new pack


def test_the_model_packs_in_inference_and_gives_the_plain_models_logits(monkeypatch):
    model, x = tiny_model(), torch.randn(2, 3, 60, 60)
    layers = [m for m in model.modules() if type(m) is nn.Linear and m is not model.classifier]
    with torch.inference_mode():
        logits = model(x).logits
    assert all(layer in packed.PACKS for layer in layers)
    monkeypatch.setattr(packed, "packing_available", lambda: False)
    with torch.inference_mode():
        assert_same_arithmetic(logits, model(x).logits)


def test_no_pack_where_autograd_records_or_a_hook_listens():
    model, x = tiny_model(), torch.randn(1, 3, 60, 60)
    qkv = model.vit.encoder.layer[0].attention.attention.qkv
    model(x).logits.sum().backward()  # training-style: gradients flow through the plain op
    assert qkv not in packed.PACKS and qkv.weight.grad is not None and qkv.weight.grad.abs().sum() > 0
    seen = []
    hook = qkv.register_forward_hook(lambda module, args, output: seen.append(output.shape))
    try:
        with torch.inference_mode():
            model(x)
    finally:
        hook.remove()
    assert seen == [(1, 17, 96)] and qkv not in packed.PACKS  # the hook saw the call; nothing packed behind it


def test_a_changed_weight_is_packed_again():
    layer, x = linear_layer(32, 16), torch.randn(4, 32)
    with torch.inference_mode():
        packed.linear(layer, x)
    with torch.no_grad():
        layer.weight.mul_(-2)  # an optimizer step, a load_state_dict: same storage, new version
    with torch.inference_mode():
        assert_same_arithmetic(packed.linear(layer, x), F.linear(x, layer.weight, layer.bias))


def test_models_that_packed_can_still_be_copied_and_quantized():
    """Packs live beside the modules: copy.deepcopy fails on a packed (opaque) tensor inside one."""
    model, x = tiny_model(), torch.randn(1, 3, 60, 60)
    with torch.inference_mode():
        logits = model(x).logits
    twin = copy.deepcopy(model)
    int8 = quantize_int8(model)
    with torch.inference_mode():
        assert_same_arithmetic(twin(x).logits, logits)
        assert int8(x).logits.argmax() == logits.argmax()


def test_the_environment_opts_out():
    code = "from vithybrid.model import packed; print(packed.packing_available())"
    for value, expected in (("0", "False"), ("1", str(packed.packing_available()))):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env={**os.environ, packed.OPT_OUT: value})
        assert result.stdout.strip() == expected, result.stderr
