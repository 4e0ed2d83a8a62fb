"""A small LRU cache for what the model computed per image, so that changing a layer, head, fusion,
discard ratio, colormap or opacity re-renders without running the model again.

One image's eager attentions and their gradients take 2 x layers x heads x N^2 x 4 bytes: about
384 MB for the 384-pixel base model (12 layers, 12 heads, 577 tokens), so keep `max_entries` small,
and keep the class-specific map rather than the gradients (it depends on nothing a re-render changes,
only on the class, and another class needs another backward pass anyway).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

import numpy as np
import torch
from PIL import Image

Value = TypeVar("Value")


def image_key(image: Image.Image | np.ndarray | torch.Tensor) -> str:
    """A content hash of an image or array (pixels, shape and type), to key cache entries with."""
    array = np.ascontiguousarray(image.detach().cpu() if isinstance(image, torch.Tensor) else np.asarray(image))
    digest = hashlib.sha1(f"{array.shape}{array.dtype}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


class MapCache(Generic[Value]):
    """Up to `max_entries` values, the least recently used evicted first; safe across threads.
    Two threads missing the same key at once may both compute it (the model never runs under the lock)."""

    def __init__(self, max_entries: int = 4):
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, Value] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], Value]) -> Value:
        """The value for `key`, calling `compute()` only when it is not cached."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        value = compute()
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
