"""Configuration of ViT-Hybrid and of its BiT backbone, in the Hub's config.json format.

Field names and defaults follow transformers' `ViTHybridConfig` and `BitConfig`, so a config.json
written by either library loads in the other. Keys we do not know are kept and written back.

timm's nine hybrid ViTs (timm_format.py) fit these keys too, so transformers 4.46.3 builds every one of
them: the tiny models' stem-only backbone is `depths: []` with `out_features: ["stem"]`, timm's
LayerNorm eps is `layer_norm_eps: 1e-6`, and weight standardization uses eps 1e-8 in timm, in
transformers and here alike (it is not a config key anywhere).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from .activations import ACTIVATIONS

LAYER_TYPES = ("preactivation", "bottleneck")
PADDINGS = ("SAME", "VALID")


def _pop_known(fields: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """Take the known fields out of `given` (defaults where absent); what stays in `given` is unknown."""
    return {name: copy.deepcopy(given.pop(name, default)) for name, default in fields.items()}


class BitConfig:
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
        kwargs.pop("model_type", None)
        vars(self).update(_pop_known(self.FIELDS, kwargs))
        self.extra = kwargs
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

    def to_dict(self) -> dict[str, Any]:
        fields = {name: copy.deepcopy(getattr(self, name)) for name in self.FIELDS}
        return {"model_type": self.model_type, **fields, "stage_names": self.stage_names, **copy.deepcopy(self.extra)}


class ViTHybridConfig:
    """ViT-Hybrid: BiT stages turn the image into a feature grid, each cell becomes a ViT token.

    Defaults are transformers' (`ViTHybridConfig()`), so `ViTHybridConfig(image_size=384,
    num_labels=1000)` is the architecture of google/vit-hybrid-base-bit-384.
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
        "problem_type": None,
    }
    # The backbone transformers builds when config.json has no backbone_config.
    DEFAULT_BACKBONE = {
        "global_padding": "same",
        "layer_type": "bottleneck",
        "depths": [3, 4, 9],
        "out_features": ["stage3"],
        "embedding_dynamic_padding": True,
    }

    def __init__(self, backbone_config: dict | BitConfig | None = None, num_labels: int | None = None,
                 id2label: dict | None = None, label2id: dict | None = None, **kwargs: Any):
        kwargs.pop("model_type", None)
        vars(self).update(_pop_known(self.FIELDS, kwargs))
        if isinstance(backbone_config, BitConfig):
            backbone_config = backbone_config.to_dict()
        backbone_config = dict(backbone_config or self.DEFAULT_BACKBONE)
        if backbone_config.get("model_type", "bit") != "bit":
            raise ValueError(f"backbone_config.model_type must be 'bit', got {backbone_config['model_type']!r}")
        backbone_config.pop("stage_names", None)  # derived from depths
        self.backbone_config = BitConfig(**backbone_config)
        if id2label is not None:
            self.id2label = {int(i): str(label) for i, label in id2label.items()}
        else:
            self.num_labels = 2 if num_labels is None else num_labels
        if num_labels is not None and num_labels != len(self.id2label):
            raise ValueError(f"num_labels={num_labels} but id2label has {len(self.id2label)} entries")
        del label2id  # always derived from id2label
        self.extra = kwargs
        self.validate()

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, value: int) -> None:
        self.id2label = {i: f"LABEL_{i}" for i in range(value)}

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in self.id2label.items()}

    def validate(self) -> None:
        """Raise a ValueError naming the field of an architecture that cannot be built."""
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                             f"({self.num_attention_heads})")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act must be one of {sorted(ACTIVATIONS)}, got {self.hidden_act!r}")
        if self.problem_type not in (None, "regression", "single_label_classification", "multi_label_classification"):
            raise ValueError(f"problem_type {self.problem_type!r} is not a known problem type")
        self.backbone_config.validate()
        from .backbone import feature_map_shape  # the backbone itself says what grid it makes

        expected = feature_map_shape(self.backbone_config, self.image_size, self.image_size)
        if list(self.backbone_featmap_shape)[1:] != list(expected)[1:]:
            raise ValueError(f"backbone_featmap_shape {list(self.backbone_featmap_shape)} does not match the backbone, "
                             f"which makes {list(expected)} at image_size {self.image_size}")

    @property
    def grid_size(self) -> tuple[int, int]:
        """Token grid at the trained image size: the feature map divided by patch_size."""
        height, width = self.backbone_featmap_shape[-2:]
        return height // self.patch_size, width // self.patch_size

    def to_dict(self) -> dict[str, Any]:
        fields = {name: copy.deepcopy(getattr(self, name)) for name in self.FIELDS}
        return {
            "model_type": self.model_type,
            **fields,
            "backbone_config": self.backbone_config.to_dict(),
            "id2label": {str(i): label for i, label in self.id2label.items()},
            "label2id": self.label2id,
            **copy.deepcopy(self.extra),
        }

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> ViTHybridConfig:
        return cls(**copy.deepcopy(config))

    @classmethod
    def from_json_file(cls, path: str | Path) -> ViTHybridConfig:
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, directory: str | Path) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "config.json").write_text(self.to_json_string(), encoding="utf-8")

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **hub_kwargs: Any) -> ViTHybridConfig:
        from ..checkpoints.hub import load_config

        return load_config(name_or_path, **hub_kwargs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ViTHybridConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"ViTHybridConfig {self.to_json_string()}"
