"""Configuration of ViT-Hybrid, in the Hub's config.json format (its BiT backbone's: bit_config.py).

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

from ..base.configuration import (ConfigError, PretrainedConfig, check_bool, check_choice, check_int, check_ints,
                                  check_number)
from .activations import ACTIVATIONS
from .backbone import feature_map_shape, parameter_count as backbone_parameter_count, stage_widths
from .bit_config import BitConfig

logger = logging.getLogger(__name__)

MAX_LAYERS = 1000  # transformer layers (ViT-22B has 48): more is a broken config, not a model
MAX_WIDTH = 1 << 16  # hidden_size, intermediate_size, channels
MAX_IMAGE_SIZE = 1 << 16
MAX_PARAMETERS = 20_000_000_000  # 80 GB in float32: the bound for a config that comes without weights


class ViTHybridConfig(PretrainedConfig):
    """ViT-Hybrid: BiT stages turn the image into a feature grid, each cell becomes a ViT token.

    Defaults are transformers' (`ViTHybridConfig()`), so `ViTHybridConfig(image_size=384,
    num_labels=1000)` is the architecture of google/vit-hybrid-base-bit-384. Like transformers, the
    defaults alone (image_size 224 with a 24x24 backbone_featmap_shape) do not agree with each other: that
    builds, with a warning, and runs at 224x224 only with interpolate_pos_encoding=True.
    """

    model_type = "vit-hybrid"
    SIZE_FIELDS = ("hidden_size", "num_hidden_layers", "intermediate_size", "num_labels", "backbone_featmap_shape")
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
        if not isinstance(backbone_config, (dict, type(None))):
            raise ConfigError(f"backbone_config must be a dict of BiT settings, got {backbone_config!r}")
        backbone_config = dict(backbone_config or self.DEFAULT_BACKBONE)
        if backbone_config.get("model_type", "bit") != "bit":
            raise ConfigError(f"backbone_config.model_type must be 'bit', got {backbone_config['model_type']!r}")
        self.backbone_config = BitConfig(**backbone_config)
        self.check_choices()
        # Sizes are checked when a model is built (validate), as transformers does: a config with hidden_size 37
        # and 12 heads, or one of its sizes 0, constructs. Only sane sizes are measured here (a backbone of a
        # million blocks would take minutes to trace, even on the meta device).
        if self.sizes_problem() is None:
            self.check_feature_channels()
            mismatch = self.featmap_mismatch()
            if mismatch:
                logger.warning("%s: the model runs only with interpolate_pos_encoding=True.", mismatch)

    def check_choices(self) -> None:
        """The named settings (checked on construction, as transformers' BitConfig does its own)."""
        if self.use_pretrained_backbone or self.backbone is not None or self.use_timm_backbone:
            raise ConfigError("Only the BiT backbone of backbone_config is supported (backbone, "
                              "use_pretrained_backbone and use_timm_backbone must keep their defaults)")
        check_choice("hidden_act", self.hidden_act, ACTIVATIONS)
        self.backbone_config.check_choices()

    def check_sizes(self) -> None:
        """Types and sizes a model can be built from: positive, and bounded so that no config.json makes
        from_pretrained allocate without end (the weights file bounds it further, see from_pretrained)."""
        for name in ("hidden_size", "intermediate_size"):
            check_int(name, getattr(self, name), maximum=MAX_WIDTH)
        check_int("num_hidden_layers", self.num_hidden_layers, maximum=MAX_LAYERS)
        check_int("num_attention_heads", self.num_attention_heads, maximum=MAX_WIDTH)
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                              f"({self.num_attention_heads})")
        check_int("image_size", self.image_size, maximum=MAX_IMAGE_SIZE)
        check_int("num_channels", self.num_channels, maximum=MAX_WIDTH)
        check_ints("backbone_featmap_shape", self.backbone_featmap_shape, length=4)
        check_int("backbone_featmap_shape[1]", self.backbone_featmap_shape[1], maximum=MAX_WIDTH)
        for i in (2, 3):
            check_int(f"backbone_featmap_shape[{i}]", self.backbone_featmap_shape[i], maximum=MAX_IMAGE_SIZE)
        check_int("patch_size", self.patch_size, maximum=min(self.backbone_featmap_shape[2:]))
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            check_number(name, getattr(self, name), maximum=1.0)
        check_number("initializer_range", self.initializer_range)
        check_number("layer_norm_eps", self.layer_norm_eps)
        check_bool("qkv_bias", self.qkv_bias)
        if self.pruned_heads:
            raise ConfigError("pruned_heads: pruned attention heads are not supported")
        self.backbone_config.validate()
        widths = {self.backbone_config.embedding_size, *(w for stage in stage_widths(self.backbone_config)
                                                         for w in stage)}
        groups = self.backbone_config.num_groups
        if any(width % groups for width in widths):  # GroupNorm splits every width into num_groups
            raise ConfigError(f"backbone_config.num_groups ({groups}) must divide every width of the backbone "
                              f"({sorted(widths)})")
        if self.parameter_count() > MAX_PARAMETERS:
            raise ConfigError(f"the sizes ({self.size_summary()}) make {self.parameter_count():,} parameters, more "
                              f"than {MAX_PARAMETERS:,}")

    def sizes_problem(self) -> str | None:
        """Why no model can be built of these sizes (check_sizes' message), or None."""
        try:
            self.check_sizes()
        except ConfigError as error:
            return str(error)
        return None

    def validate(self) -> None:
        """Raise a ConfigError naming the field of an architecture that cannot be built or never runs."""
        self.check_choices()
        self.check_sizes()
        self.check_feature_channels()

    def check_feature_channels(self) -> None:
        channels = self.backbone_feature_shape()[1]
        if self.backbone_featmap_shape[1] != channels:  # the projection could never read the features
            raise ConfigError(f"backbone_featmap_shape {list(self.backbone_featmap_shape)} does not match the "
                              f"backbone, which makes {channels} channels")

    def backbone_feature_shape(self) -> list[int]:
        """The backbone's feature map at image_size: the backbone itself says what grid it makes."""
        try:
            return list(feature_map_shape(self.backbone_config, self.image_size, self.image_size))
        except ValueError as error:
            raise ConfigError(str(error)) from error

    def featmap_mismatch(self) -> str | None:
        """Why the position embeddings (sized by backbone_featmap_shape) do not fit image_size, if they do not."""
        expected = self.backbone_feature_shape()
        if list(self.backbone_featmap_shape)[2:] != expected[2:]:
            return (f"backbone_featmap_shape {list(self.backbone_featmap_shape)} does not match the backbone, "
                    f"which makes {expected} at image_size {self.image_size}")
        return None

    def parameter_count(self) -> int:
        """Parameters of a ViTHybridForImageClassification of this config, as the modules are built (modeling.py,
        backbone.py), counted without building them. (A ViTHybridModel has a pooler instead of the classifier.)"""
        h, i = self.hidden_size, self.intermediate_size
        rows, cols = self.grid_size
        embeddings = h + (rows * cols + 1) * h + self.backbone_featmap_shape[1] * h * self.patch_size ** 2 + h
        layer = 3 * h * h + 3 * h * self.qkv_bias + (h * h + h) + 2 * h * i + i + h + 4 * h
        head = h * self.num_labels + self.num_labels
        return (backbone_parameter_count(self.backbone_config) + embeddings + self.num_hidden_layers * layer
                + 2 * h + head)

    @property
    def grid_size(self) -> tuple[int, int]:
        """Token grid of the position embeddings: the feature map divided by patch_size."""
        height, width = self.backbone_featmap_shape[-2:]
        return height // self.patch_size, width // self.patch_size


__all__ = ["BitConfig", "ViTHybridConfig"]
