"""Checkpoints in the Hugging Face Hub's layout: config.json + model.safetensors (or pytorch_model.bin).

Loading reads a local folder or downloads through huggingface_hub (its cache, HF_HUB_OFFLINE and its
progress bars), checks every key and shape, and never runs code from a file: safetensors, or
torch.load(weights_only=True). Every failure is a CheckpointError that says what to do.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from safetensors.torch import load_file, save_file

from ..model.config import ViTHybridConfig
from .shipped import resolve_model

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAMES = ("model.safetensors", "pytorch_model.bin")  # in order of preference
REPO_ID = re.compile(r"^[\w-][\w.-]*(/[\w-][\w.-]*)?$")  # "name" or "owner/name"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def current_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (os.umask can only set it)."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Umask:")), 8)
    except (OSError, StopIteration):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


class CheckpointError(OSError):
    """A checkpoint could not be found, read or matched to the model; the message says what to do."""


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub's host answers at all (so that an offline start does not wait on retries).
    Behind a proxy a direct connection says nothing, so then the answer is yes and the download decides."""
    from huggingface_hub import constants

    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
                                              "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
        return True
    except OSError:
        return False


def _hub_file(repo_id: str, filename: str, **hub_kwargs: Any) -> Path | None:
    """Download (or find in the cache) one file of a Hub repo; None if the repo has no such file."""
    from huggingface_hub import _CACHED_NO_EXIST, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    if not hub_kwargs.get("local_files_only") and not hub_reachable():
        hub_kwargs = {**hub_kwargs, "local_files_only": True}  # the cache, at once, instead of minutes of retries
    try:
        return Path(hf_hub_download(repo_id, filename, **hub_kwargs))
    except LocalEntryNotFoundError as error:
        # Offline, a file the Hub said it does not have (timm repos have no preprocessor_config.json) is
        # remembered as such in the cache: that is "no such file", not "not downloaded yet".
        if try_to_load_from_cache(repo_id, filename, cache_dir=hub_kwargs.get("cache_dir"),
                                  revision=hub_kwargs.get("revision")) is _CACHED_NO_EXIST:
            return None
        raise CheckpointError(
            f"Could not download {filename} of '{repo_id}' from the Hugging Face Hub (no network, or HF_HUB_OFFLINE "
            f"is set) and it is not in the local cache. Connect to the internet once so it is cached, or pass a "
            f"local folder that holds config.json and model.safetensors.") from error
    except RepositoryNotFoundError as error:
        raise CheckpointError(f"'{repo_id}' is not a model on the Hugging Face Hub (or it is private or gated: "
                              f"log in with `hf auth login`). Check the name.") from error
    except RevisionNotFoundError as error:
        raise CheckpointError(f"'{repo_id}' has no revision {hub_kwargs.get('revision')!r}.") from error
    except EntryNotFoundError:
        return None


def locate(name_or_path: str | Path, filename: str, **hub_kwargs: Any) -> Path | None:
    """`filename` in a checkpoint folder, a shipped model ("shapes") or a Hub repo (downloaded to the
    cache); None if it has none."""
    folder = Path(resolve_model(name_or_path)).expanduser()
    if folder.is_dir():
        return folder / filename if (folder / filename).is_file() else None
    name = str(name_or_path)
    if folder.exists() or not REPO_ID.match(name):
        raise CheckpointError(f"{name!r} is neither a checkpoint folder nor a Hub model id like "
                              f"'google/vit-hybrid-base-bit-384'.")
    return _hub_file(name, filename, **hub_kwargs)


def resolve_files(name_or_path: str | Path, **hub_kwargs: Any) -> tuple[Path, Path]:
    """(config.json, weights file) of a checkpoint folder or Hub repo."""
    config = locate(name_or_path, CONFIG_NAME, **hub_kwargs)
    if config is None:
        raise CheckpointError(f"{str(name_or_path)!r} has no config.json. A checkpoint holds config.json and "
                              f"model.safetensors (or pytorch_model.bin), as save_pretrained writes them.")
    for weights_name in WEIGHTS_NAMES:
        weights = locate(name_or_path, weights_name, **hub_kwargs)
        if weights is not None:
            return config, weights
    raise CheckpointError(f"{str(name_or_path)!r} has config.json but no model.safetensors or pytorch_model.bin.")


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}).") from error


def read_config(path: Path) -> ViTHybridConfig:
    """Our (transformers') config.json, or timm's for one of its hybrid ViTs (see timm_format)."""
    from . import timm_format

    data = read_json(path)
    if timm_format.is_timm_config(data):
        return timm_format.vithybrid_config(data, path)
    model_type = data.get("model_type", ViTHybridConfig.model_type)
    if model_type != ViTHybridConfig.model_type:
        raise CheckpointError(f"{path} describes a {model_type!r} model, not a ViT-Hybrid ('vit-hybrid') one. "
                              f"Pick a ViT-Hybrid checkpoint, such as google/vit-hybrid-base-bit-384.")
    try:
        return ViTHybridConfig.from_dict(data)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path} is not a valid ViT-Hybrid config: {error}") from error


