"""Model outputs that behave as transformers' `ModelOutput`: a dataclass and an ordered dict at once.

Fields are attributes (`out.logits`), keys (`out["logits"]`) and positions (`out[0]`), but only the
fields that are set (not None) are keys, so `out.to_tuple()`, `out[i]`, iteration and `keys()` skip
the None ones: the tuple a model returns with return_dict=False. Being a dict, it passes through
torch.jit.trace(strict=False), and it is a pytree node for torch.compile and torch.export.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.utils._pytree as pytree


class ModelOutput(OrderedDict):
    """Subclasses are dataclasses whose fields default to None (the first may be required)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        pytree.register_pytree_node(cls, lambda out: (list(out.values()), list(out.keys())),
                                    lambda values, keys: cls(**dict(zip(keys, values))),
                                    serialized_type_name=f"{cls.__module__}.{cls.__name__}")

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None:
                super().__setitem__(field.name, value)

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, str):
            return super().__getitem__(key)
        return self.to_tuple()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        super().__setattr__(key, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.keys() and value is not None:
            super().__setitem__(name, value)
        super().__setattr__(name, value)

    def _immutable(self, *args: Any, **kwargs: Any):
        raise Exception(f"You cannot use ``{type(self).__name__}`` this way: set a field instead.")

    __delitem__ = setdefault = pop = update = _immutable

    def __reduce__(self):  # pickle by fields, as a dataclass (DataLoader workers, multiprocessing)
        rebuild, _, *state = super().__reduce__()
        return (rebuild, tuple(getattr(self, field.name) for field in fields(self)), *state)

    def to_tuple(self) -> tuple[Any, ...]:
        """The set fields in order: what the model returns with return_dict=False."""
        return tuple(self[key] for key in self.keys())


@dataclass
class BaseModelOutputWithPooling(ModelOutput):
    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class ImageClassifierOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
