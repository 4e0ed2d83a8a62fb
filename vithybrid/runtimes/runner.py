"""An exported ViT-Hybrid served by ONNX Runtime or OpenVINO, with the labels and image processor of the
checkpoint it came from. Called like the PyTorch model (pixel values in, an output with `.logits` out), so
the pipeline, the command line and the app take either."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoints.hub import CheckpointError
from ..model.config import ViTHybridConfig
from ..model.modeling import ImageClassifierOutput
from ..model.processing import ViTHybridImageProcessor

RUNTIMES = {"onnx": "ONNX Runtime", "openvino": "OpenVINO"}
EXTENSIONS = {"onnx": ".onnx", "openvino": ".xml"}
CLASSIFIER, WITH_ATTENTIONS = "model", "attentions"  # the two graphs' file stems
INFO_NAME = "export.json"  # how the folder was exported, and how close it came to PyTorch
INPUT, LOGITS = "pixel_values", "logits"


class ExportedModelError(CheckpointError):
    """An export that cannot be served; the message says why and what to do."""


def import_runtime(runtime: str) -> Any:
    """The runtime's module, or a message naming the extra that installs it."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {tuple(RUNTIMES)}, got {runtime!r}")
    try:
        if runtime == "onnx":
            import onnxruntime
            return onnxruntime
        import openvino
        return openvino
    except ImportError:
        raise ExportedModelError(f"{RUNTIMES[runtime]} is not installed: pip install -e '.[{runtime}]' "
                                 "(in a clone of vithybrid)") from None


def graph_file(folder: Path, stem: str, runtime: str) -> Path:
    """`stem`.onnx or (OpenVINO, which also reads ONNX) `stem`.xml in `folder`, or a message saying what is there."""
    candidates = [folder / f"{stem}.xml"] if runtime == "openvino" else []
    for path in [*candidates, folder / f"{stem}.onnx"]:
        if path.is_file():
            return path
    if not folder.is_dir():
        raise ExportedModelError(f"There is no folder {folder}: give the folder `python -m vithybrid.export` wrote.")
    if (folder / f"{stem}.xml").is_file():
        raise ExportedModelError(f"{folder} holds an OpenVINO export: serve it with runtime 'openvino'.")
    if any(folder.glob("*.safetensors")) or any(folder.glob("*.bin")):
        raise ExportedModelError(f"{folder} is a PyTorch checkpoint, not an export: export it first with "
                                 f"`python -m vithybrid.export {folder} OUT --format {runtime}`.")
    raise ExportedModelError(f"{folder} holds no {stem}{EXTENSIONS[runtime]}: export a model there with "
                             f"`python -m vithybrid.export MODEL {folder} --format {runtime}`.")