def load_config(name_or_path: str | Path, **hub_kwargs: Any) -> ViTHybridConfig:
    path = locate(name_or_path, CONFIG_NAME, **hub_kwargs)
    if path is None:
        raise CheckpointError(f"{str(name_or_path)!r} has no config.json.")
    return read_config(path)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file. A pickle is read with weights_only=True, so it cannot run code."""
    try:
        if path.suffix == ".safetensors":
            return load_file(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"Refused to load {path}: it holds Python objects other than tensors, which could "
                              f"run code. Only plain weights are loaded; convert it to safetensors from a trusted "
                              f"copy. ({str(error).splitlines()[0]})") from error
    except Exception as error:  # safetensors and torch.load raise many types for a damaged file
        raise CheckpointError(f"Could not read {path}: the file is corrupt or truncated ({error}). Delete it and "
                              f"download or save it again.") from error


def _match_keys(state: dict[str, torch.Tensor], model: torch.nn.Module, prefix: str) -> tuple[dict, list[str]]:
    """Rename checkpoint keys to the model's, between base and classification layouts as transformers does.

    A classification model reads a base checkpoint (new random classifier, pooler ignored); a base
    model reads a classification checkpoint (classifier ignored, new random pooler). Any other
    missing or unexpected key is an error. Returns the state dict and the keys left to initialize.
    """
    expected = model.state_dict().keys()
    model_is_base = not any(k.startswith(prefix + ".") for k in expected)
    checkpoint_is_base = not any(k.startswith(prefix + ".") for k in state)
    if model_is_base and not checkpoint_is_base:
        state = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
    elif checkpoint_is_base and not model_is_base:
        state = {f"{prefix}.{k}": v for k, v in state.items() if not k.startswith("pooler.")}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if model_is_base != checkpoint_is_base:
        new_head = "pooler." if model_is_base else "classifier."
        fresh, missing = [k for k in missing if k.startswith(new_head)], [k for k in missing if not k.startswith(new_head)]
    else:
        fresh = []
    if missing or unexpected:
        def listing(keys):
            return ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
        problems = ([f"missing {len(missing)} weights: {listing(missing)}"] if missing else []) + \
                   ([f"unexpected {len(unexpected)} weights: {listing(unexpected)}"] if unexpected else [])
        raise CheckpointError(f"The weights do not fit the architecture in config.json: {'; '.join(problems)}. "
                              f"The weights file and config.json must come from the same model.")
    return state, fresh


class PreTrainedMixin:
    """from_pretrained / save_pretrained for the ViT-Hybrid models (a folder or a Hub repo)."""

    base_model_prefix: str

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, attn_implementation: str = "sdpa",
                        torch_dtype: torch.dtype | str | None = None, revision: str | None = None,
                        cache_dir: str | Path | None = None, local_files_only: bool = False,
                        token: str | bool | None = None):
        """Load a checkpoint folder or Hub repo (e.g. "google/vit-hybrid-base-bit-384") in eval mode.

        Also timm's layout of its hybrid ViTs (e.g. "timm/vit_small_r26_s32_384.augreg_in21k_ft_in1k").
        torch_dtype: None loads float32, "auto" the dtype recorded in config.json, or a torch dtype.
        """
        from . import timm_format

        hub_kwargs = dict(revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
        config_path, weights_path = resolve_files(name_or_path, **hub_kwargs)
        config = read_config(config_path)
        if torch_dtype == "auto":
            torch_dtype = DTYPES.get(config.extra.get("torch_dtype"), torch.float32)
        dtype = DTYPES[torch_dtype] if isinstance(torch_dtype, str) else (torch_dtype or torch.float32)

        with torch.device("meta"):  # no memory and no random init for weights that are about to be replaced
            model = cls(config)
        state = read_state_dict(weights_path)
        if timm_format.is_timm_state_dict(state):  # timm's names -> ours
            state = timm_format.hub_state_dict(state, config)
        state, fresh = _match_keys(state, model, cls.base_model_prefix)
        own = model.state_dict()
        mismatched = [f"{k}: checkpoint {tuple(v.shape)}, model {tuple(own[k].shape)}"
                      for k, v in state.items() if v.shape != own[k].shape]
        if mismatched:
            raise CheckpointError(f"Weight shapes do not match the architecture in config.json: "
                                  f"{'; '.join(mismatched[:8])}. The weights file and config.json must come "
                                  f"from the same model.")
        model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=False, assign=True)
        if fresh:
            logger.warning("Newly initialized (train them before use): %s", ", ".join(fresh))
            for module_name in {k.rsplit(".", 1)[0] for k in fresh}:
                module = model.get_submodule(module_name).to_empty(device="cpu")
                model.init_weights(module)
        model.to(dtype)
        model.set_attn_implementation(attn_implementation)
        return model.eval()

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json and model.safetensors, loadable here and by transformers 4.46.3."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.extra.update(architectures=[type(self).__name__], torch_dtype=str(self.dtype).split(".")[-1])
        self.config.save_pretrained(directory)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, directory / WEIGHTS_NAMES[0], metadata={"format": "pt"})
        # safetensors writes through a private temporary file (mode 0600); give the weights the mode any
        # other file gets here, so that a shared or served folder can read them.
        os.chmod(directory / WEIGHTS_NAMES[0], 0o666 & ~current_umask())
