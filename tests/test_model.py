"""Behaviour the reference does not have or gets wrong: interpolation, cached weight standardization."""

import subprocess
import sys

import pytest
import torch

from helpers import TINY, assert_same_arithmetic, tiny_model
from vithybrid.model.backbone import StdConv2d
from vithybrid.model.modeling import ATTENTION_KERNELS, cpu_inference_attention, eager_attention


def test_wrong_input_size_names_the_expected_size():
    with pytest.raises(ValueError, match=r"\(64x60\) doesn't match the model's 60x60.*interpolate_pos_encoding=True"):
        tiny_model()(torch.randn(1, 3, 64, 60))


def test_interpolation_is_identity_at_trained_size():
    model = tiny_model()
    x = torch.randn(2, 3, 60, 60)
    with torch.no_grad():
        assert_same_arithmetic(model(x, interpolate_pos_encoding=True).logits, model(x).logits)
    assert model.vit.embeddings.positions_for((4, 4)) is model.vit.embeddings.position_embeddings


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_interpolation_follows_the_real_feature_grid_for_non_square_inputs(attn):
    model = tiny_model()
    model.set_attn_implementation(attn)
    # 60 px -> 4 tokens (stride 16, SAME padding: ceil); 130 x 97 -> ceil(130/16) x ceil(97/16) = 9 x 7
    with torch.no_grad():
        out = model(torch.randn(2, 3, 130, 97), interpolate_pos_encoding=True, output_attentions=True)
    assert out.logits.shape == (2, 5) and torch.isfinite(out.logits).all()
    assert out.attentions[0].shape == (2, TINY["num_attention_heads"], 9 * 7 + 1, 9 * 7 + 1)


def test_resampled_positions_keep_a_smooth_field():
    """Bicubic resampling of a field that is constant along rows keeps it constant, and keeps CLS's own."""
    model = tiny_model()
    embeddings = model.vit.embeddings
    with torch.no_grad():
        rows = torch.arange(4.0).repeat_interleave(4)  # value = row index on the 4x4 grid
        embeddings.position_embeddings[0, 1:] = rows[:, None]
    positions = embeddings.positions_for((8, 5))
    assert positions.shape == (1, 8 * 5 + 1, TINY["hidden_size"])
    grid = positions[0, 1:, 0].reshape(8, 5)
    assert torch.allclose(grid, grid[:, :1].expand(8, 5), atol=1e-5)  # constant along each row
    assert torch.all(grid[1:, 0] >= grid[:-1, 0] - 1e-5)  # and still increasing down the rows
    assert torch.equal(positions[0, 0], embeddings.position_embeddings[0, 0])


def test_weight_standardization_is_cached_in_eval_and_recomputed_when_needed():
    model = tiny_model()
    conv = model.vit.embeddings.patch_embeddings.backbone.bit.embedder.convolution
    assert isinstance(conv, StdConv2d)
    calls = []
    original = conv._standardize
    conv._standardize = lambda w: calls.append(1) or original(w)
    x = torch.randn(1, 3, 60, 60)
    with torch.no_grad():
        first = model(x).logits
        model(x)
        assert len(calls) == 1  # eval: computed once, reused
        conv.weight.add_(torch.randn_like(conv.weight))  # a weight change invalidates it
        changed = model(x).logits
        assert len(calls) == 2 and not torch.allclose(changed, first)
    model.train()
    model(x)
    loss = model(x, labels=torch.tensor([1])).loss
    assert len(calls) == 4  # training: recomputed every forward, so gradients flow into the weights
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.eval()
    with torch.no_grad():
        model(x)
        model(x)
    assert len(calls) == 5  # the optimizer step changed the weight: computed once more, then reused
    standardized = conv.standardized_weight()
    flat = standardized.flatten(1)
    assert torch.allclose(flat.mean(1), torch.zeros(flat.shape[0]), atol=1e-5)
    assert torch.allclose(flat.var(1, unbiased=False), torch.ones(flat.shape[0]), atol=1e-3)


def test_weights_get_gradients_in_training():
    model = tiny_model().train()
    out = model(torch.randn(2, 3, 60, 60), labels=torch.tensor([0, 3]))
    out.loss.backward()
    conv = model.vit.embeddings.patch_embeddings.backbone.bit.embedder.convolution
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("act", ["gelu", "gelu_new", "relu", "selu", "quick_gelu", "silu"])
def test_activations_build_and_differ(act):
    x = torch.randn(1, 3, 60, 60)
    with torch.no_grad():
        assert torch.isfinite(tiny_model(hidden_act=act)(x).logits).all()
    if act != "gelu":
        with torch.no_grad():
            assert not torch.allclose(tiny_model(hidden_act=act)(x).logits, tiny_model(hidden_act="gelu")(x).logits)


