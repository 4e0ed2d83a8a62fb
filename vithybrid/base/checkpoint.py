"""Where `from_pretrained` gets a checkpoint from: the one seam between the generic base and the checkpoint
formats. base says what it needs from a named checkpoint (`CheckpointReader`); the concrete package installs
the reader that knows the places (folders, the models it ships, the Hugging Face Hub) and the formats
(transformers' layout, timm's): see vithybrid/checkpoints. base itself knows none of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

# from_pretrained keywords that find files (passed to huggingface_hub), as transformers names them
HUB_KEYWORDS = ("revision", "cache_dir", "local_files_only", "token", "force_download", "subfolder")


class CheckpointError(OSError):
    """A checkpoint could not be found, read or matched to the model; the message says what to do."""


class CheckpointReader(Protocol):
    """What from_pretrained reads of a checkpoint named by a folder, a shipped model or a Hub id. Every failure
    is a CheckpointError that says what to do."""

    def read_config(self, name: str | Path, config_class: type, **hub_kwargs: Any) -> Any:
        """The checkpoint's config, as a `config_class` (whatever format its config.json is in)."""

    def locate_weights(self, name: str | Path, use_safetensors: bool | None = None, **hub_kwargs: Any) -> Path:
        """The checkpoint's weights file (use_safetensors True or False: only that kind)."""

    def parameters_in(self, path: Path) -> int:
        """At most how many values the weights file holds, read without loading its tensors."""

    def read_state_dict(self, path: Path) -> dict[str, torch.Tensor]:
        """The tensors of a weights file (never running code from it)."""

    def model_state_dict(self, state: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
        """A state dict under the model's names (another format's names translated)."""

    def processor_settings(self, name: str | Path, **hub_kwargs: Any) -> dict[str, Any] | None:
        """The checkpoint's image processor settings; None if it has none."""


_installed: list[CheckpointReader] = []


def install_reader(reader: CheckpointReader) -> None:
    """Make `reader` the one from_pretrained uses (vithybrid.checkpoints installs its own on import)."""
    _installed[:] = [reader]


def reader() -> CheckpointReader:
    if not _installed:
        raise RuntimeError("no checkpoint reader is installed: import vithybrid, whose checkpoints package installs it")
    return _installed[0]
