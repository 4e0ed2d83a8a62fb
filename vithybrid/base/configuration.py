"""A configuration that behaves as transformers' `PretrainedConfig`: every key is an attribute (unknown
keys too, so a newer config.json round-trips), the common keys every transformers model has, labels
(`id2label`, `label2id`, `num_labels`), and the dict / JSON / folder methods with transformers' keywords.

Generation settings (max_length, num_beams, ...) are not among the common keys: these models do not
generate text. Passed in, they are kept like any unknown key.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from pathlib import Path
from typing import Any

import torch

from .checkpoint import HUB_KEYWORDS, reader

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
# transformers' PretrainedConfig keys and defaults that are not about generation.
COMMON = {
    "return_dict": True, "output_hidden_states": False, "output_attentions": False, "torchscript": False,
    "torch_dtype": None, "use_bfloat16": False, "tf_legacy_loss": False, "pruned_heads": {},
    "tie_word_embeddings": True, "chunk_size_feed_forward": 0, "is_encoder_decoder": False, "is_decoder": False,
    "cross_attention_hidden_size": None, "add_cross_attention": False, "tie_encoder_decoder": False,
    "architectures": None, "finetuning_task": None, "tokenizer_class": None, "prefix": None, "bos_token_id": None,
    "pad_token_id": None, "eos_token_id": None, "sep_token_id": None, "decoder_start_token_id": None,
    "task_specific_params": None, "problem_type": None,
}
# Written by transformers, meaningless here: dropped on reading.
IGNORED_KEYS = ("transformers_version", "_commit_hash", "_attn_implementation_autoset")
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")
MAX_LABELS = 1_000_000  # ImageNet-21k has 21,843 classes


def dtype_name(dtype: torch.dtype | str | None) -> str | None:
    """torch.float16 -> "float16", as config.json spells a dtype."""
    return str(dtype).removeprefix("torch.") if dtype is not None else None


def torch_dtype(name: str) -> torch.dtype:
    """"float16" -> torch.float16 (a ConfigError for a name that is not a torch dtype)."""
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ConfigError(f"torch_dtype must name a torch dtype such as 'float32', got {name!r}")
    return dtype


class PretrainedConfig:
    """Subclasses set `model_type` and FIELDS (their own keys and defaults) and may check themselves in
    `validate()`; nested configs are attributes holding another PretrainedConfig."""

    model_type = ""
    FIELDS: dict[str, Any] = {}
    SIZE_FIELDS: tuple[str, ...] = ()  # the keys that decide how big a model is (named in errors)

    def __init__(self, **kwargs: Any):
        kwargs.pop("model_type", None)
        for key in IGNORED_KEYS:
            kwargs.pop(key, None)
        self._name_or_path = str(kwargs.pop("name_or_path", kwargs.pop("_name_or_path", "")))
        self._attn_implementation_internal = kwargs.pop("attn_implementation", None)
        for name, default in {**COMMON, **self.FIELDS}.items():
            setattr(self, name, copy.deepcopy(kwargs.pop(name, default)))
        if isinstance(self.torch_dtype, str):
            self.torch_dtype = torch_dtype(self.torch_dtype)
        if not isinstance(self.pruned_heads, dict):
            raise ConfigError(f"pruned_heads must be a dict of layer: heads, got {self.pruned_heads!r}")
        # JSON keys are strings; transformers turns them back into layer numbers (only when reading a dict)
        self.pruned_heads = {int(k) if str(k).isdigit() else k: heads for k, heads in self.pruned_heads.items()}
        if self.problem_type not in (None, *PROBLEM_TYPES):
            raise ConfigError(f"problem_type must be one of {PROBLEM_TYPES} or None, got {self.problem_type!r}")
        id2label, label2id, num_labels = (kwargs.pop(k, None) for k in ("id2label", "label2id", "num_labels"))
        if id2label is not None and not isinstance(id2label, dict):
            raise ConfigError(f"id2label must be a dict of class index: label, got {id2label!r}")
        if label2id is not None and not isinstance(label2id, dict):
            raise ConfigError(f"label2id must be a dict of label: class index, got {label2id!r}")
        if id2label is None and num_labels is not None:
            check_int("num_labels", num_labels, minimum=0, maximum=MAX_LABELS)
        if id2label is not None:
            try:
                self.id2label = {int(i): label for i, label in id2label.items()}  # JSON keys are strings
            except (TypeError, ValueError):
                raise ConfigError(f"id2label's keys must be class indices, got {list(id2label)[:8]}") from None
            if num_labels is not None and num_labels != len(self.id2label):
                logger.warning("num_labels=%s but id2label has %d entries: keeping id2label", num_labels,
                               len(self.id2label))
            # transformers leaves label2id None here; ours is always the inverse map unless given
            self.label2id = {label: i for i, label in self.id2label.items()} if label2id is None else dict(label2id)
        else:
            self.num_labels = 2 if num_labels is None else num_labels
        for name, value in kwargs.items():  # keys we do not know: attributes, and written back
            setattr(self, name, value)

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, value: int) -> None:
        if getattr(self, "id2label", None) is None or len(self.id2label) != value:
            self.id2label = {i: f"LABEL_{i}" for i in range(value)}
            self.label2id = {label: i for i, label in self.id2label.items()}

    @property
    def use_return_dict(self) -> bool:
        """Whether models return ModelOutput objects: not under torchscript, which needs tuples."""
        return self.return_dict and not self.torchscript

    @property
    def name_or_path(self) -> str:
        return self._name_or_path

    @name_or_path.setter
    def name_or_path(self, value: str | Path) -> None:
        self._name_or_path = str(value)

    @property
    def _attn_implementation(self) -> str | None:
        return self._attn_implementation_internal

    def to_dict(self) -> dict[str, Any]:
        """Every key: the common ones, the model's, nested configs as dicts, unknown keys."""
        output = {}
        for name, value in vars(self).items():
            if name.startswith("_") and name != "_name_or_path":
                continue
            output[name] = value.to_dict() if isinstance(value, PretrainedConfig) else copy.deepcopy(value)
        output["torch_dtype"] = dtype_name(self.torch_dtype)
        output["model_type"] = self.model_type
        return output

    def to_diff_dict(self, nested: bool = False) -> dict[str, Any]:
        """What config.json holds, as transformers writes it: the model's own keys, the common ones that
        differ from their defaults, and for a nested config only what differs from its defaults."""
        defaults = {**COMMON, "id2label": {0: "LABEL_0", 1: "LABEL_1"}, "label2id": {"LABEL_0": 0, "LABEL_1": 1},
                    **(self.FIELDS if nested else {})}
        output = {}
        for name, value in self.to_dict().items():
            if name == "_name_or_path" or (name in defaults and value == defaults[name]):
                continue
            inner = getattr(self, name, None)
            output[name] = inner.to_diff_dict(nested=True) if isinstance(inner, PretrainedConfig) else value
        return output

    def to_json_string(self, use_diff: bool = True) -> str:
        return json.dumps(self.to_diff_dict() if use_diff else self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: str | Path, use_diff: bool = True) -> None:
        Path(json_file_path).write_text(self.to_json_string(use_diff), encoding="utf-8")

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> None:
        """Write config.json into the folder (made if needed). Returns None, as transformers does."""
        if kwargs.get("push_to_hub"):
            raise NotImplementedError("push_to_hub is not supported: upload the folder with huggingface_hub")
        if Path(save_directory).is_file():
            raise ValueError(f"Provided path ({save_directory}) should be a directory, not a file")
        Path(save_directory).mkdir(parents=True, exist_ok=True)
        self.to_json_file(Path(save_directory) / CONFIG_NAME)

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any):
        """The config of a dict, then `kwargs` that name a key override it; with return_unused_kwargs=True
        also the kwargs that named none (and torch_dtype, which the model needs too), as transformers does."""
        return_unused_kwargs = kwargs.pop("return_unused_kwargs", False)
        config = cls(**copy.deepcopy(config_dict))
        unused = override(config, kwargs)
        return (config, unused) if return_unused_kwargs else config

    @classmethod
    def from_json_file(cls, json_file: str | Path):
        with open(json_file, encoding="utf-8") as f:
            return cls(**json.load(f))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any):
        """config.json of a folder, a shipped model ("shapes") or a Hub repo; hub keywords (revision,
        cache_dir, subfolder, ...) find it, the other keywords override its keys (see from_dict)."""
        return_unused_kwargs = kwargs.pop("return_unused_kwargs", False)
        hub_kwargs = {k: kwargs.pop(k) for k in HUB_KEYWORDS if k in kwargs}
        config = reader().read_config(pretrained_model_name_or_path, cls, **hub_kwargs)
        unused = override(config, kwargs)
        return (config, unused) if return_unused_kwargs else config

    def validate(self) -> None:
        """Raise a ConfigError naming the field of a configuration no model can be built from: wrong types,
        impossible or absurd sizes (subclasses define the checks). Models run it before they allocate anything;
        constructing a config checks less, as transformers' does."""

    def parameter_count(self) -> int | None:
        """How many parameters a model of this configuration holds, worked out from its sizes without building
        it (subclasses that know; None: unknown). Run after validate()."""
        return None

    def size_summary(self) -> str:
        """The fields that decide the size of the model, with their values, for error messages."""
        return ", ".join(f"{name}={getattr(self, name)!r}" for name in self.SIZE_FIELDS)

    def __eq__(self, other: object) -> bool:
        """Same keys and values; unlike transformers, where a config was read from does not count."""
        def content(config):
            return {k: v for k, v in config.to_dict().items() if k != "_name_or_path"}
        return type(other) is type(self) and content(self) == content(other)

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string(use_diff=False)}"


