"""Configuration of ViT-Hybrid and of its BiT backbone, in the Hub's config.json format.

Field names and defaults follow transformers' `ViTHybridConfig` and `BitConfig`, so a config.json
written by either library loads in the other. Keys we do not know are kept and written back.

timm's nine hybrid ViTs (timm_format.py) fit these keys too, so transformers 4.46.3 builds every one of
them: the tiny models' stem-only backbone is `depths: []` with `out_features: ["stem"]`, timm's
LayerNorm eps is `layer_norm_eps: 1e-6`, and weight standardization uses eps 1e-8 in timm, in
transformers and here alike (it is not a config key anywhere).
"""

from __future__ import annotations

import logging
from typing import Any

from ..base.configuration import PretrainedConfig
from .activations import ACTIVATIONS

logger = logging.getLogger(__name__)

LAYER_TYPES = ("preactivation", "bottleneck")
PADDINGS = ("SAME", "VALID")


class BitConfig(PretrainedConfig):
    """The BiT ResNet backbone (Kolesnikov et al. 2020). Defaults are BiT-R50's, as in transformers."""

    model_type = "bit"
    FIELDS = {
        "num_channels": 3,
        "embedding_size": 64,
        "hidden_sizes": [256, 512, 1024, 2048],
        "depths": [3, 4, 6, 3],
        "layer_type": "preactivation",
        "hidden_act": "relu",
        "global_padding": None,
        "num_groups": 32,
        "drop_path_rate": 0.0,
        "embedding_dynamic_padding": False,
        "output_stride": 32,
        "width_factor": 1,
        "out_features": None,
        "out_indices": None,
    }

    def __init__(self, **kwargs: Any):
        kwargs.pop("stage_names", None)  # derived from depths
        super().__init__(**kwargs)
        if isinstance(self.global_padding, str):
            self.global_padding = self.global_padding.upper()
        self.stage_names = ["stem"] + [f"stage{i}" for i in range(1, len(self.depths) + 1)]
        self.out_features, self.out_indices = self._aligned_outputs()

    def _aligned_outputs(self) -> tuple[list[str], list[int]]:
        """out_features and out_indices name the same stages; either one alone fixes the other."""
        features, indices = self.out_features, self.out_indices
        if features is None and indices is None:
            features = [self.stage_names[-1]]
        if features is not None:
            unknown = [f for f in features if f not in self.stage_names]
            if unknown:
                raise ValueError(f"backbone_config.out_features: {unknown} not among {self.stage_names}")
            from_features = [self.stage_names.index(f) for f in features]
            if indices is not None and list(indices) != from_features:
                raise ValueError(f"backbone_config.out_features {features} and out_indices {indices} disagree")
            return list(features), from_features
        if any(not -len(self.stage_names) <= i < len(self.stage_names) for i in indices):
            raise ValueError(f"backbone_config.out_indices: {indices} out of range for {self.stage_names}")
        return [self.stage_names[i] for i in indices], list(indices)

    def validate(self) -> None:
        if self.layer_type not in LAYER_TYPES:
            raise ValueError(f"backbone_config.layer_type must be one of {LAYER_TYPES}, got {self.layer_type!r}")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"backbone_config.hidden_act must be one of {sorted(ACTIVATIONS)}, got {self.hidden_act!r}")
        if self.global_padding not in (None, *PADDINGS):
            raise ValueError(f"backbone_config.global_padding must be SAME, VALID or null, got {self.global_padding!r}")
        if len(self.hidden_sizes) < len(self.depths):
            raise ValueError(f"backbone_config.hidden_sizes needs one entry per stage of depths {self.depths}")


class ViTHybridConfig(PretrainedConfig):
    """ViT-Hybrid: BiT stages turn the image into a feature grid, each cell becomes a ViT token.

    Defaults are transformers' (`ViTHybridConfig()`), so `ViTHybridConfig(image_size=384,
    num_labels=1000)` is the architecture of google/vit-hybrid-base-bit-384. Like transformers, the
    defaults alone (image_size 224 with a 24x24 backbone_featmap_shape) do not agree with each other: that
    builds, with a warning, and runs at 224x224 only with interpolate_pos_encoding=True.
    """

    model_type = "vit-hybrid"
    FIELDS = {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "image_size": 224,
        "patch_size": 1,
        "num_channels": 3,
        "backbone_featmap_shape": [1, 1024, 24, 24],
        "qkv_bias": True,
        # transformers' keys for other backbones: only the BiT of backbone_config is supported
        "backbone": None,
        "use_pretrained_backbone": False,
        "use_timm_backbone": False,
        "backbone_kwargs": None,
    }
    # The backbone transformers builds when config.json has no backbone_config.
    DEFAULT_BACKBONE = {
        "global_padding": "same",
        "layer_type": "bottleneck",
        "depths": [3, 4, 9],
        "out_features": ["stage3"],
        "embedding_dynamic_padding": True,
    }

    def __init__(self, backbone_config: dict | BitConfig | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(backbone_config, BitConfig):
            backbone_config = backbone_config.to_dict()
        backbone_config = dict(backbone_config or self.DEFAULT_BACKBONE)
        if backbone_config.get("model_type", "bit") != "bit":
            raise ValueError(f"backbone_config.model_type must be 'bit', got {backbone_config['model_type']!r}")
        self.backbone_config = BitConfig(**backbone_config)
        self.validate()
        mismatch = self.featmap_mismatch()
        if mismatch:
            logger.warning("%s: the model runs only with interpolate_pos_encoding=True.", mismatch)

    def validate(self) -> None:
        """Raise a ValueError naming the field of an architecture that cannot be built or never runs."""
        if self.use_pretrained_backbone or self.backbone is not None or self.use_timm_backbone:
            raise ValueError("Only the BiT backbone of backbone_config is supported (backbone, "
                             "use_pretrained_backbone and use_timm_backbone must keep their defaults)")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                             f"({self.num_attention_heads})")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act must be one of {sorted(ACTIVATIONS)}, got {self.hidden_act!r}")
        self.backbone_config.validate()
        channels = self.backbone_feature_shape()[1]
        if self.backbone_featmap_shape[1] != channels:  # the projection could never read the features
            raise ValueError(f"backbone_featmap_shape {list(self.backbone_featmap_shape)} does not match the "
                             f"backbone, which makes {channels} channels")

    def backbone_feature_shape(self) -> list[int]:
        """The backbone's feature map at image_size: the backbone itself says what grid it makes."""
        from .backbone import feature_map_shape

        return list(feature_map_shape(self.backbone_config, self.image_size, self.image_size))

    def featmap_mismatch(self) -> str | None:
        """Why the position embeddings (sized by backbone_featmap_shape) do not fit image_size, if they do not."""
        expected = self.backbone_feature_shape()
        if list(self.backbone_featmap_shape)[2:] != expected[2:]:
            return (f"backbone_featmap_shape {list(self.backbone_featmap_shape)} does not match the backbone, "
                    f"which makes {expected} at image_size {self.image_size}")
        return None

    @property
    def grid_size(self) -> tuple[int, int]:
        """Token grid of the position embeddings: the feature map divided by patch_size."""
        height, width = self.backbone_featmap_shape[-2:]
        return height // self.patch_size, width // self.patch_size
