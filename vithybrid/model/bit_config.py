"""Configuration of the BiT ResNet backbone, `backbone_config` in a ViT-Hybrid config.json.

Field names and defaults follow transformers' `BitConfig`, so a config.json written by either library loads
in the other. Its own module so that the backbone's modules (backbone.py) and the ViT-Hybrid config, which
measures the backbone, both read it without reading each other.
"""

from __future__ import annotations

from typing import Any

from ..base.configuration import (ConfigError, PretrainedConfig, check_bool, check_choice, check_int, check_ints,
                                  check_number)
from .activations import ACTIVATIONS

LAYER_TYPES = ("preactivation", "bottleneck")
PADDINGS = ("SAME", "VALID")
MAX_BLOCKS = 1000  # residual blocks in all stages (BiT-R152x4 has 50); more is a broken config, not a model
MAX_WIDTH = 1 << 16  # channels of one convolution


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
        check_ints("backbone_config.depths", self.depths)  # what the stage names are made of
        self.stage_names = ["stem"] + [f"stage{i}" for i in range(1, len(self.depths) + 1)]
        self.out_features, self.out_indices = self._aligned_outputs()
        self.check_choices()

    def _aligned_outputs(self) -> tuple[list[str], list[int]]:
        """out_features and out_indices name the same stages; either one alone fixes the other."""
        features, indices = self.out_features, self.out_indices
        stages = len(self.stage_names)
        if indices is not None and (not isinstance(indices, (list, tuple)) or not indices or any(
                isinstance(i, bool) or not isinstance(i, int) or not -stages <= i < stages for i in indices)):
            raise ConfigError(f"backbone_config.out_indices: {indices!r} are not indices of {self.stage_names}")
        if features is None and indices is None:
            features = [self.stage_names[-1]]
        if features is None:
            return [self.stage_names[i] for i in indices], list(indices)
        if not isinstance(features, (list, tuple)) or not features:
            raise ConfigError(f"backbone_config.out_features must be a list of stage names, got {features!r}")
        unknown = [f for f in features if f not in self.stage_names]
        if unknown:
            raise ConfigError(f"backbone_config.out_features: {unknown} not among {self.stage_names}")
        from_features = [self.stage_names.index(f) for f in features]
        if indices is not None and list(indices) != from_features:
            raise ConfigError(f"backbone_config.out_features {features} and out_indices {indices} disagree")
        return list(features), from_features

    def check_choices(self) -> None:
        """The named settings, which transformers checks on construction too."""
        check_choice("backbone_config.layer_type", self.layer_type, LAYER_TYPES)
        check_choice("backbone_config.hidden_act", self.hidden_act, ACTIVATIONS)
        check_choice("backbone_config.global_padding", self.global_padding, (None, *PADDINGS))

    def validate(self) -> None:
        self.check_choices()
        for name in ("num_channels", "embedding_size", "num_groups"):
            check_int(f"backbone_config.{name}", getattr(self, name), maximum=MAX_WIDTH)
        check_int("backbone_config.output_stride", self.output_stride, maximum=1 << 10)
        check_int("backbone_config.width_factor", self.width_factor, maximum=64)
        check_ints("backbone_config.hidden_sizes", self.hidden_sizes)
        if len(self.hidden_sizes) < len(self.depths):
            raise ConfigError(f"backbone_config.hidden_sizes needs one entry per stage of depths {self.depths}")
        if sum(self.depths) > MAX_BLOCKS:
            raise ConfigError(f"backbone_config.depths {self.depths} make more than {MAX_BLOCKS} blocks")
        widths = [w * self.width_factor for w in self.hidden_sizes[:len(self.depths)]]
        if max(widths, default=0) > MAX_WIDTH:
            raise ConfigError(f"backbone_config.hidden_sizes: {max(widths):,} channels, more than {MAX_WIDTH:,}")
        check_number("backbone_config.drop_path_rate", self.drop_path_rate, maximum=1.0)
        check_bool("backbone_config.embedding_dynamic_padding", self.embedding_dynamic_padding)
        if self.embedding_size % self.num_groups:  # GroupNorm splits every normalized width into num_groups
            raise ConfigError(f"backbone_config.embedding_size ({self.embedding_size}) must be divisible by "
                              f"num_groups ({self.num_groups})")
        if self.layer_type == "preactivation" and not self.depths:
            raise ConfigError("backbone_config.depths: a preactivation backbone needs at least one stage")
