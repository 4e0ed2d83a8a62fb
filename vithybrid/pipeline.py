"""Image classification in one call: images in, top-k `[{"label", "score"}]` out, batched."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from .images import load_image
from .loading import DEFAULT_MODEL, load_pretrained
from .model.modeling import ViTHybridForImageClassification
from .model.processing import ImageLike, ViTHybridImageProcessor
from .optimize import quantize_int8
from .runtimes import RuntimeModel, load_exported
Input = str | Path | ImageLike


def open_image(source: Input) -> ImageLike:
    """Images pass through; a path is opened with `load_image` (RGB, EXIF orientation applied)."""
    return load_image(source) if isinstance(source, (str, Path)) else source


class ImageClassificationPipeline:
    """Callable: one image -> [{"label", "score"}] (best first); a list of images -> a list of those."""

    def __init__(self, model: ViTHybridForImageClassification | RuntimeModel, processor: ViTHybridImageProcessor,
                 top_k: int = 5, batch_size: int = 8):
        self.model, self.processor = model.eval(), processor
        self.top_k, self.batch_size = top_k, batch_size

    @torch.inference_mode()
    def predict(self, images: Sequence[ImageLike], top_k: int | None = None) -> list[list[dict]]:
        k = min(top_k or self.top_k, self.model.config.num_labels)
        results = []
        for start in range(0, len(images), self.batch_size):
            pixels = self.processor(list(images[start:start + self.batch_size]))["pixel_values"]
            probabilities = self.model(pixels.to(self.model.device)).logits.float().softmax(-1)
            scores, indices = probabilities.topk(k, dim=-1)
            results += [[{"label": self.model.config.id2label[int(i)], "score": float(s)} for s, i in zip(row_s, row_i)]
                        for row_s, row_i in zip(scores, indices)]
        return results

    def __call__(self, images: Input | Sequence[Input], top_k: int | None = None) -> list[dict] | list[list[dict]]:
        single = not isinstance(images, (list, tuple))
        loaded = [open_image(image) for image in ([images] if single else images)]
        results = self.predict(loaded, top_k)
        return results[0] if single else results


def pipeline(model: str | Path | ViTHybridForImageClassification | RuntimeModel = DEFAULT_MODEL,
             processor: ViTHybridImageProcessor | None = None, top_k: int = 5, batch_size: int = 8,
             runtime: str | None = None, int8: bool = False, **from_pretrained_kwargs) -> ImageClassificationPipeline:
    """A classifier for a loaded model, or for a Hub id, a checkpoint folder or "shapes" (the shipped model).
    runtime: "onnx" or "openvino" to classify through ONNX Runtime or OpenVINO instead of PyTorch (an export
    folder, or a checkpoint exported once into a cache: see vithybrid.runtimes). int8: int8 linear layers
    (`quantize_int8` in PyTorch; the runtime's int8 export of a checkpoint)."""
    if runtime is not None:
        model = load_exported(model, runtime, int8=int8)
    if isinstance(model, RuntimeModel):
        processor = processor or model.processor
    elif not isinstance(model, ViTHybridForImageClassification):
        model, checkpoint_processor = load_pretrained(model, **from_pretrained_kwargs)
        processor = processor or checkpoint_processor
    if processor is None:
        raise ValueError("Pass the image processor together with a loaded model: pipeline(model, processor).")
    if int8 and runtime is None:
        if isinstance(model, RuntimeModel):  # its graphs are fixed: int8 is chosen when exporting
            raise ValueError("int8=True with a loaded export: export it with --int8 "
                             "(or load_exported(..., int8=True)).")
        model = quantize_int8(model)
    return ImageClassificationPipeline(model, processor, top_k, batch_size)
