"""An image processor base that behaves as transformers' `BaseImageProcessor`, and its `BatchFeature`.

BatchFeature: a dict of model inputs that is also read by attribute (`batch.pixel_values`), converts to
"pt" or "np" and moves floating tensors with `.to(device or dtype)`. The processor base: the dict /
JSON / folder methods with transformers' keywords, and the image transforms (resize, center_crop,
rescale, normalize) on numpy images in either channel layout. TensorFlow and JAX tensors are not
produced: this package is PyTorch's.
"""

from __future__ import annotations

import copy
import json
from collections import UserDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from .checkpoint import HUB_KEYWORDS, CheckpointError, reader

PROCESSOR_NAME = "preprocessor_config.json"
FIRST, LAST = "channels_first", "channels_last"  # transformers' ChannelDimension values (a str enum)
ImageLike = Image.Image | np.ndarray | torch.Tensor


class BatchFeature(UserDict):
    """{"pixel_values": ...}, readable as `batch.pixel_values`; tensor_type "pt" or "np" stacks the list."""

    def __init__(self, data: dict[str, Any] | None = None, tensor_type: str | None = None):
        super().__init__(data)
        self.convert_to_tensors(tensor_type)

    def __getitem__(self, item: str) -> Any:
        if not isinstance(item, str):
            raise KeyError("Indexing with integers is not available: use a key such as 'pixel_values'")
        return self.data[item]

    def __getattr__(self, item: str) -> Any:
        if item == "data":  # not set yet (copy, unpickling)
            raise AttributeError(item)
        try:
            return self.data[item]
        except KeyError:
            raise AttributeError(item) from None

    def __getstate__(self) -> dict[str, Any]:
        return {"data": self.data}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.data = state["data"]

    def convert_to_tensors(self, tensor_type: str | None = None) -> BatchFeature:
        if tensor_type is None:
            return self
        tensor_type = str(getattr(tensor_type, "value", tensor_type))
        if tensor_type not in ("pt", "np"):
            raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {tensor_type!r} (TensorFlow and JAX "
                             f"are not supported)")
        for key, value in self.data.items():
            if isinstance(value, (list, tuple)) and value and isinstance(value[0], torch.Tensor):
                value = torch.stack(list(value))
            if tensor_type == "pt":
                is_tensor = isinstance(value, torch.Tensor)
                self.data[key] = value if is_tensor else torch.from_numpy(np.array(value))
            else:
                self.data[key] = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        return self

    def to(self, *args: Any, **kwargs: Any) -> BatchFeature:
        """Floating tensors to a device and/or dtype; other tensors only to the device (as transformers)."""
        device = kwargs.get("device")
        if device is None and args and not isinstance(args[0], torch.dtype):
            if not isinstance(args[0], (str, int, torch.device)):
                raise ValueError(f"Attempting to cast a BatchFeature to type {args[0]}. This is not supported.")
            device = args[0]
        for key, value in self.data.items():
            if isinstance(value, torch.Tensor) and torch.is_floating_point(value):
                self.data[key] = value.to(*args, **kwargs)
            elif isinstance(value, torch.Tensor) and device is not None:
                self.data[key] = value.to(device=device)
        return self


def channel_format(image: np.ndarray) -> str:
    """Where an (H, W, C) or (C, H, W) image keeps its channels (channels first when both could be)."""
    if image.ndim == 2:
        return LAST  # one channel, which to_hwc adds
    if image.ndim != 3:
        raise ValueError(f"Expected an image of shape (H, W), (H, W, C) or (C, H, W), got {image.shape}")
    if image.shape[0] in (1, 3) or (image.shape[0] == 4 and image.shape[-1] not in (1, 3, 4)):
        return FIRST
    if image.shape[-1] in (1, 3, 4):
        return LAST
    raise ValueError(f"Cannot tell the channels of an image of shape {image.shape}: pass input_data_format")


def to_hwc(image: np.ndarray, input_data_format: str | None = None) -> np.ndarray:
    image = image[..., None] if image.ndim == 2 else image
    return image.transpose(1, 2, 0) if str(input_data_format or channel_format(image)) == FIRST else image


def from_hwc(image: np.ndarray, data_format: str) -> np.ndarray:
    return image.transpose(2, 0, 1) if str(data_format) == FIRST else image


