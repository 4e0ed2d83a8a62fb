"""How the process allocates activation memory on the CPU (glibc's malloc).

By default glibc serves every block over its mmap threshold (at most 32 MB) with a fresh mmap and returns it
to the OS when freed, and trims the heap's top often; the kernel then faults in and zeroes the pages of the
next forward's activations one by one. For ViT-Hybrid-Base at 384x384 that is about 17,000 page faults per
image at batch 1 and 300,000 at batch 4 (the backbone's first-stage maps pass 32 MB there), 10-15% of a
forward on a 2-core CPU, and most of the cost of returning every attention map. ONNX Runtime and OpenVINO
avoid it with memory arenas; glibc does the same once told to keep freed blocks, which the model does on
its first CPU forward (`retain_freed_memory_once`). The cost: the process keeps its peak memory for reuse
instead of shrinking after a large batch. VITHYBRID_KEEP_FREED_MEMORY=0 in the environment opts out.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
OPT_OUT = "VITHYBRID_KEEP_FREED_MEMORY"


def keep_freed_memory(limit_bytes: int = 1 << 30) -> bool:
    """Let glibc keep freed blocks of up to `limit_bytes` for reuse instead of returning them to the OS.
    Returns whether the setting took (glibc only; elsewhere nothing is changed)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        kept = libc.mallopt(_M_MMAP_THRESHOLD, limit_bytes) and libc.mallopt(_M_TRIM_THRESHOLD, 2 * limit_bytes)
        return bool(kept)
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False


@functools.cache
def retain_freed_memory_once() -> bool:
    """`keep_freed_memory()`, once per process, unless VITHYBRID_KEEP_FREED_MEMORY=0."""
    return os.environ.get(OPT_OUT, "").strip() != "0" and keep_freed_memory()
