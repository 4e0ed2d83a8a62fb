"""A model base that behaves as transformers' `PreTrainedModel` where user code touches it:
`from_pretrained` / `save_pretrained` with transformers' keywords, gradient checkpointing with its module
convention, parameter counts, and the class attributes tools read (config_class, main_input_name, ...).

Differences on purpose: a checkpoint that does not fit the architecture is a CheckpointError naming the
weights (transformers warns and leaves them random), and loading never runs code from a file.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import re

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.checkpoint import checkpoint

from .checkpoint import HUB_KEYWORDS, CheckpointError, reader
from .configuration import PretrainedConfig, override

logger = logging.getLogger(__name__)

WEIGHTS_NAMES = ("model.safetensors", "pytorch_model.bin")  # in order of preference
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# How much bigger than its weights a config's model may be: weights the checkpoint lacks are initialized fresh
# (a base checkpoint's classifier, a new head for other num_labels: a 1000-class head on a 1024-wide model is
# about 1M). Beyond that the config is wrong, and building it could allocate for minutes (num_hidden_layers
# 1000000 in a config.json).
SIZE_FACTOR, SIZE_SLACK = 2, 1_000_000


def current_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (os.umask can only set it)."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Umask:")), 8)
    except (OSError, StopIteration):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def _listing(keys: list[str]) -> str:
    return ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")


def match_keys(state: dict[str, torch.Tensor], model: nn.Module, prefix: str) -> tuple[dict, list[str], list[str]]:
    """Rename checkpoint keys to the model's, between base and head layouts as transformers does.

    A model with a head reads a base checkpoint (new random head, pooler ignored); a base model reads a
    checkpoint with a head (head ignored, new random pooler). Any other missing or unexpected key is a
    CheckpointError. Returns the state dict, the keys left to initialize and the checkpoint keys dropped.
    """
    expected = model.state_dict().keys()
    model_is_base = not any(k.startswith(prefix + ".") for k in expected)
    checkpoint_is_base = not any(k.startswith(prefix + ".") for k in state)
    dropped = []
    if model_is_base and not checkpoint_is_base:
        dropped = [k for k in state if not k.startswith(prefix + ".")]
        state = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
    elif checkpoint_is_base and not model_is_base:
        dropped = [k for k in state if k.startswith("pooler.")]
        state = {f"{prefix}.{k}": v for k, v in state.items() if not k.startswith("pooler.")}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    fresh = [k for k in missing if any(re.search(pattern, k) for pattern in model._keys_to_ignore_on_load_missing)]
    if model_is_base != checkpoint_is_base:
        fresh += [k for k in missing if (k.startswith("pooler.") if model_is_base else not k.startswith(prefix + "."))]
    missing = [k for k in missing if k not in fresh]
    if missing or unexpected:
        problems = ([f"missing {len(missing)} weights: {_listing(missing)}"] if missing else []) + \
                   ([f"unexpected {len(unexpected)} weights: {_listing(unexpected)}"] if unexpected else [])
        raise CheckpointError(f"The weights do not fit the architecture in config.json: {'; '.join(problems)}. "
                              f"The weights file and config.json must come from the same model.")
    return state, fresh, dropped


class PreTrainedModel(nn.Module):
    """Subclasses set config_class and base_model_prefix and define `_init_weights(module)`."""

    config_class: type[PretrainedConfig] = PretrainedConfig
    base_model_prefix = ""
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = False
    _no_split_modules: list[str] = []
    _keys_to_ignore_on_load_missing: list[str] = []  # patterns of weights a checkpoint may lack (initialized)
    _supports_sdpa = True
    _tied_weights_keys: list[str] | None = None  # no weights are tied (an image classifier has no output embeddings)
    _keep_in_fp32_modules: list[str] | None = None  # every module takes the dtype asked for

    def __init__(self, config: PretrainedConfig, *args: Any, **kwargs: Any):
        super().__init__()
        if not isinstance(config, PretrainedConfig):
            raise TypeError(f"config must be a {self.config_class.__name__}, got {type(config).__name__}: build "
                            f"the model with {type(self).__name__}(config), or use from_pretrained(path)")
        self.config = config
        self.name_or_path = config.name_or_path

    def _init_weights(self, module: nn.Module) -> None:
        raise NotImplementedError

    def init_weights(self, root: nn.Module | None = None) -> None:
        """Random initialization of every module under `root` (default: the whole model). The last step of
        building a model, so it also does what transformers' post_init does for old configs: one that holds
        `gradient_checkpointing: true` turns it on (the key is then dropped)."""
        for module in (root or self).modules():
            self._init_weights(module)
        if self.supports_gradient_checkpointing and getattr(self.config, "gradient_checkpointing", False):
            self.gradient_checkpointing_enable()
            delattr(self.config, "gradient_checkpointing")

    @property
    def base_model(self) -> nn.Module:
        return getattr(self, self.base_model_prefix, self)

    def get_input_embeddings(self) -> nn.Module:
        return self.base_model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module | None:
        """None: no output layer shares weights with the input embeddings (as transformers' default says)."""
        return None

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @classmethod
    def can_generate(cls) -> bool:
        return False

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Parameters counted as transformers counts them (exclude_embeddings leaves out nn.Embedding weights)."""
        embeddings = {f"{name}.weight" for name, module in self.named_modules() if isinstance(module, nn.Embedding)}
        return sum(p.numel() for name, p in self.named_parameters()
                   if (p.requires_grad or not only_trainable) and not (exclude_embeddings and name in embeddings))

    # Gradient checkpointing, transformers' convention: every module with a `gradient_checkpointing`
    # attribute runs its layers through `self._gradient_checkpointing_func` when it is True and training.
    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        if not self.supports_gradient_checkpointing:
            raise ValueError(f"{type(self).__name__} does not support gradient checkpointing.")
        kwargs = {"use_reentrant": True} if gradient_checkpointing_kwargs is None else gradient_checkpointing_kwargs
        self._set_gradient_checkpointing(True, functools.partial(checkpoint, **kwargs))

    def gradient_checkpointing_disable(self) -> None:
        if self.supports_gradient_checkpointing:
            self._set_gradient_checkpointing(False)

    def _set_gradient_checkpointing(self, enable: bool = True, gradient_checkpointing_func=checkpoint) -> None:
        modules = [m for m in self.modules() if hasattr(m, "gradient_checkpointing")]
        if not modules:
            raise ValueError(f"{type(self).__name__} has no module that supports gradient checkpointing")
        for module in modules:
            module.gradient_checkpointing = enable
            module._gradient_checkpointing_func = gradient_checkpointing_func

    @property
    def is_gradient_checkpointing(self) -> bool:
        return any(getattr(m, "gradient_checkpointing", False) for m in self.modules())

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path | None, *model_args: Any,
                        config: PretrainedConfig | str | Path | None = None, state_dict: dict | None = None,
                        ignore_mismatched_sizes: bool = False, output_loading_info: bool = False,
                        attn_implementation: str | None = None, torch_dtype: torch.dtype | str | None = None,
                        use_safetensors: bool | None = None, **kwargs: Any):
        """Load a checkpoint folder, a shipped model ("shapes") or a Hub repo, in eval mode.

        Also timm's layout of its hybrid ViTs (e.g. "timm/vit_small_r26_s32_384.augreg_in21k_ft_in1k").
        Keywords as transformers': hub ones (revision, cache_dir, subfolder, local_files_only, token,
        force_download), `config` (a config or its folder), `state_dict` (weights instead of the file's),
        `ignore_mismatched_sizes` (re-initialize weights whose shape changed, e.g. a head with another
        num_labels), `output_loading_info`, torch_dtype (None: float32; "auto": config.json's), config keys
        to override (num_labels=3, output_attentions=True, torchscript=True, ...), the rest to the model's
        constructor (add_pooling_layer=False).
        """
        source = reader()
        hub_kwargs = {k: kwargs.pop(k) for k in HUB_KEYWORDS if k in kwargs}
        given = isinstance(config, PretrainedConfig)
        if given:
            config = copy.deepcopy(config)  # the caller's stays as it is
            model_kwargs = override(config, kwargs)
        else:
            config, model_kwargs = cls.config_class.from_pretrained(
                config if config is not None else pretrained_model_name_or_path, return_unused_kwargs=True,
                **hub_kwargs, **kwargs)
        model_kwargs.pop("torch_dtype", None)
        name = pretrained_model_name_or_path
        if name is not None:
            config.name_or_path = name
        if torch_dtype == "auto":
            torch_dtype = config.torch_dtype or torch.float32
        dtype = DTYPES[torch_dtype] if isinstance(torch_dtype, str) else (torch_dtype or torch.float32)
        # Check the config before anything is allocated: its types and sizes, then its size against the weights.
        try:
            config.validate()
        except ValueError as error:
            if given:
                raise
            raise CheckpointError(f"{config.name_or_path}: config.json is not a valid {type(config).__name__}: "
                                  f"{error}") from error
        weights = None if state_dict is not None else source.locate_weights(name, use_safetensors, **hub_kwargs)
        held = sum(t.numel() for t in state_dict.values()) if weights is None else source.parameters_in(weights)
        implied = config.parameter_count()
        if implied is not None and implied > SIZE_FACTOR * held + SIZE_SLACK:
            raise CheckpointError(f"{config.name_or_path}: config.json describes a model of {implied:,} parameters "
                                  f"({config.size_summary()}), but {weights or 'state_dict'} holds {held:,} values. "
                                  f"config.json and the weights must come from the same model.")
        if weights is not None:
            state_dict = source.read_state_dict(weights)

        with torch.device("meta"):  # no memory and no random init for weights that are about to be replaced
            model = cls(config, *model_args, **model_kwargs)
        state_dict = source.model_state_dict(state_dict, config)  # another format's names (timm's) -> ours
        prefixed = any(k.startswith(cls.base_model_prefix + ".") for k in state_dict)
        state, fresh, dropped = match_keys(state_dict, model, cls.base_model_prefix)
        own = model.state_dict()
        mismatched = [(k, v.shape, own[k].shape) for k, v in state.items() if v.shape != own[k].shape]
        if mismatched and not ignore_mismatched_sizes:
            shapes = "; ".join(f"{k}: checkpoint {tuple(a)}, model {tuple(b)}" for k, a, b in mismatched[:8])
            raise CheckpointError(f"Weight shapes do not match the architecture in config.json: {shapes}. The "
                                  f"weights file and config.json must come from the same model (or pass "
                                  f"ignore_mismatched_sizes=True to train new ones, e.g. for other num_labels).")
        for key, _, _ in mismatched:
            del state[key]
        model._initialize_fresh(fresh + [key for key, _, _ in mismatched])
        model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=False, assign=True)
        model.to(dtype)
        _log_fresh(model, pretrained_model_name_or_path, fresh, mismatched)
        model.set_attn_implementation(attn_implementation or config._attn_implementation or "sdpa")
        model.eval()
        if output_loading_info:  # keys named as the checkpoint names them, as transformers does
            in_checkpoint = [f"{cls.base_model_prefix}.{k}" if prefixed and model_is_base(model) else k for k in fresh]

            return model, {"missing_keys": sorted(in_checkpoint), "unexpected_keys": sorted(dropped),
                           "mismatched_keys": mismatched, "error_msgs": []}
        return model

    def _initialize_fresh(self, keys: list[str]) -> None:
        """Random values for these parameters of a model on the meta device (the others are loaded after):
        their own modules only, so no loaded weight is initialized for nothing."""
        for module_name in {key.rpartition(".")[0] for key in keys}:
            module = self.get_submodule(module_name)
            module.to_empty(device="cpu", recurse=False)
            self._init_weights(module)

    def save_pretrained(self, save_directory: str | Path, is_main_process: bool = True,
                        state_dict: dict | None = None, safe_serialization: bool = True, **kwargs: Any) -> None:
        """Write config.json and model.safetensors (pytorch_model.bin with safe_serialization=False), which
        transformers 4.46.3 loads too. Returns None, as transformers does."""
        if kwargs.get("push_to_hub"):
            raise NotImplementedError("push_to_hub is not supported: upload the folder with huggingface_hub")
        if not is_main_process:
            return
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.architectures = [type(self).__name__]
        self.config.torch_dtype = self.dtype
        self.config.save_pretrained(directory)
        state = {k: v.detach().contiguous().cpu() for k, v in (state_dict or self.state_dict()).items()}
        for stale in WEIGHTS_NAMES:  # the other format's file would be read instead of this one
            (directory / stale).unlink(missing_ok=True)
        if safe_serialization:
            save_file(state, directory / WEIGHTS_NAMES[0], metadata={"format": "pt"})
        else:
            torch.save(state, directory / WEIGHTS_NAMES[1])
        # safetensors writes through a private temporary file (mode 0600); give the weights the mode any
        # other file gets here, so that a shared or served folder can read them.
        os.chmod(directory / WEIGHTS_NAMES[0 if safe_serialization else 1], 0o666 & ~current_umask())


def model_is_base(model: nn.Module) -> bool:
    """Whether the model is its base model (no head around it)."""
    return model.base_model is model


def _log_fresh(model: nn.Module, source: Any, fresh: list[str], mismatched: list[tuple]) -> None:
    """Name the weights that did not come from the checkpoint, as transformers logs them."""
    name = type(model).__name__
    if fresh:
        logger.warning("Some weights of %s were not initialized from the model checkpoint at %s and are newly "
                       "initialized: %s\nYou should probably TRAIN this model on a down-stream task to be able to "
                       "use it for predictions and inference.", name, source, sorted(fresh))
    if mismatched:
        lines = "\n".join(f"- {key}: found shape {a} in the checkpoint and {b} in the model instantiated"
                          for key, a, b in mismatched)
        logger.warning("Some weights of %s were not initialized from the model checkpoint at %s and are newly "
                       "initialized because the shapes did not match:\n%s\nYou should probably TRAIN this model on "
                       "a down-stream task to be able to use it for predictions and inference.", name, source, lines)
