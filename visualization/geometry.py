"""Where an image processor's crop lies in a photo, for any processor with the transformers-style
`resized_size(width, height)`, `crop_box(width, height)`, `crop_size` and `resample` (duck-typed, so this
package stays independent of vithybrid)."""

from __future__ import annotations

from .crop import CropGeometry


def processor_geometry(processor, image_size: tuple[int, int]) -> CropGeometry:
    """The CropGeometry of `processor` applied to a photo of Pillow size (width, height)."""
    width, height = image_size
    resized = processor.resized_size(width, height)
    left, top, _, _ = processor.crop_box(*resized)
    crop_hw = (processor.crop_size["height"], processor.crop_size["width"])
    return CropGeometry((height, width), (resized[1], resized[0]), crop_hw, (left, top), processor.resample)
