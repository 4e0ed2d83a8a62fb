"""timm's checkpoints of the hybrid ViTs, translated to our (transformers') Hub layout.

timm (https://github.com/huggingface/pytorch-image-models) publishes the R+ViT hybrids as Hub repos
like "timm/vit_base_r50_s16_384.orig_in21k_ft_in1k": config.json names the `architecture` (with a
pretrained tag after the dot), `num_classes`, `model_args` and the `pretrained_cfg` (input size,
interpolation, crop_pct, crop_mode, mean, std), optionally `label_names`; model.safetensors or
pytorch_model.bin hold timm's state dict (timm/models/_hub.py, `save_for_hf` and `push_to_hf_hub`).

What the nine architectures are, as timm 1.0.31 builds them:
- timm/models/vision_transformer_hybrid.py: `_resnetv2(layers)` is a ResNetV2 with `preact=False`
  (v1.5 bottlenecks, stride on the 3x3), stem_type "same" and StdConv2dSame with eps 1e-8; with no
  layers ("R" of the tiny models) only the stem: 7x7/2 conv, GroupNorm(32) + ReLU, 3x3/2 max-pool,
  so a 64-channel map at stride 4. The ViT reads the backbone's last map through a patch_size
  convolution (8 for the tiny models, else 1), with a CLS token, learned position embeddings,
  pre-norm blocks (LayerNorm eps 1e-6, qkv bias, MLP ratio 4, exact GELU), a final LayerNorm and
  a linear head on the CLS token (global_pool "token"; num_classes 0 means no head).
- timm/models/resnetv2.py: ResNetV2 stages of widths 256, 512, 1024, 2048; stride 1 in the first
  stage, 2 after; non-preact, so no final norm. Names: `stem.conv`, `stem.norm`,
  `stages.{i}.blocks.{j}.{conv1..3, norm1..3, downsample.conv, downsample.norm}`.
- timm/layers/std_conv.py, padding.py, pool2d_same.py: "SAME" padding is static where stride 1 and
  the kernel allows it, else computed per input (TensorFlow style, extra pixel at the end); the stem
  max-pool pads with -inf where ours (as transformers') pads with 0, which is the same after the ReLU.
- timm/data/config.py, transforms_factory.py: the eval transform resizes the shortest edge to
  floor(size / crop_pct) and center-crops with torchvision's rounded offsets (see processor_options).

All of this is what our ViTHybridConfig already expresses with transformers' keys, so a timm
checkpoint becomes an ordinary config plus renamed weights, and loads through the usual path.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..model.backbone import feature_map_shape
from ..model.config import BitConfig, ViTHybridConfig
from .hub import CheckpointError
from .shipped import DEFAULT_MODEL


@dataclass(frozen=True)
class Architecture:
    depths: tuple[int, ...]  # ResNetV2 blocks per stage; () is the stem alone
    patch_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    image_size: int  # the input size of its default pretrained_cfg


ARCHITECTURES = {
    "vit_tiny_r_s16_p8_224": Architecture((), 8, 192, 12, 3, 224),
    "vit_tiny_r_s16_p8_384": Architecture((), 8, 192, 12, 3, 384),
    "vit_small_r26_s32_224": Architecture((2, 2, 2, 2), 1, 384, 12, 6, 224),
    "vit_small_r26_s32_384": Architecture((2, 2, 2, 2), 1, 384, 12, 6, 384),
    "vit_base_r26_s32_224": Architecture((2, 2, 2, 2), 1, 768, 12, 12, 224),
    "vit_base_r50_s16_224": Architecture((3, 4, 9), 1, 768, 12, 12, 224),
    "vit_base_r50_s16_384": Architecture((3, 4, 9), 1, 768, 12, 12, 384),
    "vit_large_r50_s32_224": Architecture((3, 4, 6, 3), 1, 1024, 24, 16, 224),
    "vit_large_r50_s32_384": Architecture((3, 4, 6, 3), 1, 1024, 24, 16, 384),
}

# Published weights, as Hub ids (timm's default_cfgs with hf_hub_id "timm/": "timm/<architecture>.<tag>").
# ImageNet-1k classifiers, for a model picker; google/vit-hybrid-base-bit-384 holds the same weights as
# timm's vit_base_r50_s16_384.orig_in21k_ft_in1k, in transformers' layout. vit_base_r26_s32_224 has no
# published weights and vit_base_r50_s16_224 only ImageNet-21k features.
SUPPORTED_CHECKPOINTS = (
    DEFAULT_MODEL,
    "timm/vit_tiny_r_s16_p8_224.augreg_in21k_ft_in1k",
    "timm/vit_tiny_r_s16_p8_384.augreg_in21k_ft_in1k",
    "timm/vit_small_r26_s32_224.augreg_in21k_ft_in1k",
    "timm/vit_small_r26_s32_384.augreg_in21k_ft_in1k",
    "timm/vit_base_r50_s16_384.orig_in21k_ft_in1k",
    "timm/vit_large_r50_s32_224.augreg_in21k_ft_in1k",
    "timm/vit_large_r50_s32_384.augreg_in21k_ft_in1k",
)
# ImageNet-21k pretraining (21843 classes), and vit_base_r50_s16_224's features without a classifier.
IN21K_CHECKPOINTS = (
    "timm/vit_tiny_r_s16_p8_224.augreg_in21k",
    "timm/vit_small_r26_s32_224.augreg_in21k",
    "timm/vit_base_r50_s16_224.orig_in21k",
    "timm/vit_large_r50_s32_224.augreg_in21k",
)

LAYER_NORM_EPS = 1e-6  # timm's ViT LayerNorm; weight standardization (1e-8) and GroupNorm (1e-5) are ours too
# model_args that say nothing new about these architectures (drop rates only matter in training).
KNOWN_MODEL_ARGS = {"in_chans", "num_classes", "global_pool", "img_size"}
# timm's data-config defaults where a pretrained_cfg leaves a key out (timm/data/config.py, constants.py).
DEFAULT_DATA = {"interpolation": "bicubic", "crop_pct": 0.875, "crop_mode": "center",
                "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
PIL_RESAMPLE = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}


def is_timm_config(data: dict[str, Any]) -> bool:
    """A timm config.json names an `architecture`; ours and transformers' name a `model_type`."""
    return "architecture" in data and "model_type" not in data


