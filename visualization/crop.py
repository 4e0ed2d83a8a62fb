"""Where the processed crop lies in the original photo.

The image processor resizes the photo (for the base model: shortest edge to 384, bicubic, the long
side truncated to int(384 * long / short)) and center-crops it at an offset (left, top) in the resized
image, (W' - crop_w) // 2 and (H' - crop_h) // 2 for transformers' processors (timm's round it as
torchvision does: the processor's `crop_box` says); negative offsets pad with zeros. A pixel edge x' of the resized image is
the edge x' * W / W' of the photo, so boxes map between the two by a shift and a per-axis scale.
Sizes are (height, width); boxes and points are (x, y) based, as Pillow's.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image


def shortest_edge_size(image_hw: tuple[int, int], shortest_edge: int) -> tuple[int, int]:
    """(height, width) after resizing the shortest edge to `shortest_edge` (long side truncated)."""
    height, width = image_hw
    long = int(shortest_edge * max(height, width) / min(height, width))
    return (shortest_edge, long) if height <= width else (long, shortest_edge)


@dataclass(frozen=True)
class CropGeometry:
    """A photo of `image_hw`, resized to `resized_hw` (with Pillow's `resample` filter), cropped to
    `crop_hw` at `offset`, the (left, top) of the crop in the resized image."""

    image_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    crop_hw: tuple[int, int]
    offset: tuple[int, int]
    resample: int = Image.BICUBIC

    @classmethod
    def shortest_edge(cls, image_hw: tuple[int, int], shortest_edge: int, crop_hw: tuple[int, int]) -> CropGeometry:
        """The geometry of a shortest-edge resize followed by transformers' center crop."""
        resized_hw = shortest_edge_size(image_hw, shortest_edge)
        offset = ((resized_hw[1] - crop_hw[1]) // 2, (resized_hw[0] - crop_hw[0]) // 2)
        return cls(tuple(image_hw), resized_hw, tuple(crop_hw), offset)

    @property
    def scale(self) -> tuple[float, float]:
        """Photo pixels per resized pixel along x and y."""
        return self.image_hw[1] / self.resized_hw[1], self.image_hw[0] / self.resized_hw[0]

    def to_original(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """A (left, top, right, bottom) box in crop pixels -> the same box in photo pixels."""
        (dx, dy), (sx, sy) = self.offset, self.scale
        left, top, right, bottom = box
        return (left + dx) * sx, (top + dy) * sy, (right + dx) * sx, (bottom + dy) * sy

    def to_crop(self, x: float, y: float) -> tuple[float, float]:
        """A point of the photo (e.g. a click) -> crop pixel coordinates (outside [0, crop) if cropped away)."""
        (dx, dy), (sx, sy) = self.offset, self.scale
        return x / sx - dx, y / sy - dy

    def crop(self, photo: Image.Image) -> Image.Image:
        """What the model saw, before rescaling and normalization (RGB, resized as the processor does)."""
        resized = photo.convert("RGB").resize(self.resized_hw[::-1], resample=self.resample)
        left, top = self.offset
        return resized.crop((left, top, left + self.crop_hw[1], top + self.crop_hw[0]))
