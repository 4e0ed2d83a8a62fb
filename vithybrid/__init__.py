"""ViT-Hybrid (BiT ResNet stages + ViT) in plain PyTorch: a maintained, dependency-light replacement for
transformers' deprecated ViTHybrid classes, with the same names and checkpoint format."""

from .base.processing import BatchFeature
from .model.config import BitConfig, ViTHybridConfig
from .checkpoints.hub import CheckpointError
from .model.modeling import ViTHybridForImageClassification, ViTHybridModel
from .model.processing import ViTHybridImageProcessor
from .checkpoints.shipped import resolve_model

__all__ = ["BatchFeature", "BitConfig", "CheckpointError", "ViTHybridConfig", "ViTHybridForImageClassification",
           "ViTHybridImageProcessor", "ViTHybridModel", "resolve_model"]