def is_timm_state_dict(state: dict[str, torch.Tensor]) -> bool:
    return any(key.startswith("patch_embed.") for key in state)


def architecture_name(data: dict[str, Any]) -> str:
    """timm's architecture without its pretrained tag (the part after the dot, e.g. ".orig_in21k_ft_in1k")."""
    return str(data["architecture"]).split(".")[0]


def _architecture(data: dict[str, Any], source: str) -> Architecture:
    name = architecture_name(data)
    if name not in ARCHITECTURES:
        raise CheckpointError(f"{source} is a timm {data['architecture']!r} checkpoint; only timm's hybrid ViTs with a "
                              f"ResNetV2 backbone are supported: {', '.join(ARCHITECTURES)}.")
    return ARCHITECTURES[name]


def _pretrained_cfg(data: dict[str, Any]) -> dict[str, Any]:
    """The pretrained_cfg, also from older timm configs that kept its keys at the top level."""
    return data.get("pretrained_cfg", data)


def _image_size(data: dict[str, Any], arch: Architecture, source: str) -> tuple[int, int]:
    """(channels, size): model_args win over pretrained_cfg's input_size, as timm builds the model."""
    args, pretrained = data.get("model_args", {}), _pretrained_cfg(data)
    input_size = list(pretrained.get("input_size") or (3, arch.image_size, arch.image_size))
    channels = args.get("in_chans", input_size[0])
    size = args.get("img_size", input_size[1:])
    height, width = (size, size) if isinstance(size, int) else size
    if height != width:
        raise CheckpointError(f"{source}: timm image size {height}x{width} is not square; ViT-Hybrid configs have "
                              f"one image_size.")
    return int(channels), int(height)


@functools.cache
def imagenet_labels() -> dict[int, str]:
    """ImageNet-1k's class descriptions in timm's class order ("tench, Tinca tinca", ...): the 1000 lines of
    imagenet_labels.txt, written from timm.data.ImageNetInfo("imagenet-1k") (WordNet lemmas)."""
    lines = (Path(__file__).with_name("imagenet_labels.txt")).read_text(encoding="utf-8").splitlines()
    return dict(enumerate(lines))


