"""One photo, analysed once (`Analysis`), stored compactly so that the cache holds a whole class.

A photo's pass gives its maps in float32 (what the API returns, and the pictures at the default settings, are
exactly those), and every layer's attention, which pictures at other settings (head fusion, discard ratio,
layer, head, token) are computed from. That attention is most of an analysis's memory (layers x heads x N^2
values: 96 MB for the full-size model in float16), so it is kept in float16: attention probabilities lie in
[0, 1], where float16's relative rounding is 2^-11 and its absolute rounding below 2^-25; pictures from it are
identical to the eye (tests/test_classroom.py bounds the difference on the drawn maps).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image

import visualization as viz
from vithybrid.explain import CLASS_MAP, ROLLOUT, PhotoMaps, PhotoPass
from vithybrid.model.backbone import backbone_stages

STORED_DTYPE = torch.float16


class Float32Layers(Sequence):
    """Every layer's stored attention, handed out as float32 one layer at a time (what visualization reads)."""

    def __init__(self, stored: tuple[torch.Tensor, ...]):
        self._stored = stored

    def __len__(self) -> int:
        return len(self._stored)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [layer.float() for layer in self._stored[index]]
        return self._stored[index].float()

    @property
    def nbytes(self) -> int:
        return sum(layer.numel() * layer.element_size() for layer in self._stored)


@dataclass
class Analysis:
    """What the model saw, its top classes, its maps and every layer's attention, for one photo."""

    crop: Image.Image  # the processed crop, before normalization, enlarged for small models' tiny crops
    geometry: viz.CropGeometry
    grid: tuple[int, int]
    top: list[tuple[int, str, float]]  # (class index, label, probability), best first
    probabilities: torch.Tensor  # (classes,) float32
    attentions: Float32Layers  # per layer (1, heads, N, N)
    maps: dict[str, torch.Tensor]  # vithybrid.explain's maps of the top class, (rows, cols) each, float32
    backbone: list[torch.Tensor]  # the channel-mean of each backbone map (stem, stages), then the token norms
    lens: torch.Tensor  # (layers, classes) probabilities: the logit lens, the CLS token read after each layer
    distances: torch.Tensor  # (layers, heads) mean attention distance of each head, in input pixels
    class_maps: dict[int, torch.Tensor] = field(default_factory=dict)  # other classes' class maps
    cams: dict[tuple[int, str, str], torch.Tensor] = field(default_factory=dict)  # (class, method, stage) -> map
    pictures: dict[str, Image.Image] = field(default_factory=dict)  # pictures drawn once per photo

    @property
    def nbytes(self) -> int:
        """About what this analysis holds in memory (the cache's measure)."""
        tensors = [self.probabilities, self.lens, *self.maps.values(), *self.backbone, *self.class_maps.values(),
                   *self.cams.values(), self.distances]
        images = [self.crop, *self.pictures.values()]
        return (self.attentions.nbytes + sum(t.numel() * t.element_size() for t in tensors)
                + sum(image.width * image.height * len(image.getbands()) for image in images))

    def rollout(self, head_fusion: str = "mean", discard_ratio: float = 0.0) -> torch.Tensor:
        """(rows, cols) attention rollout; the pass's own float32 map at the default settings."""
        if head_fusion == "mean" and discard_ratio == 0:
            return self.maps[ROLLOUT]
        return viz.cls_map(viz.attention_rollout(self.attentions, head_fusion, discard_ratio, rows=[0]), self.grid)[0]

    def class_map(self, class_index: int) -> torch.Tensor | None:
        """(rows, cols) class map of `class_index`, if computed (the top class's always is)."""
        return self.maps[CLASS_MAP] if class_index == self.top[0][0] else self.class_maps.get(class_index)


def stored(attentions: Sequence[torch.Tensor]) -> Float32Layers:
    return Float32Layers(tuple(a.detach().to("cpu", STORED_DTYPE) for a in attentions))


@contextlib.contextmanager
def recording_backbone(model) -> Iterator[list[torch.Tensor]]:
    """While the block runs a forward of a batch of photos, collect what the guided walk draws: the channel-mean of
    each backbone map (stem, stages) and the norm of each token, as (B, h, w) maps, in that order (`of_photo`
    picks one photo's)."""
    recorded: list[torch.Tensor] = []
    embeddings = model.vit.embeddings.patch_embeddings
    modules = [*backbone_stages(embeddings.backbone), embeddings.projection]
    reductions = [lambda maps: maps.mean(1)] * (len(modules) - 1) + [lambda tokens: tokens.norm(dim=1)]

    def record(reduce):
        return lambda module, args, output: recorded.append(reduce(output.detach().float()).cpu())

    hooks = [module.register_forward_hook(record(reduce)) for module, reduce in zip(modules, reductions)]
    try:
        yield recorded
    finally:
        for hook in hooks:
            hook.remove()


def of_photo(recorded: list[torch.Tensor], row: int) -> list[torch.Tensor]:
    """One photo's (h, w) maps of what recording_backbone recorded of a batch."""
    return [maps[row] for maps in recorded]


def whole_pass(model, pixels: torch.Tensor) -> tuple[PhotoMaps, list[torch.Tensor]]:
    """A photo's whole pass (vithybrid.explain.PhotoPass: forward, then backward) and what recording_backbone
    records of its forward: in this process, or in a replica serving the model (explorer.ray_serve)."""
    with recording_backbone(model) as recorded:
        photo_pass = PhotoPass(model, pixels)
    return photo_pass.maps(), of_photo(recorded, 0)
