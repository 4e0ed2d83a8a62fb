"""Linear layers whose weights are packed once for the CPU's GEMM, instead of on every call.

A GEMM library copies the weight matrix into its kernel's panel layout at every call. For ViT-Hybrid-Base at
384x384 (577 tokens per image) that copy is a tenth of each product: the whole forward at batch 1 takes 0.90x
the time with packed weights (a 2-core Xeon, benchmarks/runtimes.py). ONNX Runtime and OpenVINO pack at load;
this packs on the first CPU inference forward, with MKL's packed GEMM (the ops torch.compile's CPU freezing
uses). The cost: a packed copy beside each linear weight, about as large (~340 MB for the base model), kept
until the model is freed. VITHYBRID_PREPACK=0 in the environment opts out.
"""

from __future__ import annotations

import functools
import os
import weakref
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

OPT_OUT = "VITHYBRID_PREPACK"


@dataclass
class Pack:
    key: tuple  # the weight's storage and version when packed
    weight: torch.Tensor  # MKL's packed copy (an opaque tensor: it cannot be copied, and must not move)
    rows: set[int] = field(default_factory=set)  # the row counts it is known to serve


# Beside the modules, not in them: copy.deepcopy (quantize_int8, EMA copies) fails on an opaque tensor, and a
# module that is freed takes its pack with it.
PACKS: weakref.WeakKeyDictionary[nn.Linear, Pack] = weakref.WeakKeyDictionary()


@functools.cache
def packing_available() -> bool:
    """MKL's packed GEMM is in this torch build, and VITHYBRID_PREPACK=0 does not opt out."""
    if os.environ.get(OPT_OUT, "").strip() == "0" or not torch.backends.mkl.is_available():
        return False
    try:
        return torch.ops.mkl._mkl_linear is not None and torch.ops.mkl._mkl_reorder_linear_weight is not None
    except (AttributeError, RuntimeError):
        return False


def exporting() -> bool:
    return getattr(torch.compiler, "is_exporting", lambda: False)()  # torch 2.6+


def packable(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether `module(x)` may run on a packed weight: a plain nn.Linear without hooks, float32 on the CPU, nothing
    recording gradients, and no tracer, compiler or exporter looking (they get the plain op)."""
    hooks = (module._forward_hooks or module._forward_pre_hooks or nn.modules.module._global_forward_hooks
             or nn.modules.module._global_forward_pre_hooks)
    weight = module.weight if type(module) is nn.Linear else None
    return (weight is not None and not hooks and type(x) is torch.Tensor and x.device.type == "cpu"
            and x.dtype == weight.dtype == torch.float32 and x.numel() > 0
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
            and not (torch.jit.is_tracing() or torch.compiler.is_compiling() or exporting())
            and packing_available())


def linear(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """module(x), on a packed weight where `packable` allows (the same product up to float32 rounding)."""
    if not packable(module, x):
        return module(x)
    weight, rows = module.weight, x.numel() // x.shape[-1]
    key = (weight.data_ptr(), weight._version)
    pack = PACKS.get(module)
    if pack is None or pack.key != key:
        pack = PACKS[module] = Pack(key, torch.ops.mkl._mkl_reorder_linear_weight(weight.detach(), rows), {rows})
    if rows in pack.rows:
        return torch.ops.mkl._mkl_linear(x, pack.weight, weight, module.bias, rows)
    # MKL packs for a row count. Its layout has served every count here (1 to 9232 rows, AVX-512), but no document
    # promises that, so the first product at each new count is checked against the unpacked one: float32 rounding
    # leaves ~1e-6 of the largest value, a layout that does not fit misses by the values' own size. A pack that
    # fails is made again for this count.
    out = torch.ops.mkl._mkl_linear(x, pack.weight, weight, module.bias, rows)
    expected = F.linear(x, weight, module.bias)
    if (out - expected).abs().amax() <= 1e-3 * expected.abs().amax():
        pack.rows.add(rows)
        return out
    PACKS[module] = Pack(key, torch.ops.mkl._mkl_reorder_linear_weight(weight.detach(), rows), {rows})
    return expected