def override(config: PretrainedConfig, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Set the kwargs that name a key of `config`; return the others (and torch_dtype, which the model
    needs too), as transformers' from_dict does."""
    if "num_labels" in kwargs and "id2label" in kwargs and len(kwargs["id2label"] or []) != kwargs["num_labels"]:
        raise ValueError(f"num_labels={kwargs['num_labels']} does not match id2label {kwargs['id2label']}: "
                         f"pass one of them")
    unused = {}
    for key, value in kwargs.items():
        if hasattr(config, key):
            current = getattr(config, key)
            if isinstance(current, PretrainedConfig) and isinstance(value, dict):
                value = type(current)(**value)
            if key == "id2label":
                value = {int(i): label for i, label in value.items()}
                config.label2id = {label: i for i, label in value.items()}
            setattr(config, key, value)
            if key == "torch_dtype":
                unused[key] = value
        else:
            unused[key] = value
    if isinstance(config.torch_dtype, str) and config.torch_dtype != "auto":
        config.torch_dtype = torch_dtype(config.torch_dtype)
    return unused


class ConfigError(ValueError):
    """A configuration no model can be built from; the message names the field."""


def check_int(field: str, value: Any, minimum: int = 1, maximum: int | None = None) -> None:
    """An integer (not a bool, not 12.0 or "12") within [minimum, maximum], else a ConfigError naming the field."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum and value > maximum):
        bounds = f">= {minimum}" + (f" and <= {maximum:,}" if maximum else "")
        raise ConfigError(f"{field} must be an integer {bounds}, got {value!r}")


def check_ints(field: str, value: Any, minimum: int = 1, length: int | None = None) -> None:
    """A list of integers >= minimum (of `length` entries if given)."""
    if not isinstance(value, (list, tuple)) or (length is not None and len(value) != length):
        raise ConfigError(f"{field} must be a list of {length or 'some'} integers, got {value!r}")
    for i, item in enumerate(value):
        check_int(f"{field}[{i}]", item, minimum)


def check_number(field: str, value: Any, minimum: float = 0.0, maximum: float = math.inf) -> None:
    """A finite real number (not a bool) within [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not minimum <= value <= maximum or \
            not math.isfinite(value):
        upper = f" and <= {maximum}" if math.isfinite(maximum) else ""
        raise ConfigError(f"{field} must be a number >= {minimum}{upper}, got {value!r}")


def check_bool(field: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{field} must be true or false, got {value!r}")


def check_choice(field: str, value: Any, choices: Any) -> None:
    """One of `choices` (a str among them: a list or a dict given in JSON is refused, not hashed)."""
    if not isinstance(value, (str, type(None))) or value not in choices:
        raise ConfigError(f"{field} must be one of {sorted(c for c in choices if c is not None)}, got {value!r}")