def test_attention_gradients_follow_layer_order():
    model = tiny_model()
    x = torch.randn(2, 3, 60, 60)
    result = model.attention_with_gradients(x, class_index=2)
    with torch.no_grad():
        out = model(x, output_attentions=True)
    assert len(result.gradients) == len(result.attentions) == TINY["num_hidden_layers"]
    for attention, gradient, expected in zip(result.attentions, result.gradients, out.attentions):
        assert torch.allclose(attention, expected, atol=1e-6) and gradient.shape == attention.shape
    # finite differences: scaling layer 1's attention of head 0 by (1 + eps) changes logit 2 by eps * <grad, A>
    eps, layer = 1e-3, 1
    module = model.vit.encoder.layer[layer].attention.attention

    def logit_with_scaled_head(scale):
        original = module.forward

        def scaled(hidden, head_mask=None, output_attentions=False, cls_only=False, scores=None):
            mask = torch.ones(1, TINY["num_attention_heads"], 1, 1)
            mask[0, 0] = scale
            return original(hidden, mask, output_attentions, cls_only, scores)
        module.forward = scaled
        try:
            with torch.no_grad():
                return model(x).logits[:, 2].sum()
        finally:
            module.forward = original
    numeric = (logit_with_scaled_head(1 + eps) - logit_with_scaled_head(1 - eps)) / (2 * eps)
    analytic = (result.gradients[layer][:, 0] * result.attentions[layer][:, 0]).sum()
    assert torch.allclose(numeric, analytic, rtol=1e-2, atol=1e-4)


def test_import_needs_neither_gradio_nor_matplotlib():
    code = "import sys, vithybrid; print(sorted(m for m in ('gradio', 'matplotlib') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


def test_attention_gradients_with_frozen_weights():
    model = tiny_model().requires_grad_(False)
    x = torch.randn(1, 3, 60, 60)
    frozen = model.attention_with_gradients(x, class_index=1)
    trainable = tiny_model().attention_with_gradients(x, class_index=1)
    for a, b in zip(frozen.gradients, trainable.gradients):
        assert torch.allclose(a, b, atol=1e-6) and a.abs().sum() > 0
    assert not model.vit.embeddings._forward_hooks  # the temporary hook is gone


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_classification_computes_the_last_layer_for_cls_alone_with_the_same_logits(attn):
    model = tiny_model()
    model.set_attn_implementation(attn)
    x = torch.randn(2, 3, 60, 60)
    shapes = []
    hook = model.vit.encoder.layer[-1].register_forward_hook(lambda m, args, out: shapes.append(out[0].shape))
    with torch.no_grad():
        fast = model(x).logits
        full = model(x, output_hidden_states=True)
        with model.vit.encoder.computing_cls_only():
            base = model.vit(x).last_hidden_state
        with_maps = model(x, output_attentions=True)  # the maps stay whole, the last layer's outputs do not
    assert shapes == [(2, 1, TINY["hidden_size"]), (2, 17, TINY["hidden_size"]), (2, 1, TINY["hidden_size"]),
                      (2, 1, TINY["hidden_size"])]
    torch.testing.assert_close(fast, full.logits, atol=1e-6, rtol=0)
    torch.testing.assert_close(with_maps.logits, full.logits, atol=1e-6, rtol=0)
    with torch.no_grad():
        reference_maps = model(x, output_attentions=True, output_hidden_states=True).attentions
    for ours, reference in zip(with_maps.attentions, reference_maps, strict=True):
        assert ours.shape == (2, TINY["num_attention_heads"], 17, 17)
        torch.testing.assert_close(ours, reference, atol=1e-7, rtol=0)
    torch.testing.assert_close(base, model.vit.layernorm(full.hidden_states[-1])[:, :1], atol=1e-6, rtol=0)
    model.train()  # in training every token is computed, so dropout draws what the reference draws
    with torch.no_grad():
        model(x)
    hook.remove()
    assert shapes[-1] == (2, 17, TINY["hidden_size"])
    assert not model.vit.encoder.cls_only  # the setting lasts one call