def _id2label(data: dict[str, Any], num_classes: int, source: str) -> dict[int, str] | None:
    """Label names (ImageNet synsets, say) by class index, as descriptions where the config has them."""
    names = data.get("label_names", _pretrained_cfg(data).get("label_names"))
    if not names:
        # timm's Hub configs of ImageNet-1k classifiers leave the labels to timm's ImageNetInfo
        return imagenet_labels() if num_classes == len(imagenet_labels()) else None
    descriptions = data.get("label_descriptions", _pretrained_cfg(data).get("label_descriptions")) or {}
    names = {int(i): name for i, name in names.items()} if isinstance(names, dict) else dict(enumerate(names))
    if sorted(names) != list(range(num_classes)):
        raise CheckpointError(f"{source}: label_names name {len(names)} classes, but num_classes is {num_classes}.")
    return {i: str(descriptions.get(name, name)) for i, name in names.items()}


def vithybrid_config(data: dict[str, Any], source: str | Path) -> ViTHybridConfig:
    """Our ViTHybridConfig for a timm config.json (raises CheckpointError for what it cannot be)."""
    source = str(source)
    arch = _architecture(data, source)
    args = data.get("model_args", {})
    unknown = {k: v for k, v in args.items() if k not in KNOWN_MODEL_ARGS and not k.endswith("drop_rate")}
    if unknown:
        raise CheckpointError(f"{source}: timm model_args {unknown} change the {architecture_name(data)} architecture "
                              f"in ways ViT-Hybrid does not support.")
    pool = args.get("global_pool", data.get("global_pool", "token"))
    if pool != "token":
        raise CheckpointError(f"{source}: timm global_pool {pool!r}; ViT-Hybrid classifies the CLS token ('token').")
    channels, size = _image_size(data, arch, source)
    num_classes = int(data.get("num_classes", args.get("num_classes", _pretrained_cfg(data).get("num_classes", 1000))))
    backbone = dict(model_type="bit", num_channels=channels, layer_type="bottleneck", global_padding="SAME",
                    embedding_dynamic_padding=True, depths=list(arch.depths),
                    out_features=[f"stage{len(arch.depths)}" if arch.depths else "stem"])
    try:
        featmap = feature_map_shape(BitConfig(**backbone), size, size)
    except ValueError as error:
        raise CheckpointError(f"{source}: {error}") from error
    labels = _id2label(data, num_classes, source)
    return ViTHybridConfig(
        image_size=size, num_channels=channels, patch_size=arch.patch_size, hidden_size=arch.hidden_size,
        num_hidden_layers=arch.num_hidden_layers, num_attention_heads=arch.num_attention_heads,
        intermediate_size=4 * arch.hidden_size, hidden_act="gelu", layer_norm_eps=LAYER_NORM_EPS, qkv_bias=True,
        backbone_featmap_shape=list(featmap), backbone_config=backbone,
        **({"id2label": labels} if labels is not None else {"num_labels": num_classes}))


def architecture_config(name: str, num_labels: int = 1000) -> ViTHybridConfig:
    """The config of one of the nine architectures at its native size (for benchmarks and tests)."""
    return vithybrid_config({"architecture": name, "num_classes": num_labels}, name)


# timm key -> our Hub key. BACKBONE and STEM stand for the backbone prefixes on each side.
BACKBONE = "vit.embeddings.patch_embeddings.backbone.bit."
RENAMES = [
    (r"cls_token", "vit.embeddings.cls_token"),
    (r"pos_embed", "vit.embeddings.position_embeddings"),
    (r"patch_embed\.proj\.(weight|bias)", r"vit.embeddings.patch_embeddings.projection.\1"),
    (r"STEMconv\.weight", BACKBONE + "embedder.convolution.weight"),
    (r"STEMnorm\.(weight|bias)", BACKBONE + r"embedder.norm.\1"),
    (r"patch_embed\.backbone\.stages\.(\d+)\.blocks\.(\d+)\.((?:downsample\.)?(?:conv|norm)\d?\.(?:weight|bias))",
     BACKBONE + r"encoder.stages.\1.layers.\2.\3"),
    (r"blocks\.(\d+)\.norm1\.(weight|bias)", r"vit.encoder.layer.\1.layernorm_before.\2"),
    (r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)", r"vit.encoder.layer.\1.attention.attention.QKV.\2"),
    (r"blocks\.(\d+)\.attn\.proj\.(weight|bias)", r"vit.encoder.layer.\1.attention.output.dense.\2"),
    (r"blocks\.(\d+)\.norm2\.(weight|bias)", r"vit.encoder.layer.\1.layernorm_after.\2"),
    (r"blocks\.(\d+)\.mlp\.fc1\.(weight|bias)", r"vit.encoder.layer.\1.intermediate.dense.\2"),
    (r"blocks\.(\d+)\.mlp\.fc2\.(weight|bias)", r"vit.encoder.layer.\1.output.dense.\2"),
    (r"norm\.(weight|bias)", r"vit.layernorm.\1"),
    (r"head\.(weight|bias)", r"classifier.\1"),
]


