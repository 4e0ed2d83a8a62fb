"""ViT-Hybrid (BiT ResNet stages + ViT) in plain PyTorch: a maintained, dependency-light replacement for
transformers' deprecated ViTHybrid classes, with the same names and checkpoint format."""

from .config import BitConfig, ViTHybridConfig
from .hub import CheckpointError
from .modeling import ViTHybridForImageClassification, ViTHybridModel
from .processing import ViTHybridImageProcessor
from .shipped import resolve_model

__all__ = ["BitConfig", "CheckpointError", "ViTHybridConfig", "ViTHybridForImageClassification", "ViTHybridImageProcessor",
           "ViTHybridModel", "resolve_model"]
