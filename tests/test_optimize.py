"""The fast paths against the reference: fused QKV (state dicts in the Hub layout), int8, torch.compile,
and the allocator setting (counted in page faults, not seconds)."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from helpers import assert_same_arithmetic, tiny_model
from oracle.cases import CASES
from test_reference import LOGITS_ATOL, close, load_case
from vithybrid import ViTHybridForImageClassification, ViTHybridImageProcessor
from vithybrid.optimize import compile_model, keep_freed_memory, quantize_int8
from vithybrid.training.shapes import sample
from vithybrid.checkpoints.shipped import resolve_model


def test_state_dict_keeps_the_hub_layout_and_fuses_on_load():
    model = tiny_model()
    state = model.state_dict()
    layer = "vit.encoder.layer.0.attention.attention"
    assert not any(".qkv." in key for key in state)
    fused = model.vit.encoder.layer[0].attention.attention.qkv
    for i, name in enumerate(("query", "key", "value")):  # the fused rows, in the Hub's order
        assert torch.equal(state[f"{layer}.{name}.weight"], fused.weight[i * 32:(i + 1) * 32])
        assert torch.equal(state[f"{layer}.{name}.bias"], fused.bias[i * 32:(i + 1) * 32])
    other = tiny_model(seed=1)
    other.load_state_dict(state)
    x = torch.randn(1, 3, 60, 60)
    with torch.no_grad():
        assert_same_arithmetic(other(x).logits, model(x).logits)
    del state[f"{layer}.key.weight"]
    with pytest.raises(RuntimeError, match=rf"Missing key\(s\).*{layer}\.key\.weight"):
        other.load_state_dict(state)


@pytest.mark.parametrize("name", CASES)
def test_int8_stays_close_to_the_reference(oracle_dir, name):
    inputs, expected = load_case(oracle_dir, name)
    model = ViTHybridForImageClassification.from_pretrained(oracle_dir / name)
    quantized = quantize_int8(model)
    int8_linear = torch.ao.nn.quantized.dynamic.Linear
    assert sum(isinstance(m, int8_linear) for m in quantized.modules()) == \
        sum(isinstance(m, torch.nn.Linear) for m in model.modules())  # every linear layer, in a copy
    assert not any(isinstance(m, int8_linear) for m in model.modules())
    model_tensors = {t.data_ptr() for t in model.parameters()}
    assert {t.data_ptr() for t in quantized.parameters()} < model_tensors  # shared, not copied
    with torch.no_grad():
        for attn in ("eager", "sdpa"):
            quantized.set_attn_implementation(attn)
            logits = quantized(inputs["pixel_values"]).logits
            reference = expected[f"{attn}.logits"]
            assert F.cosine_similarity(logits.flatten(), reference.flatten(), dim=0) > 0.99
            assert not torch.allclose(logits, reference, atol=1e-6)  # really int8
        out = quantized(inputs["pixel_values"], output_attentions=True)
    for attention in out.attentions:  # maps are still probabilities
        torch.testing.assert_close(attention.sum(-1), torch.ones(attention.shape[:-1]))


def test_int8_agrees_with_float32_on_the_shapes_model():
    path = resolve_model("shapes")
    model = ViTHybridForImageClassification.from_pretrained(path)
    processor = ViTHybridImageProcessor.from_pretrained(path)
    quantized = quantize_int8(model)
    pixels = processor([sample(20261124, i, model.config.image_size).image for i in range(400)])["pixel_values"]
    with torch.no_grad():
        full, int8 = model(pixels).logits, quantized(pixels).logits
    agreement = (full.argmax(-1) == int8.argmax(-1)).float().mean().item()
    print(f"int8 top-1 agreement with float32 on 400 shapes: {agreement:.2%}")
    assert agreement >= 0.99
    assert F.cosine_similarity(full, int8).min() > 0.99


def test_int8_refuses_a_gpu_model():
    model = tiny_model()
    model.to("meta")  # stands in for a non-CPU device without needing one
    with pytest.raises(ValueError, match="CPU only"):
        quantize_int8(model)


def test_compiled_model_matches_the_reference_on_both_paths(oracle_dir):
    name = "bottleneck_same"
    inputs, expected = load_case(oracle_dir, name)
    model = ViTHybridForImageClassification.from_pretrained(oracle_dir / name)
    compiled = compile_model(model)
    assert compiled.config is model.config and compiled.forward is not model.forward  # a wrapper, same weights
    with torch.no_grad():
        for attn in ("sdpa", "eager"):
            compiled.set_attn_implementation(attn)
            close(compiled(inputs["pixel_values"]).logits, expected[f"{attn}.logits"], LOGITS_ATOL)
        out = compiled(inputs["pixel_values"], output_attentions=True)
    assert len(out.attentions) == CASES[name]["config"]["num_hidden_layers"]
    for i, attention in enumerate(out.attentions):
        close(attention, expected[f"eager.attentions.{i}"], 1e-5)


FAULTS_SCRIPT = textwrap.dedent("""
    import ctypes, resource, sys, threading
    # PR_SET_THP_DISABLE: faults are counted in base pages, whatever the machine's transparent huge pages setting
    ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)
    import torch
    from vithybrid import ViTHybridConfig, ViTHybridForImageClassification
    from vithybrid.optimize import keep_freed_memory, reserve_memory
    if sys.argv[1] == "opt-in":
        assert keep_freed_memory() is True
    def resident_mb():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize() / 2 ** 20

    # Then 200 MB of new tensors: in memory the process holds already (resident: counted whatever the page size,
    # transparent huge pages included), or grown.
    reserved = reserve_memory(256)
    before = resident_mb()
    fresh = torch.ones(200 << 20, dtype=torch.uint8)
    print(reserved, round(resident_mb() - before))
    del fresh
    torch.set_num_threads(1)
    # ViT-Hybrid-Base's token count and widths (577 tokens, 12 heads), two layers, a small backbone
    config = ViTHybridConfig(image_size=384, num_hidden_layers=2, backbone_featmap_shape=[1, 64, 24, 24],
                             backbone_config=dict(depths=[1, 1, 1], hidden_sizes=[16, 32, 64], embedding_size=8,
                                                  num_groups=4, out_features=["stage3"]))
    model = ViTHybridForImageClassification(config).eval()
    x = torch.randn(2, 3, 384, 384)

    @torch.inference_mode()
    def settled_faults():
        for _ in range(3):  # the heap settles within two forwards
            model(x, output_attentions=True)
        faults = []
        for _ in range(3):  # the fewest of three: now and then something else in the process maps memory too
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            out = model(x, output_attentions=True)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
            del out
        print(min(faults))

    settled_faults()  # in the main thread, then in another (a server's model thread)
    thread = threading.Thread(target=settled_faults)
    thread.start()
    thread.join()
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a glibc setting")
def test_the_model_leaves_malloc_alone_and_keep_freed_memory_spares_the_page_faults(monkeypatch):
    """A plain CPU forward leaves glibc's malloc as the process set it: every settled forward still faults in
    fresh pages for its large activations (a library must not change a process-wide setting). A program that
    calls `keep_freed_memory()` at its start reuses the last forward's memory instead, in the main thread and in
    another one (glibc's own arena of a thread unmaps its emptied heaps), unless VITHYBRID_KEEP_FREED_MEMORY=0; and
    memory it reserves (`reserve_memory`) is there for new tensors: they grow the process no more. Without the
    opt-in, reserving does nothing."""
    def faults(mode: str) -> tuple[bool, int, list[int]]:
        env = {k: v for k, v in os.environ.items() if k != "VITHYBRID_KEEP_FREED_MEMORY"}
        run = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT, mode], capture_output=True, text=True, check=True,
                             env=env)
        reserved, grown_mb, *forwards = run.stdout.split()
        return reserved == "True", int(grown_mb), [int(count) for count in forwards[-2:]]

    (reserved, grown_plain, (plain, plain_thread)) = faults("plain")
    (reserved_opted_in, grown_opted_in, (opted_in, opted_in_thread)) = faults("opt-in")
    print(f"page faults in a settled forward, main thread / another: {plain} / {plain_thread} by default, "
          f"{opted_in} / {opted_in_thread} after keep_freed_memory(); a new 200 MB tensor grew the process by "
          f"{grown_plain} MB by default, {grown_opted_in} MB in reserved memory")
    assert min(plain, plain_thread) > 5000  # the returned 2 x 12 x 577 x 577 maps alone are 32 MB per layer
    assert max(opted_in, opted_in_thread) < min(plain, plain_thread) / 20
    assert not reserved and grown_plain >= 190  # nothing reserved: the tensor's memory is new
    assert reserved_opted_in and grown_opted_in < 10
    monkeypatch.setenv("VITHYBRID_KEEP_FREED_MEMORY", "0")
    assert keep_freed_memory() is False  # declined before touching the process


def test_int8_packs_for_the_engine_the_cpu_suits_and_leaves_the_process_setting(monkeypatch):
    """oneDNN (AMX int8 matrix multiplies) where the CPU has AMX tiles, PyTorch's default engine elsewhere; the
    process-wide engine is what it was before, and the int8 copy answers like float32 either way."""
    from vithybrid.optimize import int8_engine

    model = ViTHybridForImageClassification.from_pretrained(resolve_model("shapes")).eval()
    processor = ViTHybridImageProcessor.from_pretrained(resolve_model("shapes"))
    pixels = processor([sample(20261202, i, model.config.image_size).image for i in range(16)],
                       return_tensors="pt")["pixel_values"]
    before = torch.backends.quantized.engine
    for amx in (False, True):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx, raising=False)
        expected = "onednn" if amx and "onednn" in torch.backends.quantized.supported_engines else before
        assert int8_engine() == expected
        with torch.inference_mode():
            logits, int8_logits = model(pixels).logits, quantize_int8(model)(pixels).logits
        assert torch.backends.quantized.engine == before
        assert F.cosine_similarity(int8_logits, logits).min() > 0.99, expected
        assert torch.equal(int8_logits.argmax(-1), logits.argmax(-1)), expected