class OnnxRuntimeGraph:
    def __init__(self, path: Path, threads: int | None = None):
        ort = import_runtime("onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's choice (one per core)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own classes for bad files
            reason = str(error).strip().splitlines()[0][:200]
            raise ExportedModelError(f"{path.name} is not an ONNX model that ONNX Runtime can load ({reason}).") from None
        self.inputs = {i.name: i.shape for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.output_shapes = [o.shape for o in self.session.get_outputs()]  # symbolic sizes as names

    def __call__(self, pixels: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {INPUT: pixels})


class OpenVinoGraph:
    def __init__(self, path: Path, threads: int | None = None):
        ov = import_runtime("openvino")
        core = ov.Core()
        try:
            model = core.read_model(path)
        except RuntimeError as error:
            reason = str(error).strip().splitlines()[0][:200]
            raise ExportedModelError(f"{path.name} is not a model that OpenVINO can read ({reason}).") from None
        # f32: on CPUs with bf16 units OpenVINO would otherwise compute in bf16 (logits off by ~1e-2)
        settings = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            settings["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(model, "CPU", settings)
        self.inputs = {port.get_any_name(): [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
                       for port in model.inputs}
        self.outputs = [port.get_any_name() for port in model.outputs]
        self.output_shapes = [[d.get_length() if d.is_static else None for d in port.get_partial_shape()]
                              for port in model.outputs]

    def __call__(self, pixels: np.ndarray) -> list[np.ndarray]:
        results = self.compiled(pixels)
        return [results[port] for port in self.compiled.outputs]


GRAPHS = {"onnx": OnnxRuntimeGraph, "openvino": OpenVinoGraph}


class RuntimeModel:
    """An export loaded into ONNX Runtime or OpenVINO: `model(pixel_values).logits`, `.config` (labels),
    `.processor`; with `attentions=True`, also the eager graph whose outputs hold every layer's attention.
    `.folder`: the export it was loaded from (None when built from graphs directly)."""

    device = torch.device("cpu")
    dtype = torch.float32  # the pixel values the graphs take

    def __init__(self, classifier: OnnxRuntimeGraph | OpenVinoGraph, config: ViTHybridConfig,
                 processor: ViTHybridImageProcessor, info: dict, with_attentions=None, runtime: str = "onnx",
                 folder: Path | None = None):
        self.classifier, self.with_attentions = classifier, with_attentions
        self.config, self.processor, self.info, self.runtime, self.folder = config, processor, info, runtime, folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, runtime: str = "onnx", attentions: bool = False,
                        threads: int | None = None) -> RuntimeModel:
        """Load an export folder (`python -m vithybrid.export`) into `runtime` ("onnx" or "openvino")."""
        folder = Path(folder)
        import_runtime(runtime)  # say that the runtime is missing before anything about the folder
        path = graph_file(folder, CLASSIFIER, runtime)
        if not (folder / "config.json").is_file():
            raise ExportedModelError(f"{path.name} in {folder} is not a ViT-Hybrid export: there is no config.json "
                                     f"(labels) beside it. Export with `python -m vithybrid.export`.")
        config = ViTHybridConfig.from_pretrained(folder)
        processor = ViTHybridImageProcessor.from_pretrained(folder)
        info = json.loads((folder / INFO_NAME).read_text()) if (folder / INFO_NAME).is_file() else {}
        classifier = GRAPHS[runtime](path, threads)
        cls.check_graph(classifier, path, config, processor)
        with_attentions = None
        if attentions:
            attention_path = graph_file(folder, WITH_ATTENTIONS, runtime)
            with_attentions = GRAPHS[runtime](attention_path, threads)
            cls.check_graph(with_attentions, attention_path, config, processor)
        return cls(classifier, config, processor, info, with_attentions, runtime, folder)

    @staticmethod
    def check_graph(graph, path: Path, config: ViTHybridConfig, processor: ViTHybridImageProcessor) -> None:
        """A graph of ours takes pixel_values (B, channels, H, W) of the processor's crop size and returns logits,
        one per label of the config."""
        shape = graph.inputs.get(INPUT)
        if list(graph.inputs) != [INPUT] or graph.outputs[:1] != [LOGITS] or len(shape) != 4 or \
                shape[1] != config.backbone_config.num_channels:
            raise ExportedModelError(
                f"{path.name} is not a ViT-Hybrid export: it takes {dict(graph.inputs)} and returns {graph.outputs[:3]}, "
                f"not (batch, {config.backbone_config.num_channels}, H, W) {INPUT} -> {LOGITS}. "
                f"Export one with `python -m vithybrid.export`.")
        labels = graph.output_shapes[0][-1] if graph.output_shapes[0] else None
        if labels != config.num_labels:  # a label index must name a label: ours have one fixed count
            raise ExportedModelError(
                f"{path.name} gives {labels if isinstance(labels, int) else 'an unfixed number of'} logits per image "
                f"but config.json beside it has {config.num_labels} labels: the folder mixes two exports. Export the "
                f"model again into an empty folder.")
        crop = (processor.crop_size["height"], processor.crop_size["width"])
        if tuple(shape[2:]) != crop:
            raise ExportedModelError(
                f"{path.name} takes {shape[2]}x{shape[3]} images but preprocessor_config.json beside it crops "
                f"{crop[0]}x{crop[1]}: the folder mixes two exports. Export the model again into an empty folder.")

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.classifier.inputs[INPUT][2:])

    def eval(self) -> RuntimeModel:
        return self

    def __call__(self, pixel_values: torch.Tensor, output_attentions: bool = False) -> ImageClassifierOutput:
        if tuple(pixel_values.shape[-2:]) != self.input_size or pixel_values.dim() != 4:
            raise ValueError(f"This export takes (batch, 3, {self.input_size[0]}, {self.input_size[1]}) pixel values, "
                             f"got {tuple(pixel_values.shape)}: prepare images with its processor.")
        batch = self.classifier.inputs[INPUT][0]
        if isinstance(batch, int) and pixel_values.shape[0] != batch:
            raise ValueError(f"This export takes batches of exactly {batch} images, got {pixel_values.shape[0]}: "
                             f"export with --batch dynamic to take any number.")
        if output_attentions and self.with_attentions is None:
            raise ValueError("Load the export with attentions=True to get attention maps.")
        graph = self.with_attentions if output_attentions else self.classifier
        outputs = [torch.from_numpy(np.asarray(o)) for o in graph(pixel_values.detach().float().cpu().numpy())]
        return ImageClassifierOutput(logits=outputs[0], attentions=tuple(outputs[1:]) if output_attentions else None)
