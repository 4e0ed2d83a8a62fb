"""The image processor: RGB, resize (shortest edge, or both sides), center crop, rescale, normalize.

Same options, same preprocessor_config.json and the same pixel values as transformers'
ViTHybridImageProcessor (each step is done in the same order and precision, on Pillow and numpy).
One option of our own, `crop_offset_rounding="round"`, centers the crop as torchvision (and so timm's
eval transform) does; transformers ignores it and floors the offset, which differs by one pixel where
the resized side exceeds the crop by 3 modulo 4 (or falls short of it by an odd number).
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from ..base.processing import (FIRST, BaseImageProcessor, BatchFeature, ImageLike, channel_format,
                               crop_or_pad, from_hwc, resized_size, size_dict, to_pil)

logger = logging.getLogger(__name__)

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]  # transformers' defaults for this processor
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
CROP_OFFSET_ROUNDINGS = ("floor", "round")


class ViTHybridImageProcessor(BaseImageProcessor):
    """Turns images into the model's `pixel_values` (B, 3, crop_h, crop_w), float32.

    As transformers' ViTHybridImageProcessor: the same settings and preprocessor_config.json, every setting
    overridable per call, a BatchFeature out. One difference: return_tensors defaults to "pt" (transformers:
    None, a list of numpy arrays, which no model takes); pass return_tensors=None for that list.
    """

    def __init__(self, do_resize: bool = True, size: int | dict | None = None, resample: int = Image.BICUBIC,
                 do_center_crop: bool = True, crop_size: int | dict | None = None, do_rescale: bool = True,
                 rescale_factor: float = 1 / 255, do_normalize: bool = True, image_mean: Sequence[float] | None = None,
                 image_std: Sequence[float] | None = None, do_convert_rgb: bool = True,
                 crop_offset_rounding: str = "floor", **kwargs: Any):
        super().__init__(**kwargs)
        self.do_resize, self.resample = do_resize, int(resample)
        self.size = size_dict(224 if size is None else size, square=False)
        self.do_center_crop = do_center_crop
        self.crop_size = size_dict(224 if crop_size is None else crop_size, square=True)
        self.do_rescale, self.rescale_factor = do_rescale, rescale_factor
        self.do_normalize = do_normalize
        self.image_mean = list(CLIP_MEAN if image_mean is None else image_mean)
        self.image_std = list(CLIP_STD if image_std is None else image_std)
        self.do_convert_rgb = do_convert_rgb
        if crop_offset_rounding not in CROP_OFFSET_ROUNDINGS:
            raise ValueError(f"crop_offset_rounding must be one of {CROP_OFFSET_ROUNDINGS}, "
                             f"got {crop_offset_rounding!r}")
        self.crop_offset_rounding = crop_offset_rounding

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the resize step, truncating the long side as transformers does."""
        return resized_size(self.size, width, height)

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

    def preprocess_one(self, image: ImageLike, input_data_format: str | None = None) -> np.ndarray:
        """One image -> (H, W, C) pixel values, by this processor's settings. do_convert_rgb converts PIL images,
        as transformers' does: an array or tensor keeps its channels (a 4-channel array gives 4 channels)."""
        convert = self.do_convert_rgb and isinstance(image, Image.Image)
        image = to_pil(image, input_data_format)
        if convert and image.mode != "RGB":
            image = image.convert("RGB")
        if self.do_resize:
            image = image.resize(self.resized_size(*image.size), resample=self.resample)
        array = np.asarray(image)
        if array.ndim == 2:
            array = array[..., None]
        if self.do_center_crop:
            array = crop_or_pad(array, self.crop_box(array.shape[1], array.shape[0]))
        if self.do_rescale:
            array = self.rescale(array, self.rescale_factor, input_data_format="channels_last")
        if self.do_normalize:
            array = self.normalize(array, self.image_mean, self.image_std, input_data_format="channels_last")
        return array

    def preprocess(self, images: ImageLike | Sequence[ImageLike], do_resize: bool | None = None,
                   size: int | dict | None = None, resample: int | None = None, do_center_crop: bool | None = None,
                   crop_size: int | dict | None = None, do_rescale: bool | None = None,
                   rescale_factor: float | None = None, do_normalize: bool | None = None,
                   image_mean: float | Sequence[float] | None = None, image_std: float | Sequence[float] | None = None,
                   do_convert_rgb: bool | None = None, return_tensors: str | None = "pt",
                   data_format: str | None = FIRST, input_data_format: str | None = None,
                   **kwargs: Any) -> BatchFeature:
        """One image or a list (or a 4-d batch) -> BatchFeature {"pixel_values": ...}: a tensor ("pt"), an
        array ("np") or a list of arrays (None). Options left None take this processor's settings;
        data_format None keeps the input's channel layout (channels last for PIL images)."""
        if kwargs:
            logger.warning("Unused or unrecognized kwargs: %s.", ", ".join(kwargs))
        overrides = dict(do_resize=do_resize, size=size, resample=resample, do_center_crop=do_center_crop,
                         crop_size=crop_size, do_rescale=do_rescale, rescale_factor=rescale_factor,
                         do_normalize=do_normalize, image_mean=image_mean, image_std=image_std,
                         do_convert_rgb=do_convert_rgb)
        settings = copy.copy(self)
        vars(settings).update({k: v for k, v in overrides.items() if v is not None})
        settings.size = size_dict(settings.size, square=False)
        settings.crop_size = size_dict(settings.crop_size, square=True)
        batch = [images] if isinstance(images, Image.Image) or (
            isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim < 4) else list(images)
        if not batch or not all(isinstance(image, (Image.Image, np.ndarray, torch.Tensor)) for image in batch):
            raise ValueError("Invalid image type. Must be of type PIL.Image.Image, numpy.ndarray or torch.Tensor "
                             "(or a list of them).")
        if data_format is None:  # the input's layout
            first = batch[0]
            data_format = "channels_last" if isinstance(first, Image.Image) else (
                input_data_format or channel_format(np.asarray(first)))
        pixels = [from_hwc(settings.preprocess_one(image, input_data_format), data_format) for image in batch]
        return BatchFeature({"pixel_values": pixels}, tensor_type=return_tensors)

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        if output["crop_offset_rounding"] == "floor":  # our own key: written only when it matters
            del output["crop_offset_rounding"]
        return output


def default_processor(image_size: int) -> ViTHybridImageProcessor:
    """The google checkpoint's pre-processing at `image_size`: the shortest edge resized to it (bicubic), a
    center crop of image_size x image_size, rescaled by 1/255, normalized with mean = std = 0.5. What a
    checkpoint without preprocessor_config.json (model.save_pretrained alone) is read with."""
    return ViTHybridImageProcessor(size={"shortest_edge": image_size},
                                   crop_size={"height": image_size, "width": image_size}, resample=Image.BICUBIC,
                                   image_mean=[0.5] * 3, image_std=[0.5] * 3)