@pytest.mark.parametrize("output_attentions", [True, False])
@pytest.mark.parametrize("queries", [17, 1])
@pytest.mark.parametrize("masked", [True, False])
def test_cpu_inference_attention_is_the_eager_attention(output_attentions, queries, masked):
    attention = tiny_model().vit.encoder.layer[0].attention.attention.eval()
    x = torch.randn(3, 17, TINY["hidden_size"])
    head_mask = torch.rand(3, TINY["num_attention_heads"], 1, 1) if masked else None
    q, k, v = attention.qkv(x).unflatten(-1, (3, attention.num_heads, attention.head_dim)).permute(2, 0, 3, 1, 4)
    q = q[:, :, :queries]  # the CLS-only last layer asks for one query's row
    expected_context, expected_probs = eager_attention(attention, q, k, v, head_mask, output_attentions, None)
    scores = torch.full((5,), float("nan"))  # too small: grown in place, and whatever it held is overwritten
    with torch.no_grad():
        context, probs = cpu_inference_attention(attention, q.detach(), k.detach(), v.detach(), head_mask,
                                                 output_attentions, scores)
    assert scores.numel() == TINY["num_attention_heads"] * queries * 17
    torch.testing.assert_close(context, expected_context.detach(), atol=1e-6, rtol=0)
    if output_attentions:
        torch.testing.assert_close(probs, expected_probs.detach(), atol=1e-7, rtol=0)
        assert probs.untyped_storage().data_ptr() != scores.untyped_storage().data_ptr()  # maps never share it
    else:
        assert probs is None


def test_eager_path_picks_the_plain_kernel_only_when_autograd_or_dropout_need_it(monkeypatch):
    model = tiny_model()
    model.set_attn_implementation("eager")
    first = model.vit.encoder.layer[0].attention.attention
    calls = []
    for name, kernel in dict(ATTENTION_KERNELS).items():
        def recorded(module, *args, _name=name, _kernel=kernel):
            if module is first:
                calls.append(_name)
            return _kernel(module, *args)
        monkeypatch.setitem(ATTENTION_KERNELS, name, recorded)
    x = torch.randn(1, 3, 60, 60)
    with torch.no_grad():
        model(x)
    model(x)  # the weights want gradients
    model.requires_grad_(False)(x)
    model.attention_with_gradients(x)  # gradients with respect to the attention itself
    with torch.no_grad():
        model.train()(x)  # dropout
    assert calls == ["cpu_inference", "eager", "cpu_inference", "eager", "eager"]


def test_in_place_backbone_ops_leave_what_a_hook_kept_alone():
    """The backbone's in-place ReLUs touch only tensors no module returned: what a forward hook on a block's last
    norm kept stays what the norm returned, and the logits are the same with the hook as without."""
    from vithybrid import ViTHybridForImageClassification
    from vithybrid.checkpoints.shipped import resolve_model

    model = ViTHybridForImageClassification.from_pretrained(resolve_model("shapes")).eval()
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    norm3 = model.vit.embeddings.patch_embeddings.backbone.bit.encoder.stages[0].layers[0].norm3
    with torch.inference_mode():
        plain = model(pixels).logits
        kept = {}
        hook = norm3.register_forward_hook(lambda module, args, out: kept.update(tensor=out, copy=out.clone()))
        hooked = model(pixels).logits
        hook.remove()
    assert torch.equal(kept["tensor"], kept["copy"])  # the very tensor the hook kept, against its copy
    assert_same_arithmetic(hooked, plain)  # two forwards: buffers may land elsewhere and steer kernels


# ---------------------------------------------------------------------------------------------- token_mask

