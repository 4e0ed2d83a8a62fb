"""Export a ViT-Hybrid checkpoint for ONNX Runtime or OpenVINO, and check that the runtime answers as PyTorch does.

An export folder holds `model.onnx` (or OpenVINO's `model.xml` + `model.bin`): the classifier on the SDPA
path, pixel values in, logits out; `attentions.onnx` / `.xml`: the eager path, whose outputs are the logits
and every layer's attention probabilities (for maps served from a runtime); config.json (labels),
preprocessor_config.json, and export.json (how it was made, and the measured difference to PyTorch).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..atomic import check_writable, write_text
from ..checkpoints.hub import CheckpointError, locate_weights
from ..checkpoints.shipped import resolve_model
from ..loading import load_processor
from ..model.backbone import StdConv2d
from ..model.modeling import ViTHybridForImageClassification
from ..model.processing import ViTHybridImageProcessor
from .runner import CLASSIFIER, EXTENSIONS, INFO_NAME, INPUT, LOGITS, RUNTIMES, WITH_ATTENTIONS, RuntimeModel, \
    import_runtime

OPSET = 18
# The runtimes sum in other orders than PyTorch (other GEMM blocking, fused kernels). Each of the ~100
# reductions on the way to a logit (up to 3072 terms, summed blockwise) then differs by a few float32 ulps
# relative to its inputs' magnitude, and those differences add up along the depth: about 1e-5 relative is
# what we measured for the base model (1.7e-5 on logits of ~2). 1024 ulps (1.2e-4 relative to the largest
# logit) leaves a tenfold margin for that, and still catches any real difference (a wrong op, a lost term).
FLOAT32_BOUND_ULPS = 1024
INT8_MIN_COSINE = 0.99  # int8 logits must point where float32's do; measured 0.999 for the base model


class ExportError(CheckpointError):
    """The runtime's answers differ from PyTorch's beyond float32 rounding: the export is not kept."""


class FoldedStdConv2d(StdConv2d):
    """A StdConv2d whose weight is already standardized: the convolution of the export."""

    def standardized_weight(self) -> torch.Tensor:
        return self.weight


def fold_weight_standardization(model: ViTHybridForImageClassification) -> ViTHybridForImageClassification:
    """A copy of the model (eval mode) with each weight-standardized convolution's weight replaced by its
    standardized value (a constant in eval mode), so the graph holds plain convolutions."""
    folded = copy.deepcopy(model).eval()
    with torch.no_grad():
        for module in folded.modules():
            if isinstance(module, StdConv2d):
                module.weight.copy_(module.standardized_weight())
                module.__class__ = FoldedStdConv2d
    return folded


class Classifier(nn.Module):
    """pixel_values -> logits, on the SDPA path (what the runtime serves)."""

    def __init__(self, model: ViTHybridForImageClassification, interpolate: bool):
        super().__init__()
        self.model, self.interpolate = model, interpolate

    def forward(self, pixel_values: torch.Tensor):
        return self.model(pixel_values, interpolate_pos_encoding=self.interpolate).logits


class ClassifierWithAttentions(Classifier):
    """pixel_values -> (logits, layer 0's attention, ..., the last layer's), on the eager path."""

    def forward(self, pixel_values: torch.Tensor):
        out = self.model(pixel_values, output_attentions=True, interpolate_pos_encoding=self.interpolate)
        return (out.logits, *out.attentions)


def export_onnx(module: Classifier, example: torch.Tensor, path: Path, dynamic_batch: bool, outputs: list[str]) -> None:
    """torch.onnx's dynamo exporter, weights inside the file (the TorchScript exporter cannot trace the
    fused QKV weight's state-dict hook, and unrolls the eager path's per-image loop at the example's batch)."""
    shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    for package in ("onnx", "onnxscript"):
        if importlib.util.find_spec(package) is None:
            raise ExportError(f"Exporting needs {package}: in a clone of vithybrid, pip install -e '.[onnx]' "
                              "(or '.[openvino]').")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), dynamo=True, opset_version=OPSET, input_names=[INPUT],
                          output_names=outputs, dynamic_shapes=shapes, external_data=False, verbose=False)


