"""Model names: the checkpoint the package loads by default, and the models that ship inside the package, so the
app and the examples work without a network."""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL = "google/vit-hybrid-base-bit-384"  # the published ViT-Hybrid (timm's vit_base_r50_s16_384)
MODELS_DIR = Path(__file__).resolve().parent / "models"
SHIPPED = {"shapes": MODELS_DIR / "shapes"}  # a ViT-Hybrid trained on vithybrid.training.shapes (see its README.md)


def resolve_model(name: str | Path) -> Path | str:
    """The folder of a shipped model ("shapes"); any other name (Hub id or folder) is returned as a str.

    A shipped name wins over a local folder of the same name: pass "./shapes" to mean the folder.
    """
    return SHIPPED.get(str(name), str(name))
