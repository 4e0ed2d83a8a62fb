"""A content key for an image or array, so that a photo's analysis is found again whatever file it came from
(explorer.cache keys the app's analyses with it)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from PIL import Image


def image_key(image: Image.Image | np.ndarray | torch.Tensor) -> str:
    """A content hash of an image or array (pixels, shape and type), to key cache entries with."""
    array = np.ascontiguousarray(image.detach().cpu() if isinstance(image, torch.Tensor) else np.asarray(image))
    digest = hashlib.sha1(f"{array.shape}{array.dtype}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()
