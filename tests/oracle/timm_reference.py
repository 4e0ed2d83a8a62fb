"""Runs inside the oracle environment (timm 1.0.31): timm's own hybrid ViTs, as our timm tests compare.

    python reference.py timm OUT [IMAGE ...]

For each of oracle/cases.py's TIMM_CASES it writes OUT/<architecture>/ (config.json and weights, by
timm's save_for_hf), OUT/<architecture>.safetensors (a random input and timm's logits) and
OUT/<architecture>.processed.safetensors (timm's eval transform of the images, from the saved config
as timm reads it back). Nothing here imports vithybrid.
"""

from __future__ import annotations

import sys
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file
from timm.data import create_transform, resolve_data_config
from timm.models import save_for_hf
from timm.models._hub import load_model_config_from_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases import TIMM_CASES, processor_images, timm_label_names  # noqa: E402
from reference import randomize  # noqa: E402


def generate_case(name: str, case: dict, out: Path, seed: int, images: dict) -> None:
    # Built without timm's initialization (slow for the large models): ours sets every parameter.
    model = timm.create_model(name, pretrained=False, num_classes=case["num_classes"], device="meta",
                              pretrained_cfg_overlay=case.get("pretrained_cfg", {})).to_empty(device="cpu").eval()
    assert not list(model.buffers()), "to_empty leaves buffers uninitialized"
    randomize(model, seed)
    model_config = {}
    if case.get("label_names"):
        names, descriptions = timm_label_names(case["num_classes"])
        model_config = dict(label_names=names, label_descriptions=descriptions)
    save_for_hf(model, out / name, model_config=model_config, safe_serialization=case["weights"] == "safetensors")

    size = model.pretrained_cfg["input_size"][-1]
    pixels = torch.randn(case["batch"], 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        logits = model(pixels)
    save_file({"pixel_values": pixels, "logits": logits.contiguous()}, out / f"{name}.safetensors")

    pretrained_cfg, _, _ = load_model_config_from_path(out / name)  # as timm reads the folder back
    transform = create_transform(**resolve_data_config(pretrained_cfg=pretrained_cfg), is_training=False)
    save_file({image_name: transform(image)[None] for image_name, image in images.items()},
              out / f"{name}.processed.safetensors")


def generate(out: Path, photos: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    images = processor_images(photos)
    for seed, (name, case) in enumerate(TIMM_CASES.items()):
        generate_case(name, case, out, 100 + seed, images)
    (out / "timm_version.txt").write_text(timm.__version__)
