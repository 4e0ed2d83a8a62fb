"""The work per image, shared by both backends: `decode` (a file -> the model's input, or the reason it cannot
be read; runs in decoding workers) and `Explainer` (a batch of decoded images -> one result row each: top-k,
prediction entropy, maps over the token grid and where they point).

The maps are the app's, from one pass (vithybrid.explain): "rollout" is attention rollout with the app's
defaults (mean over heads, nothing discarded) and "class" is the top class's relevance (Chefer et al. 2021).
An export served by ONNX Runtime or OpenVINO (`RuntimeModel`) gives rollout from its eager graph's attention
probabilities; it has no gradients, so no class maps.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import torch

import visualization as viz

from ..explain import CLASS_MAP, ROLLOUT, photo_maps
from ..images import ImageError, aspect_crop_box, displayed_size, load_image
from ..loading import load_pretrained
from ..model.modeling import ViTHybridForImageClassification
from ..model.processing import ViTHybridImageProcessor
from ..runtimes import RUNTIMES, ExportedModelError, RuntimeModel, load_exported
from .sources import SOURCE_SCHEMA

# --maps and the columns' prefixes (rollout_map, class_peak_x, ...): vithybrid.explain's maps under their names here
MAPS = {"rollout": ROLLOUT, "class": CLASS_MAP}
RUNTIME_MAPS = ("rollout",)  # what an export can give: class maps need gradients of the attentions


def load(name: str, device: str = "cpu", runtime: str | None = None, int8: bool = False, attentions: bool = False,
         threads: int | None = None) -> tuple[ViTHybridForImageClassification | RuntimeModel, ViTHybridImageProcessor]:
    """A model for inference (frozen weights: gradients flow to the attention maps only) and its processor.
    runtime "onnx" or "openvino": the export served by that runtime instead (`name` an export folder, or a
    checkpoint exported once into the cache, int8: its int8 export), with its eager graph when `attentions`."""
    if runtime is not None:
        model = load_exported(name, runtime, attentions=attentions, int8=int8, threads=threads)
        return model, model.processor
    model, processor = load_pretrained(name, device=device)
    return model.requires_grad_(False), processor


FILE_FIELDS = [*zip(SOURCE_SCHEMA.names, SOURCE_SCHEMA.types), ("error", pa.string()), ("width", pa.int32()),
               ("height", pa.int32())]  # the source's columns and what reading the file tells
DECODED_SCHEMA = pa.schema(FILE_FIELDS + [("_photo_size", pa.list_(pa.int32())), ("_pixels", pa.binary())])


def decode(row: dict, processor: ViTHybridImageProcessor) -> dict:
    """The row plus `error` (None, or why the file cannot be read), the file's `width` and `height`, and, for
    the explainer, the loaded photo's size and its pixel values as float32 bytes (cheap to pass between
    processes and through Ray's object store)."""
    try:
        photo = load_image(row["path"])
        width, height = displayed_size(row["path"])
    except ImageError as error:  # the message names the file and says what is wrong
        return {**row, "error": str(error), "width": None, "height": None, "_photo_size": None, "_pixels": b""}
    pixels = processor(photo, return_tensors="np")["pixel_values"][0].astype(np.float32)
    return {**row, "error": None, "width": width, "height": height, "_photo_size": list(photo.size),
            "_pixels": pixels.tobytes()}


def schema(maps: tuple[str, ...]) -> pa.Schema:
    """The Parquet schema of the result rows (the same for every part, whatever the part holds)."""
    fields = FILE_FIELDS + [("labels", pa.list_(pa.string())), ("scores", pa.list_(pa.float32())),
                            ("entropy", pa.float32()), ("correct", pa.bool_()), ("grid_rows", pa.int32()),
                            ("grid_cols", pa.int32())]
    for name in maps:
        fields += [(f"{name}_map", pa.list_(pa.float32())), (f"{name}_peak_x", pa.float32()),
                   (f"{name}_peak_y", pa.float32()), (f"{name}_entropy", pa.float32()),
                   (f"{name}_box_mass", pa.float32()), (f"{name}_hit", pa.bool_())]
    return pa.schema(fields)


def cell_edges_in_file(geometry: viz.CropGeometry, grid: tuple[int, int], kept: tuple[int, int, int, int]):
    """The token cells' boundaries in the image file's pixels: (xs, ys), cols + 1 and rows + 1 of them. `kept`
    is the box of the file that the loaded photo shows (load_image keeps the middle of a panorama and may
    downscale what it keeps)."""
    crop_xs, crop_ys = viz.cell_edges(geometry.crop_hw[1], grid[1]), viz.cell_edges(geometry.crop_hw[0], grid[0])
    xs, ys, _, _ = geometry.to_original((crop_xs, crop_ys, crop_xs, crop_ys))  # every edge at once, in photo pixels
    (photo_height, photo_width), (left, top, right, bottom) = geometry.image_hw, kept
    return left + xs * (right - left) / photo_width, top + ys * (bottom - top) / photo_height


