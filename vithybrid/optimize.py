"""Opt-in speed-ups for inference: int8 linear layers and torch.compile.

None of these changes what a checkpoint is: they act on a loaded model, and
`save_pretrained` of the original model is unaffected.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

# The model keeps freed memory itself since it became the default; the name stays importable from here.
from .model.memory import keep_freed_memory  # noqa: F401


def int8_engine() -> str:
    """The quantized engine int8 layers are packed for: oneDNN where the CPU has AMX tiles (its int8 matrix
    multiplies then run on them, faster than fbgemm's AVX-512 VNNI kernels: README, "Faster inference"), else
    PyTorch's default (x86: fbgemm; oneDNN is unmeasured there)."""
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()  # private, hence the fallback
    return "onednn" if amx and "onednn" in torch.backends.quantized.supported_engines else \
        torch.backends.quantized.engine


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of `model` whose linear layers run in int8 on the CPU (dynamic quantization: weights
    stored as int8 with one scale per output channel, activations quantized per batch on the fly).
    Every other weight is shared with `model`, so the copy costs only its int8 weights in memory.

    The backbone's convolutions, the norms and the attention products stay float32; the linear
    layers are 73% of ViT-Hybrid-Base's FLOPs. Attention maps stay real: the eager path still
    computes float32 softmax probabilities, from int8-projected queries and keys. The accuracy cost
    is measured in benchmarks/speed.py and tests/test_optimize.py.
    """
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("int8 mode runs on the CPU only (PyTorch's dynamic quantization has no GPU kernels)")
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    # Copy the modules but share every tensor: the copy's float linear weights are replaced by int8 ones,
    # and the rest (backbone, norms, embeddings) would be a second copy of the same numbers.
    shared = {id(tensor): tensor for tensor in [*model.parameters(), *model.buffers()]}
    # Packed weights remember their engine, so the process-wide setting is needed only while packing.
    engine, torch.backends.quantized.engine = torch.backends.quantized.engine, int8_engine()
    try:
        with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao; it works in 2.13
            warnings.simplefilter("ignore")
            return quantize_dynamic(copy.deepcopy(model, shared).eval(), {nn.Linear: per_channel_dynamic_qconfig},
                                    dtype=torch.qint8, inplace=True)
    finally:
        torch.backends.quantized.engine = engine


def compile_model(model: nn.Module) -> nn.Module:
    """`torch.compile` (inductor) of the model: a wrapper that shares its weights, while the model
    itself stays eager (for gradients and anything compile does not cover). The first call of each
    input shape and attention path compiles, tens of seconds on a small CPU; attribute access and
    `set_attn_implementation` pass through to the model."""
    return torch.compile(model, dynamic=False)
