"""Runs inside the oracle environment (transformers 4.46.3): writes what our tests compare against.

    python reference.py generate OUT [IMAGE ...]   random checkpoints, inputs and reference outputs
    python reference.py logits CHECKPOINT INPUTS OUT [CHECKPOINT INPUTS OUT ...]
                                                    transformers' logits for checkpoints we saved
    python reference.py timm OUT [IMAGE ...]        timm's hybrid ViTs and eval transforms (timm_reference.py)
    python reference.py dropin OUT                  checkpoints, and what dropin_snippets.py's user code returns

Tensors travel as safetensors files; checkpoints in the Hub layout. Nothing here imports vithybrid.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import ViTHybridConfig, ViTHybridForImageClassification, ViTHybridImageProcessor, ViTHybridModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases import CASES, PROCESSORS, mode_images  # noqa: E402


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Every parameter random and non-trivial (norm scales near 1, non-zero biases), so no term hides."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if name.endswith("bias"):
                p.copy_(0.2 * noise)
            elif p.dim() == 1:  # GroupNorm and LayerNorm scales
                p.copy_(1 + 0.2 * noise)
            elif p.dim() in (2, 4):  # linear and conv weights
                p.copy_(noise / math.sqrt(p[0].numel()))
            else:  # cls token, position embeddings
                p.copy_(0.5 * noise)


def build(model_class, config: dict, folder: Path, seed: int, weights: str, attn: str):
    model = model_class(ViTHybridConfig(**config))
    randomize(model, seed)
    model.save_pretrained(folder, safe_serialization=weights == "safetensors")
    return model_class.from_pretrained(folder, attn_implementation=attn).eval()


def labels_for(kind: str, batch: int, num_labels: int, generator: torch.Generator) -> torch.Tensor:
    if kind == "single":
        return torch.randint(0, num_labels, (batch,), generator=generator)
    if kind == "regression":
        return torch.randn(batch, generator=generator)
    return (torch.rand(batch, num_labels, generator=generator) > 0.5).float()


def generate_case(name: str, case: dict, out: Path, seed: int) -> None:
    folder = out / name
    config = case["config"]
    generator = torch.Generator().manual_seed(seed)
    size = config["image_size"]
    pixels = torch.randn(case["batch"], 3, size, size, generator=generator)
    labels = labels_for(case["labels"], case["batch"], config["num_labels"], generator)
    heads, layers = config["num_attention_heads"], config["num_hidden_layers"]
    head_mask = (torch.rand(layers, heads, generator=generator) > 0.3).float()
    save_file({"pixel_values": pixels, "labels": labels, "head_mask": head_mask}, out / f"{name}.inputs.safetensors")

    eager = build(ViTHybridForImageClassification, config, folder, seed, case["weights"], "eager")
    sdpa = ViTHybridForImageClassification.from_pretrained(folder).eval()  # sdpa is transformers' default
    assert type(sdpa.vit.encoder.layer[0].attention).__name__ == "ViTHybridSdpaAttention"
    expected = {}
    with torch.no_grad():
        out_eager = eager(pixels, labels=labels, output_attentions=True, output_hidden_states=True)
        expected["eager.logits"], expected["eager.loss"] = out_eager.logits, out_eager.loss
        for i, (attention, hidden) in enumerate(zip(out_eager.attentions, out_eager.hidden_states)):
            expected[f"eager.attentions.{i}"], expected[f"eager.hidden_states.{i}"] = attention, hidden
        expected[f"eager.hidden_states.{layers}"] = out_eager.hidden_states[layers]
        out_sdpa = sdpa(pixels, labels=labels)
        expected["sdpa.logits"], expected["sdpa.loss"] = out_sdpa.logits, out_sdpa.loss
        masked = eager(pixels, head_mask=head_mask, output_attentions=True)
        expected["head_mask.logits"] = masked.logits
        for i, attention in enumerate(masked.attentions):
            expected[f"head_mask.attentions.{i}"] = attention
        # At the trained size the reference's interpolation is the identity (elsewhere it crashes).
        expected["interpolate.logits"] = eager(pixels, interpolate_pos_encoding=True).logits
    # Training mode: dropout and stochastic depth draw from torch's generator in a fixed order.
    eager.train()
    torch.manual_seed(seed + 1)
    expected["train.logits"] = eager(pixels).logits.detach()

    base = build(ViTHybridModel, config, folder / "base", seed + 2, case["weights"], "eager")
    with torch.no_grad():
        out_base = base(pixels)
    expected["base.last_hidden_state"], expected["base.pooler_output"] = out_base.last_hidden_state, out_base.pooler_output
    save_file({k: v.contiguous() for k, v in expected.items()}, out / f"{name}.expected.safetensors")


def generate_processors(out: Path, photos: list[str]) -> None:
    images = {f"mode_{mode.replace(';', '_')}": image for mode, image in mode_images().items()}
    images.update({Path(photo).stem: Image.open(photo) for photo in photos})
    expected = {}
    for name, options in PROCESSORS.items():
        processor = ViTHybridImageProcessor(**options)
        processor.save_pretrained(out / "processors" / name)
        for image_name, image in images.items():
            expected[f"{name}/{image_name}"] = processor(image, return_tensors="pt")["pixel_values"]
        array = np.asarray(images["mode_RGB"])
        expected[f"{name}/array_hwc"] = processor(array, return_tensors="pt")["pixel_values"]
        expected[f"{name}/tensor_chw"] = processor(torch.from_numpy(array).permute(2, 0, 1),
                                                   return_tensors="pt")["pixel_values"]
    save_file(expected, out / "processors.expected.safetensors")


def logits(checkpoint: str, inputs: str, out: str) -> None:
    pixels = load_file(inputs)["pixel_values"]
    result = {}
    for attn in ("eager", "sdpa"):
        kwargs = {"attn_implementation": "eager"} if attn == "eager" else {}
        model = ViTHybridForImageClassification.from_pretrained(checkpoint, **kwargs).eval()
        with torch.no_grad():
            result[attn] = model(pixels).logits
    save_file(result, out)


DROPIN_PROCESSOR = dict(size={"shortest_edge": 48}, crop_size={"height": 44, "width": 40}, resample=3,
                        image_mean=[0.5, 0.45, 0.4], image_std=[0.5, 0.55, 0.6])


def dropin(out: Path) -> None:
    """A random checkpoint per case (with a processor), then every snippet of dropin_snippets.py under
    transformers: OUT/checkpoints/CASE, OUT/results/CASE/SNIPPET.{json,safetensors}. A snippet that fails
    records its error, which the test reports."""
    import traceback

    import transformers
    from dropin_snippets import PROCESSOR_SNIPPETS, SNIPPETS, run

    def record(folder: Path, name: str, *args) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            description, tensors = run(name, transformers, out / "work" / folder.name / name, *args)
        except Exception:  # noqa: BLE001 - reported by the test
            description, tensors = {"error": traceback.format_exc()}, {}
        (folder / f"{name}.json").write_text(json.dumps(description))
        save_file(tensors, folder / f"{name}.safetensors")

    for seed, (case_name, case) in enumerate(CASES.items()):
        checkpoint = out / "checkpoints" / case_name
        model = ViTHybridForImageClassification(ViTHybridConfig(**case["config"]))
        randomize(model, seed)
        model.save_pretrained(checkpoint, safe_serialization=case["weights"] == "safetensors")
        ViTHybridImageProcessor(**DROPIN_PROCESSOR).save_pretrained(checkpoint)
        for name in SNIPPETS:
            record(out / "results" / case_name, name, checkpoint, case)
    for name in PROCESSOR_SNIPPETS:
        record(out / "results" / "processor", name, out / "checkpoints" / next(iter(CASES)))


def main(argv: list[str]) -> None:
    command, *args = argv
    if command == "generate":
        out = Path(args[0])
        out.mkdir(parents=True, exist_ok=True)
        for seed, (name, case) in enumerate(CASES.items()):
            generate_case(name, case, out, seed)
        generate_processors(out, args[1:])
        (out / "versions.json").write_text(json.dumps({"transformers": __import__("transformers").__version__}))
    elif command == "logits":
        for i in range(0, len(args), 3):
            logits(*args[i:i + 3])
    elif command == "dropin":
        dropin(Path(args[0]))
    elif command == "timm":
        from timm_reference import generate  # imports timm only when asked

        generate(Path(args[0]), args[1:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
