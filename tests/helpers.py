"""Small builders shared by the tests: tiny random models and checkpoints made with our own code."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from oracle.cases import CASES
from vithybrid import ViTHybridConfig, ViTHybridForImageClassification, ViTHybridImageProcessor

TINY = CASES["bottleneck_same"]["config"]  # 60x60 input, 4x4 tokens, 5 labels


def tiny_config(**changes) -> ViTHybridConfig:
    return ViTHybridConfig(**{**copy.deepcopy(TINY), **changes})


def tiny_model(seed: int = 0, **changes) -> ViTHybridForImageClassification:
    torch.manual_seed(seed)
    model = ViTHybridForImageClassification(tiny_config(**changes)).eval()
    with torch.no_grad():  # non-trivial norms and biases, so every term matters
        for name, p in model.named_parameters():
            if name.endswith("bias") or p.dim() == 1:
                p.add_(0.2 * torch.randn_like(p))
    return model


def tiny_checkpoint(folder: Path, seed: int = 0, **changes) -> Path:
    """A saved tiny model with its processor, in the Hub layout."""
    tiny_model(seed, **changes).save_pretrained(folder)
    size = TINY["image_size"]
    ViTHybridImageProcessor(size=size, crop_size=size, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)
    return folder


def plain_top5(explorer, image) -> list[tuple[int, str, float]]:
    """An Explorer's photo's top-5 (class index, label, probability) from a plain forward of its model, outside the
    Explorer's queue and cache: what its answers must be."""
    with torch.inference_mode():
        scores, indices = explorer.model(explorer.pixels(image)).logits[0].float().softmax(-1).topk(5)
    return [(int(i), explorer.model.config.id2label[int(i)], float(p)) for p, i in zip(scores, indices)]


def assert_same_arithmetic(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Outputs of two models with equal weights on equal inputs: the same arithmetic, yet not always the
    same bits. Where a weight lands in memory (its offset in a safetensors file, say) can steer BLAS and
    oneDNN to kernels that sum in another order: seen as 1.2e-7 on logits on an AVX2-only CPU. So compare
    to float32 rounding of the accumulated sums (a few hundred ulps at 1.0), not bit for bit."""
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


HIDE_MODULES = '''
import importlib.abc, sys

class Hidden(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {names!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden by the test)", name=name)

sys.meta_path.insert(0, Hidden())
'''


def env_hiding(folder: Path, *names: str) -> dict[str, str]:
    """An environment for a subprocess in which the top-level packages `names` cannot be imported, as on a
    machine without those optional extras (a sitecustomize.py in `folder` blocks them)."""
    import os

    (folder / "sitecustomize.py").write_text(HIDE_MODULES.format(names=set(names)))
    root = Path(__file__).resolve().parents[1]
    return {**os.environ, "PYTHONPATH": f"{folder}{os.pathsep}{root}"}


def malformed_exif_jpeg() -> bytes:
    """Issue 26's JPEG: 64x48, EXIF orientation 6 and an ASCII value under a tag id (0x0154) that Pillow reads as
    a DOUBLE, so that exif_transpose raises struct.error (made as the issue says: Image.Exif with 0x0112 = 6 and
    0x010F = "cam", saved, then the tag id 0x010F rewritten as 0x0154 in the bytes)."""
    import io

    from PIL import Image

    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "cam"
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(buffer, "JPEG", exif=exif)
    data = buffer.getvalue()
    byteorder = "big" if data[data.index(b"Exif\0\0") + 6:][:2] == b"MM" else "little"
    entry = (0x010F).to_bytes(2, byteorder) + (2).to_bytes(2, byteorder)  # tag id, then type 2 (ASCII)
    assert data.count(entry) == 1
    return data.replace(entry, (0x0154).to_bytes(2, byteorder) + (2).to_bytes(2, byteorder))
