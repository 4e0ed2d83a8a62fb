"""python -m vithybrid.checkpoints.convert SOURCE OUTPUT_DIR: a ViT-Hybrid checkpoint in our Hub layout.

SOURCE is a checkpoint folder or Hub id in our (transformers') layout or in timm's (one of its hybrid
ViTs, e.g. timm/vit_small_r26_s32_384.augreg_in21k_ft_in1k). OUTPUT_DIR receives config.json,
model.safetensors and preprocessor_config.json, which `ViTHybridForImageClassification.from_pretrained`
loads, and which transformers 4.46.3 loads too: its ViTHybridConfig expresses every architecture
this package reads (see config.py). The conversion goes through the model, so converting its own
output again writes the same tensors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..base.configuration import CONFIG_NAME
from ..base.modeling import DTYPES as TORCH_DTYPES
from ..base.processing import PROCESSOR_NAME
from ..model.config import ViTHybridConfig
from ..model.modeling import ViTHybridForImageClassification, ViTHybridModel
from ..model.processing import ViTHybridImageProcessor
from .hub import CheckpointError, locate, read_json
from .reader import config_from_file
from .timm_format import architecture_name, is_timm_config

DTYPES = ("auto", *TORCH_DTYPES)


def transformers_notes(processor: ViTHybridImageProcessor | None) -> list[str]:
    """What transformers 4.46.3 does differently with the converted checkpoint (empty: nothing)."""
    notes = []
    if processor is not None and processor.crop_offset_rounding != "floor":
        notes.append("transformers' image processor ignores crop_offset_rounding and floors the crop offset: "
                     "for some image sizes its crop sits one pixel off timm's (the model is unaffected).")
    return notes


def convert(source: str | Path, output_dir: str | Path, dtype: str = "auto", overwrite: bool = False,
            **hub_kwargs) -> list[str]:
    """Write SOURCE in our Hub layout to OUTPUT_DIR; returns the lines of a report for people."""
    output_dir = Path(output_dir)
    if (output_dir / CONFIG_NAME).exists() and not overwrite:
        raise CheckpointError(f"{output_dir} already holds a checkpoint; pass --overwrite to replace it.")
    config_path = locate(source, CONFIG_NAME, **hub_kwargs)
    if config_path is None:
        raise CheckpointError(f"{str(source)!r} has no config.json: it is not a checkpoint.")
    data = read_json(config_path)
    timm = is_timm_config(data)
    config = config_from_file(config_path, ViTHybridConfig)
    model_class = ViTHybridModel if "ViTHybridModel" in (config.architectures or []) else \
        ViTHybridForImageClassification
    model = model_class.from_pretrained(source, torch_dtype=dtype, **hub_kwargs)
    processor = None
    if timm or locate(source, PROCESSOR_NAME, **hub_kwargs) is not None:
        processor = ViTHybridImageProcessor.from_pretrained(source, **hub_kwargs)

    for stale in (PROCESSOR_NAME, "pytorch_model.bin"):  # an older checkpoint's, which loaders would still read
        (output_dir / stale).unlink(missing_ok=True)
    model.save_pretrained(output_dir)
    written = [CONFIG_NAME, "model.safetensors"]
    if processor is not None:
        processor.save_pretrained(output_dir)
        written.append(PROCESSOR_NAME)
    kind = f"timm's {architecture_name(data)}" if timm else "ViT-Hybrid"
    grid = "x".join(map(str, config.grid_size))
    layout = "timm's" if timm else "our (transformers')"
    report = [f"Read {kind} checkpoint {source}, in {layout} layout.",
              f"Wrote {', '.join(str(output_dir / name) for name in written)}.",
              f"  {model_class.__name__}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, "
              f"{str(model.dtype)[6:]}, {config.image_size}x{config.image_size} images, {grid} tokens, "
              f"{config.num_labels} labels.",
              f"  Loads with vithybrid, and with transformers 4.46.3 ({model_class.__name__}.from_pretrained; "
              f"leave attn_implementation unset there, its SDPA default).",
              *(f"  Note: {note}" for note in transformers_notes(processor))]
    if processor is None:
        report.append(f"  Note: {source} has no {PROCESSOR_NAME}, so none was written.")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vithybrid.checkpoints.convert",
        description="Convert a ViT-Hybrid checkpoint (our/transformers' Hub layout, or timm's layout of its hybrid "
                    "ViTs such as timm/vit_base_r50_s16_384.orig_in21k_ft_in1k) into our Hub layout: config.json, "
                    "model.safetensors and preprocessor_config.json, loadable here and by transformers 4.46.3.")
    parser.add_argument("source", help="checkpoint folder or Hugging Face Hub model id")
    parser.add_argument("output_dir", help="folder to write the converted checkpoint to")
    parser.add_argument("--dtype", choices=DTYPES, default="auto",
                        help="weights' dtype: auto keeps the checkpoint's (timm's: float32) (default: %(default)s)")
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit) of SOURCE")
    parser.add_argument("--overwrite", action="store_true", help="replace a checkpoint already in OUTPUT_DIR")
    args = parser.parse_args(argv)
    try:
        report = convert(args.source, args.output_dir, args.dtype, args.overwrite, revision=args.revision)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