def pointing(heatmap: np.ndarray, xs: np.ndarray, ys: np.ndarray, bbox) -> dict:
    """Where a (rows, cols) map points: the centre of its peak cell (file pixels), its entropy over the cells
    (0: one cell holds everything, 1: uniform), and with a box, the share of its mass inside the box (each
    cell's mass spread evenly over its area) and whether the peak lies in the box (the pointing game). Only the
    part of a box that the cells cover counts; a box wholly outside them (outside what the model saw) gets
    neither (None): there was nothing there to point at."""
    total = float(heatmap.sum())
    mass = heatmap / total if total > 0 else np.full_like(heatmap, 1 / heatmap.size)
    row, col = np.unravel_index(int(heatmap.argmax()), heatmap.shape)
    x, y = (xs[col] + xs[col + 1]) / 2, (ys[row] + ys[row + 1]) / 2
    positive = mass[mass > 0]
    entropy = float(-(positive * np.log(positive)).sum() / math.log(heatmap.size)) if heatmap.size > 1 else 0.0
    result = {"peak_x": x, "peak_y": y, "entropy": entropy, "box_mass": None, "hit": None}
    if bbox is not None:
        x0, y0, x1, y1 = bbox
        inside_x = np.clip(np.minimum(xs[1:], x1) - np.maximum(xs[:-1], x0), 0, None) / np.diff(xs)
        inside_y = np.clip(np.minimum(ys[1:], y1) - np.maximum(ys[:-1], y0), 0, None) / np.diff(ys)
        if inside_x.any() and inside_y.any():
            result["box_mass"] = float((mass * np.outer(inside_y, inside_x)).sum())
            result["hit"] = bool(x0 <= x <= x1 and y0 <= y <= y1)
    return result


def check_export(model: RuntimeModel, maps: tuple[str, ...]) -> None:
    """An export can give the `maps` (ValueError if not) over the checkpoint's own token grid (ExportedModelError
    if not: an export made with another --size)."""
    if set(maps) - set(RUNTIME_MAPS):
        raise ValueError(f"{RUNTIMES[model.runtime]} cannot give {', '.join(sorted(set(maps) - set(RUNTIME_MAPS)))} "
                         f"maps (they need gradients of the attention maps): ask for {', '.join(RUNTIME_MAPS)} only")
    if maps and model.with_attentions is None:
        raise ValueError("Load the export with attentions=True for maps.")
    trained = (model.config.image_size,) * 2
    if model.input_size != trained:
        raise ExportedModelError(f"{model.folder or 'This export'} takes {model.input_size[0]}x{model.input_size[1]} "
                                 f"images, not the checkpoint's own {trained[0]}x{trained[1]}: analyze serves exports "
                                 f"at the checkpoint's input size (export again without --size).")


class Explainer:
    """One model, explaining batches of decoded images (`decode`) into result rows (`schema`)."""

    def __init__(self, model: ViTHybridForImageClassification | RuntimeModel, processor: ViTHybridImageProcessor,
                 maps: tuple[str, ...] = tuple(MAPS), top_k: int = 5):
        unknown = set(maps) - set(MAPS)
        if unknown:
            raise ValueError(f"unknown map {', '.join(sorted(unknown))}; choose from {', '.join(MAPS)}")
        self.exported = isinstance(model, RuntimeModel)
        if self.exported:
            check_export(model, maps)
        self.model, self.processor, self.maps = model, processor, tuple(maps)
        self.top_k = min(top_k, model.config.num_labels)
        self.grid = model.config.grid_size
        self.input_shape = (3, processor.crop_size["height"], processor.crop_size["width"])
        self.schema = schema(self.maps)

    def run(self, pixels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Probabilities (B, classes) and each requested map, (B, rows, cols), for a batch of pixel values."""
        pixels = pixels.to(self.model.device, self.model.dtype)
        if not self.maps:
            with torch.inference_mode():
                return self.model(pixels).logits.float().softmax(-1).cpu(), {}
        if self.exported:  # the eager graph: logits and attention probabilities (rollout only: see check_export)
            result = self.model(pixels, output_attentions=True)
            # its logits are the float32 classifier's (within rounding); an int8 classifier answers for itself
            logits = self.model(pixels).logits if self.model.info.get("int8") else result.logits
            attentions = [a.float().cpu() for a in result.attentions]
            found = {ROLLOUT: viz.cls_map(viz.attention_rollout(attentions, rows=[0]), self.grid)}
        else:
            result = photo_maps(self.model, pixels)  # each image's predicted class
            logits, found = result.logits, result.maps
        maps = {name: found[MAPS[name]].float().cpu() for name in self.maps}
        return logits.float().softmax(-1).cpu(), maps

    def __call__(self, decoded: list[dict]) -> pa.Table:
        readable = [row for row in decoded if row["error"] is None]
        results = {}
        if readable:
            pixels = torch.from_numpy(np.stack([np.frombuffer(row["_pixels"], np.float32).reshape(self.input_shape)
                                                for row in readable]))
            probabilities, maps = self.run(pixels)
            results = {id(row): self.describe(row, probabilities[i], {k: v[i].numpy() for k, v in maps.items()})
                       for i, row in enumerate(readable)}
        rows = [{**{key: row[key] for key in ("path", "label", "bbox", "error")}, **results.get(id(row), {})}
                for row in decoded]
        return pa.Table.from_pylist(rows, schema=self.schema)

    def describe(self, row: dict, probabilities: torch.Tensor, maps: dict[str, np.ndarray]) -> dict:
        scores, indices = probabilities.topk(self.top_k)
        labels = [self.model.config.id2label[int(i)] for i in indices]
        entropy = -(probabilities * probabilities.clamp_min(1e-30).log()).sum()
        width, height = int(row["width"]), int(row["height"])
        photo_width, photo_height = (int(v) for v in row["_photo_size"])
        geometry = viz.processor_geometry(self.processor, (photo_width, photo_height))
        xs, ys = cell_edges_in_file(geometry, self.grid, aspect_crop_box(width, height))
        out = {"width": width, "height": height, "labels": labels, "scores": scores.tolist(),
               "entropy": float(entropy), "grid_rows": self.grid[0], "grid_cols": self.grid[1],
               "correct": None if row["label"] is None else labels[0] == row["label"]}
        for name, heatmap in maps.items():
            out[f"{name}_map"] = heatmap.ravel().tolist()
            out |= {f"{name}_{key}": value for key, value in pointing(heatmap, xs, ys, row["bbox"]).items()}
        return out