def cells_mask(*rows: list[int], cells: int = 16) -> torch.Tensor:
    """A (len(rows), cells) bool mask keeping the listed cells of each image."""
    mask = torch.zeros(len(rows), cells, dtype=torch.bool)
    for i, kept in enumerate(rows):
        mask[i, kept] = True
    return mask


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_a_token_mask_that_keeps_every_token_changes_nothing(attn):
    model = tiny_model()
    model.set_attn_implementation(attn)
    x = torch.randn(2, 3, 60, 60)
    with torch.no_grad():
        plain = model(x, output_attentions=True)
        kept = model(x, output_attentions=True, token_mask=torch.ones(2, 16, dtype=torch.bool))
    torch.testing.assert_close(kept.logits, plain.logits, atol=1e-5, rtol=0)
    for a, b in zip(kept.attentions, plain.attentions, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_dropping_tokens_is_running_the_encoder_on_the_kept_tokens(attn):
    """The masked forward against the layers run by hand on CLS and the kept tokens of the embeddings' output
    (each with its own position embedding), with a different choice of cells per image."""
    model = tiny_model()
    model.set_attn_implementation(attn)
    x = torch.randn(2, 3, 60, 60)
    mask = cells_mask([0, 5, 6, 15], [1, 2, 9, 12])
    with torch.no_grad():
        out = model(x, token_mask=mask, output_attentions=True)
        logits = model(x, token_mask=mask).logits  # SDPA where chosen: no maps asked for
        z = model.vit.embeddings(x)
        z = torch.cat([z[:, :1], torch.stack([z[0, 1:][[0, 5, 6, 15]], z[1, 1:][[1, 2, 9, 12]]])], dim=1)
        maps = []
        for layer in model.vit.encoder.layer:
            z, probs = layer(z, None, True)
            maps.append(probs)
        expected = model.classifier(model.vit.layernorm(z)[:, 0])
        unmasked = model(x).logits
    torch.testing.assert_close(out.logits, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(out.logits, unmasked, atol=1e-3)  # the dropped tokens mattered
    for ours, by_hand in zip(out.attentions, maps, strict=True):
        assert ours.shape == (2, TINY["num_attention_heads"], 5, 5)
        torch.testing.assert_close(ours, by_hand, atol=1e-6, rtol=0)


def test_eager_and_sdpa_agree_on_a_masked_forward():
    model = tiny_model()
    x = torch.randn(3, 3, 60, 60)
    mask = cells_mask([3, 4, 7], [0, 1, 2], [10, 11, 14])
    with torch.no_grad():
        model.set_attn_implementation("eager")
        eager = model(x, token_mask=mask).logits
        model.set_attn_implementation("sdpa")
        sdpa = model(x, token_mask=mask).logits
    torch.testing.assert_close(eager, sdpa, atol=1e-5, rtol=0)


def test_a_token_mask_works_on_an_interpolated_grid_and_with_gradients_of_the_maps():
    model = tiny_model()
    x = torch.randn(2, 3, 130, 97)  # a 9x7 grid
    mask = torch.rand(2, 63, generator=torch.Generator().manual_seed(0)).argsort(1) < 20  # 20 random cells each
    result = model.attention_with_gradients(x, class_index=1, interpolate_pos_encoding=True, token_mask=mask)
    with torch.no_grad():
        out = model(x, interpolate_pos_encoding=True, token_mask=mask, output_attentions=True)
    torch.testing.assert_close(result.logits, out.logits, atol=1e-5, rtol=0)
    for attention, gradient, expected in zip(result.attentions, result.gradients, out.attentions, strict=True):
        assert attention.shape == gradient.shape == (2, TINY["num_attention_heads"], 21, 21)
        torch.testing.assert_close(attention, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mask, message", [
    (torch.ones(2, 15, dtype=torch.bool), r"bool tensor of shape \(batch, rows \* cols\) = \(2, 16\) for this 4x4 "
                                          r"token grid, got bool \(2, 15\)"),
    (torch.ones(2, 16), r"got float32 \(2, 16\)"),
    (torch.ones(1, 16, dtype=torch.bool), r"got bool \(1, 16\)"),
    ([[True] * 16] * 2, r"got list"),
    (cells_mask([1, 2], [3]), r"keeps \[2, 1\] tokens per image: every image in a batch must keep the same number"),
])
def test_a_bad_token_mask_gets_a_clear_error(mask, message):
    with pytest.raises(ValueError, match=message):
        tiny_model()(torch.randn(2, 3, 60, 60), token_mask=mask)


# ---------------------------------------------------------------------------------------------- logit lens

@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_the_logit_lens_ends_at_the_logits_and_reads_each_layer(attn):
    """The last layer's reading is the logits; layer i's is the logits of the same model cut after layer i."""
    model = tiny_model(num_hidden_layers=3)
    model.set_attn_implementation(attn)
    x = torch.randn(2, 3, 60, 60)
    with torch.no_grad():
        lens = model.logit_lens(x)
        logits = model(x).logits
        layers = model.vit.encoder.layer
        cut = []
        for i in range(len(layers)):
            model.vit.encoder.layer = layers[:i + 1]
            cut.append(model(x).logits)
        model.vit.encoder.layer = layers
    assert lens.shape == (2, 3, TINY["num_labels"])
    torch.testing.assert_close(lens[:, -1], logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(lens, torch.stack(cut, dim=1), atol=1e-5, rtol=0)


def test_the_logit_lens_on_a_non_square_grid_and_a_token_mask():
    model = tiny_model()
    x = torch.randn(2, 3, 130, 97)  # a 9x7 grid
    mask = torch.ones(2, 63, dtype=torch.bool)
    mask[:, :9] = False
    with torch.no_grad():
        lens = model.logit_lens(x, token_mask=mask, interpolate_pos_encoding=True)
        logits = model(x, token_mask=mask, interpolate_pos_encoding=True).logits
    assert lens.shape == (2, TINY["num_hidden_layers"], TINY["num_labels"])
    torch.testing.assert_close(lens[:, -1], logits, atol=1e-5, rtol=0)
