"""Opt-in speed-ups for inference: int8 linear layers, torch.compile, and reuse of freed memory.

None of these changes what a checkpoint is: they act on a loaded model (or, `keep_freed_memory`, on the
process, which only a program's entry point should decide), and `save_pretrained` of the original model is
unaffected.
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import os
import sys
import warnings

import torch
from torch import nn

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # glibc's mallopt parameters (malloc.h)
OPT_OUT = "VITHYBRID_KEEP_FREED_MEMORY"
_kept_below = 0  # the block size below which freed memory stays with the process, once keep_freed_memory() took


def keep_freed_memory(limit_bytes: int = 1 << 30) -> bool:
    """Let glibc's malloc keep freed blocks of up to `limit_bytes` for reuse instead of returning them to the OS,
    for the whole process: call it once at a program's start (the CLIs, the app and the benchmarks do); the
    library itself never does. Returns whether the setting took (glibc only; elsewhere, or with
    VITHYBRID_KEEP_FREED_MEMORY=0 in the environment, nothing is changed).

    By default glibc serves every block over its mmap threshold (at most 32 MB) with a fresh mmap and returns
    it to the OS when freed, and trims the heap's top often; the kernel then faults in and zeroes the pages of
    the next forward's activations one by one. For ViT-Hybrid-Base at 384x384 that is about 17,000 page faults
    per image at batch 1 and 300,000 at batch 4, 10-15% of a forward on a 2-core CPU, and most of the cost of
    returning every attention map. ONNX Runtime and OpenVINO avoid it with memory arenas; this does the same.
    It also has every thread allocate from the main heap (one arena): glibc gives threads arenas of their own,
    built of 64 MB heaps that are unmapped as soon as they empty and that cannot hold a larger block at all, so a
    thread that runs the model (a server's model thread) would fault in fresh pages on every pass whatever the
    thresholds: there a photo's maps (explorer's backward and rebuilt attentions) took 1.5-2x as long as in the
    main thread. Python's own small objects never come here, so the one lock costs little.
    The cost: the process keeps its peak memory for reuse instead of shrinking after a large batch."""
    if os.environ.get(OPT_OUT, "").strip() == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        # A trim threshold of -1 never trims the heap's top (mallopt(3)), which keeps what reserve_memory touched
        # (the former 2 * limit_bytes overflowed C's int to the same effect, for the default limit only).
        kept = (libc.mallopt(_M_MMAP_THRESHOLD, limit_bytes) and libc.mallopt(_M_TRIM_THRESHOLD, -1)
                and libc.mallopt(_M_ARENA_MAX, 1))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    global _kept_below
    _kept_below = limit_bytes if kept else 0
    return bool(kept)


def reserve_memory(megabytes: float) -> bool:
    """Where keep_freed_memory() took, touch `megabytes` of fresh memory now and free it: glibc keeps it, so the next
    allocations reuse pages already mapped. For a server about to hold many activations at once (explorer's passes
    hold their graphs between the labels and the maps): without it, the first batches that hold them fault every
    page in (on this project's 2-core virtual machine a batch of 8 photos' recording forward took 1.0-1.4 s per
    photo while earlier batches' graphs were held, with 555,000 page faults, and 0.52-0.59 s in reserved memory).
    The process then holds that memory from the start. Returns whether it did (nothing is done where freed memory
    is not kept: it would go straight back to the OS)."""
    if not _kept_below or megabytes <= 0:
        return False
    block = min(256 << 20, _kept_below // 2)  # below the mmap threshold: from the heap, which keeps it
    total = int(megabytes * (1 << 20))
    blocks = [torch.ones(min(block, total - start), dtype=torch.uint8) for start in range(0, total, block)]
    del blocks
    return True


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
