"""Where the processed crop lies in the original photo.

The image processor resizes the photo (for the base model: shortest edge to 384, bicubic, the long
side truncated to int(384 * long / short)) and center-crops it with left = (W' - crop_w) // 2,
top = (H' - crop_h) // 2 (negative offsets pad with zeros). A pixel edge x' of the resized image is
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
    """A photo of `image_hw`, resized to `resized_hw` (with Pillow's `resample` filter), center-cropped to
    `crop_hw`, the offset floored (transformers) or rounded half to even (torchvision, so timm's models)."""

    image_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    crop_hw: tuple[int, int]
    offset_rounding: str = "floor"
    resample: int = Image.BICUBIC

    @classmethod
    def shortest_edge(cls, image_hw: tuple[int, int], shortest_edge: int, crop_hw: tuple[int, int]) -> CropGeometry:
        """The geometry of a shortest-edge resize followed by a center crop."""
        return cls(tuple(image_hw), shortest_edge_size(image_hw, shortest_edge), tuple(crop_hw))

    @property
    def offset(self) -> tuple[int, int]:
        """(left, top) of the crop in the resized image."""
        def half(excess: int) -> int:
            return excess // 2 if self.offset_rounding == "floor" else round(excess / 2)

        return half(self.resized_hw[1] - self.crop_hw[1]), half(self.resized_hw[0] - self.crop_hw[0])

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