def to_pil(image: ImageLike, input_data_format: str | None = None) -> Image.Image:
    """A PIL image from an image, an (H, W[, C]) or (C, H, W) array or tensor, uint8 or float in [0, 1]."""
    if isinstance(image, Image.Image):
        return image
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    array = to_hwc(array, input_data_format)
    if array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.size and array.min() >= 0 and array.max() <= 1:
            array = array * 255  # float images in [0, 1]
        array = np.clip(array, 0, 255).astype(np.uint8)
    return Image.fromarray(array)


def size_dict(size: int | dict | Sequence[int], square: bool) -> dict[str, int]:
    """Normalize the forms a config may use: 384, [h, w], {"shortest_edge": n} or {"height", "width"}."""
    if isinstance(size, dict):
        return dict(size)
    if isinstance(size, int):
        return {"height": size, "width": size} if square else {"shortest_edge": size}
    return {"height": size[0], "width": size[1]}


def resized_size(size: dict[str, int], width: int, height: int) -> tuple[int, int]:
    """(width, height) after resizing to `size`; the long side of a shortest_edge resize is truncated."""
    if "shortest_edge" not in size:
        return size["width"], size["height"]
    short, long = sorted((width, height))
    new_short, new_long = size["shortest_edge"], int(size["shortest_edge"] * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def crop_or_pad(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """(H, W, C) cut to (left, top, right, bottom), with zeros where the box reaches outside the image."""
    height, width = image.shape[:2]
    left, top, right, bottom = box
    if left >= 0 and top >= 0 and right <= width and bottom <= height:
        return image[top:bottom, left:right]
    crop = np.zeros((bottom - top, right - left, image.shape[2]), dtype=image.dtype)
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(bottom, height), min(right, width)  # the part inside
    crop[y0 - top:y1 - top, x0 - left:x1 - left] = image[y0:y1, x0:x1]
    return crop


class BaseImageProcessor:
    """Settings are attributes (unknown keys too, so a newer preprocessor_config.json round-trips);
    subclasses define `preprocess`."""

    model_input_names = ["pixel_values"]

    def __init__(self, **kwargs: Any):
        for key in ("image_processor_type", "feature_extractor_type", "processor_class", "_processor_class"):
            kwargs.pop(key, None)
        for key, value in kwargs.items():
            setattr(self, key, value)

    def __call__(self, images: Any, **kwargs: Any) -> BatchFeature:
        return self.preprocess(images, **kwargs)

    def preprocess(self, images: Any, **kwargs: Any) -> BatchFeature:
        raise NotImplementedError

    # Transforms, with transformers' signatures: numpy images in, numpy images out, channels where the
    # input had them unless data_format says otherwise.
    def resize(self, image: np.ndarray, size: dict[str, int], resample: int = Image.BICUBIC,
               data_format: str | None = None, input_data_format: str | None = None, **kwargs: Any) -> np.ndarray:
        """To size {"height", "width"}, or the shortest edge to size["shortest_edge"] keeping the aspect ratio."""
        input_data_format = input_data_format or channel_format(np.asarray(image))
        pil = to_pil(image, input_data_format)
        resized = np.asarray(pil.resize(resized_size(size_dict(size, square=False), *pil.size), resample=int(resample)))
        array = np.asarray(image)
        if np.issubdtype(array.dtype, np.floating) and array.size and array.min() >= 0 and array.max() <= 1:
            resized = (resized.astype(np.float64) / 255).astype(np.float32)  # back to [0, 1], as transformers

        return from_hwc(to_hwc(resized, LAST), data_format or input_data_format)

    def center_crop(self, image: np.ndarray, size: dict[str, int], data_format: str | None = None,
                    input_data_format: str | None = None, **kwargs: Any) -> np.ndarray:
        """The central size["height"] x size["width"] (padded with zeros where the image is smaller)."""
        input_data_format = input_data_format or channel_format(image)
        hwc = to_hwc(image, input_data_format)
        size = size_dict(size, square=True)
        height, width = hwc.shape[:2]
        top, left = (height - size["height"]) // 2, (width - size["width"]) // 2
        return from_hwc(crop_or_pad(hwc, (left, top, left + size["width"], top + size["height"])),
                        data_format or input_data_format)

    def rescale(self, image: np.ndarray, scale: float, data_format: str | None = None, dtype: type = np.float32,
                input_data_format: str | None = None, **kwargs: Any) -> np.ndarray:
        """image * scale, computed in float64 and returned as `dtype`."""
        input_data_format = input_data_format or channel_format(image)
        rescaled = (image.astype(np.float64) * scale).astype(dtype)
        return from_hwc(to_hwc(rescaled, input_data_format), data_format or input_data_format)

    def normalize(self, image: np.ndarray, mean: float | Sequence[float], std: float | Sequence[float],
                  data_format: str | None = None, input_data_format: str | None = None, **kwargs: Any) -> np.ndarray:
        """(image - mean) / std per channel, in float32 unless the image is already floating point."""
        input_data_format = input_data_format or channel_format(image)
        hwc = to_hwc(image, input_data_format)
        hwc = hwc if np.issubdtype(hwc.dtype, np.floating) else hwc.astype(np.float32)
        channels = hwc.shape[-1]
        mean, std = (np.array([v] * channels if np.isscalar(v) else v, dtype=hwc.dtype) for v in (mean, std))
        if channels != 1 and (len(mean) != channels or len(std) != channels):  # one channel: a gray image, spread
            raise ValueError(f"image_mean and image_std need one value per channel: the image has {channels}, they "
                             f"have {len(mean)} and {len(std)}")
        return from_hwc((hwc - mean) / std, data_format or input_data_format)

    # Settings as a dict, JSON and preprocessor_config.json.
    def to_dict(self) -> dict[str, Any]:
        output = {k: copy.deepcopy(v) for k, v in vars(self).items() if not k.startswith("_")}
        return {**output, "image_processor_type": type(self).__name__}

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: str | Path) -> None:
        Path(json_file_path).write_text(self.to_json_string(), encoding="utf-8")

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"

    def save_pretrained(self, save_directory: str | Path, push_to_hub: bool = False, **kwargs: Any) -> list[str]:
        """Write preprocessor_config.json into the folder; returns [its path], as transformers does."""
        if push_to_hub:
            raise NotImplementedError("push_to_hub is not supported: upload the folder with huggingface_hub")
        if Path(save_directory).is_file():
            raise AssertionError(f"Provided path ({save_directory}) should be a directory, not a file")
        Path(save_directory).mkdir(parents=True, exist_ok=True)
        path = str(Path(save_directory) / PROCESSOR_NAME)
        self.to_json_file(path)
        return [path]

    @classmethod
    def from_dict(cls, image_processor_dict: dict[str, Any], **kwargs: Any):
        """The processor of a dict; kwargs naming a setting override it; with return_unused_kwargs=True
        also the kwargs that named none."""
        return_unused_kwargs = kwargs.pop("return_unused_kwargs", False)
        settings = dict(image_processor_dict)
        for key in ("size", "crop_size"):  # through the constructor, which normalizes them
            if key in kwargs and key in settings:
                settings[key] = kwargs.pop(key)
        processor = cls(**settings)
        unused = {}
        for key, value in kwargs.items():
            if hasattr(processor, key):
                setattr(processor, key, value)
            else:
                unused[key] = value
        return (processor, unused) if return_unused_kwargs else processor

    @classmethod
    def from_json_file(cls, json_file: str | Path):
        with open(json_file, encoding="utf-8") as f:
            return cls(**json.load(f))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any):
        """preprocessor_config.json of a checkpoint folder, a shipped model or a Hub repo (or the settings its
        format keeps elsewhere, as timm's config.json does); hub keywords as from_pretrained's: revision,
        cache_dir, subfolder, ...; other kwargs as from_dict's. NoProcessorConfig if the checkpoint has none."""
        hub_kwargs = {k: kwargs.pop(k) for k in HUB_KEYWORDS if k in kwargs}
        settings = reader().processor_settings(pretrained_model_name_or_path, **hub_kwargs)
        if settings is None:
            raise NoProcessorConfig(f"{str(pretrained_model_name_or_path)!r} has no {PROCESSOR_NAME}.")
        try:
            return cls.from_dict(settings, **kwargs)
        except (ValueError, TypeError) as error:
            raise CheckpointError(f"{pretrained_model_name_or_path}: {PROCESSOR_NAME} is not a valid image "
                                  f"processor config: {error}") from error


class NoProcessorConfig(CheckpointError):
    """The checkpoint has no image processor settings (a folder that model.save_pretrained alone wrote)."""
