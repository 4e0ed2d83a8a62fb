"""Opt-in speed-ups for inference: int8 linear layers, torch.compile, and a CPU allocator setting.

None of these changes what a checkpoint is: they act on a loaded model (or the process), and
`save_pretrained` of the original model is unaffected.
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import sys
import warnings

import torch
from torch import nn

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory(limit_bytes: int = 1 << 30) -> bool:
    """Let glibc keep freed blocks of up to `limit_bytes` for reuse instead of returning them to the OS.

    By default every activation over 32 MB (and, after trimming, many smaller ones) is a fresh mmap,
    whose pages the kernel faults in and zeroes one by one on first touch: about 90,000 page faults
    per 384x384 forward, 10-15% of the time on a 2-core CPU, most of it in the eager path's
    577x577 score matrices. With this, the second forward allocates from memory already mapped.
    The cost: the process keeps its peak memory (it does not shrink after a large batch).
    Returns whether the setting took (glibc only; elsewhere nothing is changed).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        kept = libc.mallopt(_M_MMAP_THRESHOLD, limit_bytes) and libc.mallopt(_M_TRIM_THRESHOLD, 2 * limit_bytes)
        return bool(kept)
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False


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
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao; it works in 2.13
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(model, shared).eval(), {nn.Linear: per_channel_dynamic_qconfig},
                                dtype=torch.qint8, inplace=True)


def compile_model(model: nn.Module) -> nn.Module:
    """`torch.compile` (inductor) of the model: a wrapper that shares its weights, while the model
    itself stays eager (for gradients and anything compile does not cover). The first call of each
    input shape and attention path compiles, tens of seconds on a small CPU; attribute access and
    `set_attn_implementation` pass through to the model."""
    return torch.compile(model, dynamic=False)
