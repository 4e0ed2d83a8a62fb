"""The image processor: RGB, resize (shortest edge, or both sides), center crop, rescale, normalize.

Same options, same preprocessor_config.json and the same pixel values as transformers'
ViTHybridImageProcessor (each step is done in the same order and precision, on Pillow and numpy).
One option of our own, `crop_offset_rounding="round"`, centers the crop as torchvision (and so timm's
eval transform) does; transformers ignores it and floors the offset, which differs by one pixel where
the resized side exceeds the crop by 3 modulo 4 (or falls short of it by an odd number).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

CONFIG_NAME = "preprocessor_config.json"
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]  # transformers' defaults for this processor
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
CROP_OFFSET_ROUNDINGS = ("floor", "round")
ImageLike = Image.Image | np.ndarray | torch.Tensor


def _size_dict(size: int | dict | Sequence[int], square: bool) -> dict[str, int]:
    """Normalize the forms a config may use: 384, [h, w], {"shortest_edge": n} or {"height", "width"}."""
    if isinstance(size, dict):
        return dict(size)
    if isinstance(size, int):
        return {"height": size, "width": size} if square else {"shortest_edge": size}
    return {"height": size[0], "width": size[1]}


def to_pil(image: ImageLike) -> Image.Image:
    """A PIL image from an image, an (H, W[, C]) or (C, H, W) array or tensor, uint8 or float in [0, 1]."""
    if isinstance(image, Image.Image):
        return image
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = array.transpose(1, 2, 0)  # channels first -> last
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3):
        raise ValueError(f"Expected an image of shape (H, W), (H, W, C) or (C, H, W), got {array.shape}")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.size and array.min() >= 0 and array.max() <= 1:
            array = array * 255  # float images in [0, 1]
        array = np.clip(array, 0, 255).astype(np.uint8)
    return Image.fromarray(array)


class ViTHybridImageProcessor:
    """Turns images into the model's `pixel_values` (B, 3, crop_h, crop_w), float32."""

    def __init__(self, do_resize: bool = True, size: int | dict | None = None, resample: int = Image.BICUBIC,
                 do_center_crop: bool = True, crop_size: int | dict | None = None, do_rescale: bool = True,
                 rescale_factor: float = 1 / 255, do_normalize: bool = True, image_mean: Sequence[float] | None = None,
                 image_std: Sequence[float] | None = None, do_convert_rgb: bool = True,
                 crop_offset_rounding: str = "floor", **extra: Any):
        self.do_resize, self.resample = do_resize, int(resample)
        self.size = _size_dict(224 if size is None else size, square=False)
        self.do_center_crop = do_center_crop
        self.crop_size = _size_dict(224 if crop_size is None else crop_size, square=True)
        self.do_rescale, self.rescale_factor = do_rescale, rescale_factor
        self.do_normalize = do_normalize
        self.image_mean = list(CLIP_MEAN if image_mean is None else image_mean)
        self.image_std = list(CLIP_STD if image_std is None else image_std)
        self.do_convert_rgb = do_convert_rgb
        if crop_offset_rounding not in CROP_OFFSET_ROUNDINGS:
            raise ValueError(f"crop_offset_rounding must be one of {CROP_OFFSET_ROUNDINGS}, "
                             f"got {crop_offset_rounding!r}")
        self.crop_offset_rounding = crop_offset_rounding
        extra.pop("image_processor_type", None)
        extra.pop("feature_extractor_type", None)
        self.extra = extra

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the resize step, truncating the long side as transformers does."""
        if "shortest_edge" not in self.size:
            return self.size["width"], self.size["height"]
        short, long = sorted((width, height))
        new_short, new_long = self.size["shortest_edge"], int(self.size["shortest_edge"] * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)

    def crop_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the center crop in an image of this size (may reach outside it).

        The offset is floor(excess / 2) as in transformers; with crop_offset_rounding="round" it is
        torchvision's CenterCrop: round(excess / 2) (half to even), and where the crop is the larger,
        the image padded with deficit // 2 before it, i.e. an offset of -(deficit // 2)."""
        crop_h, crop_w = self.crop_size["height"], self.crop_size["width"]

        def offset(excess: int) -> int:
            if self.crop_offset_rounding == "floor":
                return excess // 2
            return round(excess / 2) if excess >= 0 else -(-excess // 2)

        top, left = offset(height - crop_h), offset(width - crop_w)
        return left, top, left + crop_w, top + crop_h

    def preprocess_one(self, image: ImageLike) -> np.ndarray:
        image = to_pil(image)
        if self.do_convert_rgb and image.mode != "RGB":
            image = image.convert("RGB")
        if self.do_resize:
            image = image.resize(self.resized_size(*image.size), resample=self.resample)
        array = np.asarray(image)
        if array.ndim == 2:
            array = array[..., None]
        if self.do_center_crop:
            array = self._center_crop(array)
        if self.do_rescale:
            array = (array.astype(np.float64) * self.rescale_factor).astype(np.float32)
        if self.do_normalize:
            array = array.astype(np.float32) if not np.issubdtype(array.dtype, np.floating) else array
            array = (array - np.array(self.image_mean, dtype=array.dtype)) / np.array(self.image_std, dtype=array.dtype)
        return array.transpose(2, 0, 1)

    def _center_crop(self, array: np.ndarray) -> np.ndarray:
        """Crop (H, W, C) to `crop_box`, with zeros where the box reaches outside the image."""
        height, width = array.shape[:2]
        left, top, right, bottom = self.crop_box(width, height)
        if left >= 0 and top >= 0 and right <= width and bottom <= height:
            return array[top:bottom, left:right]
        crop = np.zeros((bottom - top, right - left, array.shape[2]), dtype=array.dtype)
        y0, x0, y1, x1 = max(top, 0), max(left, 0), min(bottom, height), min(right, width)  # the part inside
        crop[y0 - top:y1 - top, x0 - left:x1 - left] = array[y0:y1, x0:x1]
        return crop

    def __call__(self, images: ImageLike | Sequence[ImageLike], return_tensors: str | None = "pt") -> dict[str, Any]:
        """{"pixel_values": batch} for one image or a list: a tensor ("pt"), an array ("np") or a list (None)."""
        single = isinstance(images, (Image.Image, np.ndarray, torch.Tensor)) and not (
            not isinstance(images, Image.Image) and images.ndim == 4)
        batch = [self.preprocess_one(image) for image in ([images] if single else images)]
        if return_tensors == "pt":
            return {"pixel_values": torch.from_numpy(np.stack(batch))}
        if return_tensors == "np":
            return {"pixel_values": np.stack(batch)}
        return {"pixel_values": batch}

    def to_dict(self) -> dict[str, Any]:
        return {"image_processor_type": "ViTHybridImageProcessor", "do_resize": self.do_resize, "size": self.size,
                "resample": self.resample, "do_center_crop": self.do_center_crop, "crop_size": self.crop_size,
                "do_rescale": self.do_rescale, "rescale_factor": self.rescale_factor,
                "do_normalize": self.do_normalize, "image_mean": self.image_mean, "image_std": self.image_std,
                "do_convert_rgb": self.do_convert_rgb,
                **({"crop_offset_rounding": self.crop_offset_rounding} if self.crop_offset_rounding != "floor" else {}),
                **self.extra}

    def save_pretrained(self, directory: str | Path) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / CONFIG_NAME).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **hub_kwargs: Any) -> ViTHybridImageProcessor:
        """From preprocessor_config.json in a checkpoint folder or Hub repo, or, for a timm checkpoint,
        from the pretrained_cfg in its config.json (timm's eval transform)."""
        from ..checkpoints import timm_format
        from ..checkpoints.hub import CONFIG_NAME as MODEL_CONFIG_NAME
        from ..checkpoints.hub import CheckpointError, locate, read_json

        path = locate(name_or_path, CONFIG_NAME, **hub_kwargs)
        if path is None:
            model_config = locate(name_or_path, MODEL_CONFIG_NAME, **hub_kwargs)
            data = read_json(model_config) if model_config is not None else {}
            if timm_format.is_timm_config(data):
                return cls(**timm_format.processor_options(data, model_config))
            raise CheckpointError(f"{str(name_or_path)!r} has no {CONFIG_NAME}.")
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as error:
            raise CheckpointError(f"{path} is not a valid image processor config: {error}") from error