def quantize_onnx_int8(path: Path) -> None:
    """ONNX Runtime's dynamic int8 quantization of the MatMuls, in place. Its shape pre-processing must run
    first (quantize_dynamic fails on the raw export's shapes); convolutions stay float32, because the
    ConvInteger kernel is slower than float32 convolution."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(path), str(prepared))
        quantize_dynamic(str(prepared), str(path), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)


def to_openvino(onnx_path: Path, int8: bool) -> None:
    """OpenVINO IR (float32 weights) beside the ONNX file, which is removed. int8: nncf's weight compression
    of the linear layers, which needs no calibration data (it keeps float32 compute, so it saves memory more
    than time). Convolutions are left out, as in ONNX Runtime's int8: compressing them (nncf 3.4, OpenVINO
    2026.4) breaks the shape of the GroupNorm reshape that follows them at run time."""
    ov = import_runtime("openvino")
    model = ov.convert_model(str(onnx_path))
    if int8:
        import nncf

        model = nncf.compress_weights(model, ignored_scope=nncf.IgnoredScope(types=["Convolution"]))
    ov.save_model(model, str(onnx_path.with_suffix(".xml")), compress_to_fp16=False)
    onnx_path.unlink()


def compare(model: ViTHybridForImageClassification, served: RuntimeModel, int8: bool, pixels: torch.Tensor,
            interpolate: bool) -> dict:
    """The runtime's logits (and attentions) against PyTorch's on the same input; ExportError beyond the bound."""
    with torch.inference_mode():
        expected = model(pixels, output_attentions=served.with_attentions is not None,
                         interpolate_pos_encoding=interpolate)
    logits = served(pixels).logits
    scale = max(1.0, expected.logits.abs().max().item())
    report = {"check_batch": pixels.shape[0], "max_abs_logit": expected.logits.abs().max().item(),
              "logits_max_abs_diff": (logits - expected.logits).abs().max().item(),
              "bound": FLOAT32_BOUND_ULPS * torch.finfo(torch.float32).eps * scale}
    name = RUNTIMES[served.runtime]
    if int8:
        report["logits_min_cosine"] = F.cosine_similarity(logits, expected.logits, dim=-1).min().item()
        if report["logits_min_cosine"] < INT8_MIN_COSINE:
            raise ExportError(f"{name}'s int8 logits point elsewhere than PyTorch's (cosine "
                              f"{report['logits_min_cosine']:.4f} < {INT8_MIN_COSINE}): not kept.")
    elif report["logits_max_abs_diff"] > report["bound"]:
        raise ExportError(f"{name}'s logits differ from PyTorch's by {report['logits_max_abs_diff']:.3g}, beyond the "
                          f"float32 bound {report['bound']:.3g}: not kept.")
    if served.with_attentions is not None:
        maps = served(pixels, output_attentions=True)
        report["attentions_max_abs_diff"] = max((a - b).abs().max().item()
                                                for a, b in zip(maps.attentions, expected.attentions))
        bound = FLOAT32_BOUND_ULPS * torch.finfo(torch.float32).eps  # probabilities: at most 1
        if report["attentions_max_abs_diff"] > bound or len(maps.attentions) != len(expected.attentions):
            raise ExportError(f"{name}'s attention maps differ from PyTorch's by {report['attentions_max_abs_diff']:.3g}, "
                              f"beyond the float32 bound {bound:.3g}: not kept.")
    return report


def check_out(out: Path) -> None:
    """`out` is a folder we can write into, or can be made (ValueError saying why not), before any work; nothing is
    created here."""
    existing = next(folder for folder in (out, *out.absolute().parents) if folder.exists())
    if not existing.is_dir():
        raise ValueError(f"cannot export into {out}: {existing} is a file, not a folder")
    try:
        check_writable(existing)
    except OSError as error:
        raise ValueError(f"cannot export into {out}: {existing} cannot be written to ({error.strerror or error})") \
            from None


def export_model(model: str | Path | ViTHybridForImageClassification, out: str | Path, runtime: str = "onnx",
                 int8: bool = False, batch: str | int = "dynamic", image_size: int | tuple[int, int] | None = None,
                 attentions: bool = True, processor: ViTHybridImageProcessor | None = None) -> dict:
    """Export `model` (a loaded model, or a Hub id, checkpoint folder or "shapes") into the folder `out` for
    `runtime` ("onnx" or "openvino"), then load it there and compare with PyTorch. Returns export.json's
    contents. batch: "dynamic" (any batch size) or a fixed number. image_size: the input size the graph
    takes (height, width), if not the checkpoint's own (position embeddings are resampled to its grid).
    int8: the classifier graph quantized (the attention graph stays float32). A checkpoint without
    preprocessor_config.json is exported with the processor its config implies, which export.json's
    "processor_note" says. Raises ExportError."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {tuple(RUNTIMES)}, got {runtime!r}")
    if batch != "dynamic" and not (isinstance(batch, int) and batch > 0):
        raise ValueError(f"batch must be 'dynamic' or a positive number, got {batch!r}")
    check_out(Path(out))
    import_runtime(runtime)
    processor_note = None
    if not isinstance(model, ViTHybridForImageClassification):
        name, model = model, ViTHybridForImageClassification.from_pretrained(model)
        if processor is None:
            processor, processor_note = load_processor(name, model.config)
    if processor is None:
        raise ValueError("Pass the image processor together with a loaded model: export_model(model, out, processor=...).")
    if model.training or model.dtype != torch.float32:  # exports are float32 eval graphs; leave the caller's model be
        model = copy.deepcopy(model).float().eval()
    trained = (model.config.image_size,) * 2
    size = trained if image_size is None else (image_size,) * 2 if isinstance(image_size, int) else tuple(image_size)
    interpolate = size != trained
    processor = copy.deepcopy(processor)
    if interpolate:  # the saved processor must make the images the graph takes
        processor.crop_size = {"height": size[0], "width": size[1]}
        processor.size = {"shortest_edge": max(size)}

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folded = fold_weight_standardization(model)
    dynamic = batch == "dynamic"
    # a batch-1 example cannot show the exporter that the batch is dynamic
    example = torch.randn(2 if dynamic else batch, model.config.backbone_config.num_channels, *size)
    written = []
    try:
        graphs = [(CLASSIFIER, Classifier(folded, interpolate), [LOGITS])]
        if attentions:
            layers = [f"attentions.{i}" for i in range(model.config.num_hidden_layers)]
            graphs.append((WITH_ATTENTIONS, ClassifierWithAttentions(folded, interpolate), [LOGITS, *layers]))
        for stem, module, outputs in graphs:
            path = out / f"{stem}.onnx"
            written.append(path)
            # the eager path exports with gradients on: its inference kernel resizes a buffer, which cannot be traced
            with torch.set_grad_enabled(stem == WITH_ATTENTIONS):
                export_onnx(module, example, path, dynamic, outputs)
            if int8 and stem == CLASSIFIER and runtime == "onnx":
                quantize_onnx_int8(path)
            if runtime == "openvino":
                written += [path.with_suffix(".xml"), path.with_suffix(".bin")]
                to_openvino(path, int8 and stem == CLASSIFIER)
        model.config.save_pretrained(out)
        processor.save_pretrained(out)
        served = RuntimeModel.from_pretrained(out, runtime, attentions=attentions)
        generator = torch.Generator().manual_seed(0)
        check = torch.randn(3 if dynamic else batch, *example.shape[1:], generator=generator)  # not the example's batch
        info = {"runtime": runtime, "int8": int8, "batch": batch, "input_size": list(size),
                "attentions": attentions, "opset": OPSET, "torch": torch.__version__,
                **({"processor_note": processor_note} if processor_note else {}),
                **compare(model, served, int8, check, interpolate)}
    except Exception:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    write_text(out / INFO_NAME, json.dumps(info, indent=2) + "\n")
    return info


