"""The checkpoint reader from_pretrained uses (the seam in vithybrid/base/checkpoint.py): files from a folder,
a shipped model or the Hub (hub.py), in transformers' layout or in timm's (timm_format.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..base.checkpoint import CheckpointError
from ..base.configuration import CONFIG_NAME, PretrainedConfig
from ..base.processing import PROCESSOR_NAME
from . import timm_format
from .shipped import DEFAULT_MODEL
from .hub import locate, locate_weights, parameters_in, read_json, read_state_dict

__all__ = ["config_from_file", "locate_weights", "model_state_dict", "parameters_in", "processor_settings",
           "read_config", "read_state_dict"]


def read_config(name: str | Path, config_class: type[PretrainedConfig], **hub_kwargs: Any) -> PretrainedConfig:
    path = locate(name, CONFIG_NAME, **hub_kwargs)
    if path is None:
        raise CheckpointError(f"{str(name)!r} has no config.json. A checkpoint holds config.json and "
                              f"model.safetensors (or pytorch_model.bin), as save_pretrained writes them.")
    return config_from_file(path, config_class)


def config_from_file(path: Path, config_class: type[PretrainedConfig]) -> PretrainedConfig:
    """Our (transformers') config.json, or timm's for one of its hybrid ViTs (see timm_format)."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a JSON {type(data).__name__}, not a config (a JSON object).")
    if timm_format.is_timm_config(data):
        return timm_format.vithybrid_config(data, path)
    model_type = data.get("model_type", config_class.model_type)
    if model_type != config_class.model_type:
        raise CheckpointError(f"{path} describes a {model_type!r} model, not a ViT-Hybrid "
                              f"({config_class.model_type!r}) one (its model_type). Pick a ViT-Hybrid checkpoint, "
                              f"such as {DEFAULT_MODEL}.")
    try:
        return config_class(**data)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path} is not a valid {config_class.__name__}: {error}") from error


def model_state_dict(state: dict[str, torch.Tensor], config: PretrainedConfig) -> dict[str, torch.Tensor]:
    """timm's names -> ours; our own pass through."""
    return timm_format.hub_state_dict(state, config) if timm_format.is_timm_state_dict(state) else state


def processor_settings(name: str | Path, **hub_kwargs: Any) -> dict[str, Any] | None:
    """preprocessor_config.json; a timm checkpoint has none, but the pretrained_cfg in its config.json (timm's
    eval transform) gives the settings."""
    path = locate(name, PROCESSOR_NAME, **hub_kwargs)
    if path is not None:
        return read_json(path)
    config_path = locate(name, CONFIG_NAME, **hub_kwargs)
    data = read_json(config_path) if config_path is not None else {}
    timm = isinstance(data, dict) and timm_format.is_timm_config(data)
    return timm_format.processor_options(data, config_path) if timm else None
