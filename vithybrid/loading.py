"""A pretrained classifier and its image processor in one call: what the CLIs, analyze, the pipeline, the
exports and the benchmarks load, so the steps (the name resolved, the model and the processor read from the
same checkpoint, the processor a checkpoint without one implies) are written once."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from .base.checkpoint import HUB_KEYWORDS
from .base.configuration import PretrainedConfig
from .base.processing import NoProcessorConfig
from .checkpoints.shipped import DEFAULT_MODEL
from .model.modeling import ViTHybridForImageClassification
from .model.processing import ViTHybridImageProcessor, default_processor

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_MODEL", "load_pretrained", "load_processor"]


def load_processor(name: str | Path, config: PretrainedConfig, **hub_kwargs: Any) -> tuple[ViTHybridImageProcessor,
                                                                                          str | None]:
    """The checkpoint's image processor, and None; for a checkpoint without one (a folder model.save_pretrained
    alone wrote), the processor its config implies (`default_processor` at its image_size) and a line that says so."""
    try:
        return ViTHybridImageProcessor.from_pretrained(name, **hub_kwargs), None
    except NoProcessorConfig:
        processor = default_processor(config.image_size)
        return processor, (f"{name} has no preprocessor_config.json: using the processor its config implies (the "
                           f"google checkpoint's at image_size {config.image_size}: shortest edge resized bicubic, "
                           f"center crop, rescale 1/255, normalize with mean = std = 0.5)")


def load_pretrained(name: str | Path = DEFAULT_MODEL, *, device: str | torch.device | None = None,
                    dtype: torch.dtype | str | None = None, attn_implementation: str | None = None,
                    **from_pretrained_kwargs: Any) -> tuple[ViTHybridForImageClassification, ViTHybridImageProcessor]:
    """(model, processor) of a Hub id, a checkpoint folder or a shipped model ("shapes"): the classifier in eval
    mode on `device` in `dtype` (None: float32; "auto": config.json's) with `attn_implementation` ("sdpa", the
    default, or "eager"), other keywords as ViTHybridForImageClassification.from_pretrained's (revision,
    cache_dir, ...), and the checkpoint's image processor (one its config implies if it has none; a warning
    says so). Raises CheckpointError."""
    hub_kwargs = {k: v for k, v in from_pretrained_kwargs.items() if k in HUB_KEYWORDS}
    model = ViTHybridForImageClassification.from_pretrained(name, torch_dtype=dtype,
                                                            attn_implementation=attn_implementation,
                                                            **from_pretrained_kwargs)
    processor, note = load_processor(name, model.config, **hub_kwargs)
    if note:
        logger.warning(note)
    return (model if device is None else model.to(device)), processor
