"""Serving ViT-Hybrid from the runtimes CPU users pick: export to ONNX (ONNX Runtime) or OpenVINO IR, and a
small runner that loads an export with the same labels and image processor as the PyTorch model.

`python -m vithybrid.export MODEL OUT --format onnx|openvino [--int8] [--batch dynamic|N]`
"""

from .export import ExportError, export_model, load_exported
from .runner import RUNTIMES, ExportedModelError, RuntimeModel

__all__ = ["RUNTIMES", "ExportError", "ExportedModelError", "RuntimeModel", "export_model", "load_exported"]