def _rename(key: str, rules: list[tuple[re.Pattern, str]]) -> str | None:
    for rule, target in rules:
        match = rule.fullmatch(key)
        if match:
            return match.expand(target)
    return None


def hub_state_dict(state: dict[str, torch.Tensor], config: ViTHybridConfig) -> dict[str, torch.Tensor]:
    """timm's state dict under our Hub (transformers) names; qkv is split into query, key and value.

    A key that is not part of these architectures raises CheckpointError; whether every weight is
    there with the right shape is checked when the model loads it.
    """
    stem = re.escape("patch_embed.backbone." + ("stem." if config.backbone_config.depths else ""))
    rules = [(re.compile(pattern.replace("STEM", stem)), target) for pattern, target in RENAMES]
    renamed, unknown = {}, []
    for key, tensor in state.items():
        target = _rename(key, rules)
        if target is None:
            unknown.append(key)
        elif ".QKV." in target:
            if tensor.shape[0] % 3:
                raise CheckpointError(f"timm weight {key} of shape {tuple(tensor.shape)} is not a stacked q, k, v.")
            for name, part in zip(("query", "key", "value"), tensor.chunk(3)):
                renamed[target.replace("QKV", name)] = part.clone()  # own storage: safetensors refuses shared
        else:
            renamed[target] = tensor
    if unknown:
        kind = "ResNetV2" if config.backbone_config.depths else "stem-only"
        raise CheckpointError(f"The timm weights hold {len(unknown)} tensors that are not part of a {kind} hybrid ViT: "
                              f"{', '.join(unknown[:8])}. The weights file and config.json must come from the same "
                              f"model.")
    return renamed


def processor_options(data: dict[str, Any], source: str | Path = "config.json") -> dict[str, Any]:
    """ViTHybridImageProcessor options that reproduce timm's eval transform for this pretrained_cfg.

    timm (transforms_imagenet_eval): resize the shortest edge to floor(size / crop_pct) with the named
    interpolation (crop_mode "center"), or both edges ("squash"); center-crop to size with torchvision's
    offsets, round((resized - size) / 2), zero-padded where crop_pct > 1; to [0, 1]; normalize.
    """
    source = str(source)
    arch = _architecture(data, source)
    pretrained = {**DEFAULT_DATA, **{k: v for k, v in _pretrained_cfg(data).items() if v is not None}}
    _, size = _image_size(data, arch, source)
    if pretrained["interpolation"] not in PIL_RESAMPLE or pretrained["crop_mode"] not in ("center", "squash"):
        raise CheckpointError(f"{source}: timm interpolation {pretrained['interpolation']!r} with crop_mode "
                              f"{pretrained['crop_mode']!r} is not supported (center or squash crops with "
                              f"{', '.join(PIL_RESAMPLE)}).")
    scale = math.floor(size / pretrained["crop_pct"])
    resize = {"shortest_edge": scale} if pretrained["crop_mode"] == "center" else {"height": scale, "width": scale}
    return dict(do_resize=True, size=resize, resample=PIL_RESAMPLE[pretrained["interpolation"]], do_center_crop=True,
                crop_size={"height": size, "width": size}, crop_offset_rounding="round", do_rescale=True,
                rescale_factor=1 / 255, do_normalize=True, image_mean=list(pretrained["mean"]),
                image_std=list(pretrained["std"]), do_convert_rgb=True)
