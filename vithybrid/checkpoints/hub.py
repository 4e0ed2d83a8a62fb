"""Checkpoints in the Hugging Face Hub's layout: config.json + model.safetensors (or pytorch_model.bin).

Loading reads a local folder or downloads through huggingface_hub (its cache, HF_HUB_OFFLINE and its
progress bars), checks every key and shape, and never runs code from a file: safetensors, or
torch.load(weights_only=True). Every failure is a CheckpointError that says what to do.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import socket
import struct
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from safetensors.torch import load_file

from ..base.checkpoint import CheckpointError
from ..base.configuration import CONFIG_NAME
from ..base.modeling import WEIGHTS_NAMES
from .shipped import DEFAULT_MODEL, resolve_model

REPO_ID = re.compile(r"^[\w-][\w.-]*(/[\w-][\w.-]*)?$")  # "name" or "owner/name"
MAX_HEADER = 100_000_000  # bytes of a safetensors header (the format's own limit)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub's host answers at all (so that an offline start does not wait on retries).
    Behind a proxy a direct connection says nothing, so then the answer is yes and the download decides."""
    from huggingface_hub import constants  # deferred here and below: only Hub ids need it, and it is slow to import

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


def locate(name_or_path: str | Path, filename: str, subfolder: str = "", **hub_kwargs: Any) -> Path | None:
    """`filename` in a checkpoint folder, a shipped model ("shapes") or a Hub repo (downloaded to the
    cache), in `subfolder` of it if given; None if it has none."""
    folder = Path(resolve_model(name_or_path)).expanduser()
    if folder.is_dir():
        path = folder / subfolder / filename
        return path if path.is_file() else None
    name = str(name_or_path)
    if folder.exists() or not REPO_ID.match(name):
        raise CheckpointError(f"{name!r} is neither a checkpoint folder nor a Hub model id like "
                              f"'{DEFAULT_MODEL}'.")
    return _hub_file(name, filename, **({"subfolder": subfolder} if subfolder else {}), **hub_kwargs)


def locate_weights(name_or_path: str | Path, use_safetensors: bool | None = None, **hub_kwargs: Any) -> Path:
    """The weights file of a checkpoint: model.safetensors, else pytorch_model.bin (use_safetensors=True
    or False: only that one)."""
    names = {None: WEIGHTS_NAMES, True: WEIGHTS_NAMES[:1], False: WEIGHTS_NAMES[1:]}[use_safetensors]
    for weights_name in names:
        weights = locate(name_or_path, weights_name, **hub_kwargs)
        if weights is not None:
            return weights
    if locate(name_or_path, CONFIG_NAME, **hub_kwargs) is None:
        raise CheckpointError(f"{str(name_or_path)!r} has no config.json. A checkpoint holds config.json and "
                              f"model.safetensors (or pytorch_model.bin), as save_pretrained writes them.")
    raise CheckpointError(f"{str(name_or_path)!r} has config.json but no {' or '.join(names)}.")


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}).") from error


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


def parameters_in(path: Path) -> int:
    """At most how many values a weights file holds, without loading it: the tensor shapes in a safetensors
    header; for a pickle, its size in bytes (no value takes less than a byte)."""
    if path.suffix != ".safetensors":
        return path.stat().st_size
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > MAX_HEADER:
                raise ValueError(f"a header of {length:,} bytes")
            header = json.loads(f.read(length))
        return sum(math.prod(int(size) for size in entry["shape"]) for key, entry in header.items()
                   if key != "__metadata__")
    except (OSError, struct.error, ValueError, TypeError, KeyError, AttributeError) as error:
        raise CheckpointError(f"Could not read {path}: the file is corrupt or truncated ({error}). Delete it and "
                              f"download or save it again.") from error

