"""ViT-Hybrid (BiT ResNet stages + ViT) in plain PyTorch: a maintained, dependency-light replacement for
transformers' deprecated ViTHybrid classes, with the same names and checkpoint format."""

from .base.processing import BatchFeature
from .model.config import BitConfig, ViTHybridConfig
from .checkpoints.hub import CheckpointError
from .model.modeling import ViTHybridForImageClassification, ViTHybridModel
from .model.processing import ViTHybridImageProcessor
from .checkpoints.shipped import DEFAULT_MODEL, resolve_model
from .loading import load_pretrained


def register_with_transformers() -> None:
    """Register ViTHybrid with transformers 5's Auto classes (AutoConfig, AutoModel,
    AutoModelForImageClassification, AutoImageProcessor), so that its `from_pretrained`, `pipeline()` and
    `Trainer` work for model_type "vit-hybrid". Idempotent. Needs transformers 5.23+ (in a clone of this
    repository: `pip install -e ".[transformers]"`); `import vithybrid` alone never imports transformers."""
    try:
        from .integrations.transformers import register_with_transformers as register
    except ImportError as error:
        raise ImportError(f"register_with_transformers() needs transformers 5.23 or newer ({error}): in a clone "
                          "of vithybrid, pip install -e '.[transformers]'") from error
    register()


__all__ = ["DEFAULT_MODEL", "BatchFeature", "BitConfig", "CheckpointError", "ViTHybridConfig",
           "ViTHybridForImageClassification", "ViTHybridImageProcessor", "ViTHybridModel", "load_pretrained",
           "register_with_transformers", "resolve_model"]
