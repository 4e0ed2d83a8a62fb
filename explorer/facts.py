"""The numbers the guided walk tells about a loaded model, read from its config and worked out on the meta device
(nothing is computed)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vithybrid.model.backbone import BitBackbone


@dataclass(frozen=True)
class ModelFacts:
    model: str  # its name on the page
    input_hw: tuple[int, int]  # the processor's crop
    maps: list[tuple[int, int, int]]  # (channels, height, width) of the stem's map and each stage's, in order
    stage_depths: list[int]  # blocks per stage
    grid: tuple[int, int]  # token grid (rows, cols)
    patch: int  # the projection's patch size, in cells of the last map
    stride: int  # input pixels per token cell
    hidden_size: int
    layers: int
    heads: int
    labels: int
    parameters_m: float  # millions
    full_size: bool  # google/vit-hybrid-base-bit-384's architecture (the seed's A100 figures were measured on it)

    @property
    def grid_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def tokens(self) -> int:
        return self.grid_tokens + 1


def model_facts(name: str, model, input_hw: tuple[int, int]) -> ModelFacts:
    config = model.config
    backbone = config.backbone_config
    with torch.device("meta"):
        maps = BitBackbone(backbone)(torch.empty(1, backbone.num_channels, *input_hw), keep_stages=True)
    rows, cols = config.grid_size
    return ModelFacts(
        model=name, input_hw=tuple(input_hw), maps=[tuple(m.shape[1:]) for m in maps],
        stage_depths=list(backbone.depths[:len(maps) - 1]), grid=(rows, cols), patch=config.patch_size,
        stride=input_hw[0] // rows, hidden_size=config.hidden_size, layers=config.num_hidden_layers,
        heads=config.num_attention_heads, labels=config.num_labels,
        parameters_m=round(sum(p.numel() for p in model.parameters()) / 1e6, 1), full_size=is_full_size(config))


def is_full_size(config) -> bool:
    """Whether `config` is the architecture of the seed's A100 figures (google/vit-hybrid-base-bit-384)."""
    return (config.image_size, config.hidden_size, config.num_hidden_layers, list(config.backbone_featmap_shape[1:])) \
        == (384, 768, 12, [1024, 24, 24])