def export_cache() -> Path:
    return Path(os.environ.get("VITHYBRID_EXPORTS") or Path.home() / ".cache" / "vithybrid" / "exports")


def load_exported(model: str | Path, runtime: str = "onnx", attentions: bool = False, int8: bool = False,
                  threads: int | None = None) -> RuntimeModel:
    """`model` served by `runtime`: an export folder as it is; a checkpoint (Hub id, folder or "shapes") is
    exported once (int8: with an int8 classifier) into the cache ($VITHYBRID_EXPORTS, else
    ~/.cache/vithybrid/exports), keyed by its weights file (path, size and time), and loaded from there after.
    threads: the runtime's threads per call (default: the runtime's choice, one per core)."""
    folder = Path(resolve_model(model))
    if folder.is_dir() and any((folder / f"{CLASSIFIER}{ext}").is_file() for ext in EXTENSIONS.values()):
        return RuntimeModel.from_pretrained(folder, runtime, attentions, threads)
    import_runtime(runtime)
    weights = locate_weights(model)
    stat = weights.stat()
    key = hashlib.sha256(f"{weights.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    out = export_cache() / f"{key}-{runtime}{'-int8' if int8 else ''}"
    if not (out / INFO_NAME).is_file():  # written last, once the export passed its check
        print(f"Exporting {model} for {RUNTIMES[runtime]} into {out} (once)...", file=sys.stderr)
        export_model(model, out, runtime, int8)
    return RuntimeModel.from_pretrained(out, runtime, attentions, threads)


def parse_batch(value: str) -> str | int:
    if value == "dynamic":
        return value
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise argparse.ArgumentTypeError(f"'dynamic' or a positive number, not {value!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vithybrid.export",
                                     description="Export a ViT-Hybrid checkpoint for ONNX Runtime or OpenVINO.")
    parser.add_argument("model", help="Hub id, checkpoint folder or 'shapes'")
    parser.add_argument("out", help="folder to write the export into")
    parser.add_argument("--format", choices=tuple(RUNTIMES), default="onnx", help="runtime (default: %(default)s)")
    parser.add_argument("--int8", action="store_true", help="quantize the classifier's linear layers to int8")
    parser.add_argument("--batch", type=parse_batch, default="dynamic", help="'dynamic' or a fixed batch size")
    parser.add_argument("--size", type=int, nargs="+", metavar=("HEIGHT", "WIDTH"),
                        help="input size, if not the checkpoint's (position embeddings are resampled)")
    parser.add_argument("--no-attentions", action="store_true", help="skip the eager graph with attention maps")
    args = parser.parse_args(argv)
    if args.size and len(args.size) > 2:
        parser.error("--size takes HEIGHT [WIDTH]")
    size = None if not args.size else (args.size[0], args.size[-1])
    try:
        info = export_model(args.model, args.out, args.format, args.int8, args.batch, size, not args.no_attentions)
    except (CheckpointError, ValueError) as error:  # ExportError is a CheckpointError
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # OUT changed under the export, or the disk filled: one line too
        print(f"error: cannot export into {args.out}: {error.strerror or error}", file=sys.stderr)
        return 2
    if "processor_note" in info:
        print(f"note: {info['processor_note']}", file=sys.stderr)
    files = sorted(p.name for p in Path(args.out).iterdir() if p.suffix in (EXTENSIONS[args.format], ".bin", ".json"))
    print(f"wrote {args.out}: {', '.join(files)}")
    if args.int8:
        print(f"{RUNTIMES[args.format]} int8 logits: cosine to PyTorch float32 >= {info['logits_min_cosine']:.4f}")
    else:
        print(f"{RUNTIMES[args.format]} logits: max difference to PyTorch {info['logits_max_abs_diff']:.2g} "
              f"(float32 bound {info['bound']:.2g})")
    if args.no_attentions is False:
        print(f"attention maps: max difference {info['attentions_max_abs_diff']:.2g}")
    return 0
