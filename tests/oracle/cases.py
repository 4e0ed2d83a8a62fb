"""What the oracle and our tests compare: tiny random architectures, inputs and test images.

Imported by both environments (ours and the reference's), so it needs only numpy and Pillow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Tiny configurations that between them cover both block types, every padding mode, dynamic and static
# stem padding, dilation, several out_features, patch sizes 1 and 2, odd input sizes, several
# activations, qkv without bias, both weight formats and the three loss types.
CASES = {
    "bottleneck_same": dict(
        weights="safetensors", batch=2, labels="single",
        config=dict(
            image_size=60, patch_size=1, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=37, hidden_act="gelu", num_labels=5, hidden_dropout_prob=0.1,
            attention_probs_dropout_prob=0.1, backbone_featmap_shape=[1, 128, 4, 4],
            backbone_config=dict(
                model_type="bit", layer_type="bottleneck", global_padding="same", embedding_dynamic_padding=True,
                depths=[1, 1, 2], hidden_sizes=[32, 64, 128], embedding_size=16, num_groups=4,
                out_features=["stage3"], drop_path_rate=0.1))),
    "preact_static_padding": dict(
        weights="bin", batch=2, labels="regression",
        config=dict(
            image_size=70, patch_size=2, hidden_size=24, num_hidden_layers=3, num_attention_heads=3,
            intermediate_size=48, hidden_act="gelu_new", num_labels=1, backbone_featmap_shape=[1, 64, 9, 9],
            backbone_config=dict(
                model_type="bit", layer_type="preactivation", global_padding=None, embedding_dynamic_padding=False,
                depths=[2, 1], hidden_sizes=[32, 64], embedding_size=16, num_groups=8, hidden_act="gelu",
                out_features=["stage2"]))),
    "dilated_four_stages": dict(
        weights="safetensors", batch=3, labels="multi",
        config=dict(
            image_size=48, patch_size=1, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, hidden_act="relu", qkv_bias=False, num_labels=3,
            problem_type="multi_label_classification", backbone_featmap_shape=[1, 128, 6, 6],
            backbone_config=dict(
                model_type="bit", layer_type="bottleneck", global_padding="SAME", embedding_dynamic_padding=True,
                depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 64, 128], embedding_size=8, num_groups=4,
                output_stride=8, out_features=["stage2", "stage4"]))),
}

# timm's nine hybrid ViTs at their native sizes, random, saved by timm's own save_for_hf. Between them:
# both weight files, 1000 classes, a few with label names and descriptions, none (a headless feature
# model, as timm/vit_base_r50_s16_224.orig_in21k), and pretrained_cfg preprocessing other than the
# default (bilinear, other crop_pct and mean/std, the "squash" crop mode).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TIMM_CASES = {
    "vit_tiny_r_s16_p8_224": dict(batch=2, weights="bin", num_classes=1000),
    "vit_tiny_r_s16_p8_384": dict(batch=2, weights="safetensors", num_classes=10, label_names=True, pretrained_cfg=dict(
        interpolation="bilinear", crop_pct=0.875, crop_mode="squash", mean=IMAGENET_MEAN, std=IMAGENET_STD)),
    "vit_small_r26_s32_224": dict(batch=2, weights="safetensors", num_classes=1000, pretrained_cfg=dict(
        interpolation="bilinear", crop_pct=0.95)),
    "vit_small_r26_s32_384": dict(batch=2, weights="safetensors", num_classes=1000),
    # crop_pct > 1: the crop is larger than the resized image (213 of 224 pixels), padded as torchvision pads
    "vit_base_r26_s32_224": dict(batch=1, weights="safetensors", num_classes=1000, pretrained_cfg=dict(crop_pct=1.05)),
    "vit_base_r50_s16_224": dict(batch=1, weights="safetensors", num_classes=0),
    "vit_base_r50_s16_384": dict(batch=1, weights="safetensors", num_classes=1000),
    "vit_large_r50_s32_224": dict(batch=1, weights="bin", num_classes=1000),
    "vit_large_r50_s32_384": dict(batch=1, weights="safetensors", num_classes=1000),
}


def timm_label_names(num_classes: int) -> tuple[list[str], dict[str, str]]:
    """Synset-like label names and their descriptions, as timm's config.json holds them."""
    names = [f"n{i:08d}" for i in range(num_classes)]
    return names, {name: f"thing number {i}" for i, name in enumerate(names)}


def processor_images(photos: list[str]) -> dict[str, Image.Image]:
    """RGB pictures for comparing preprocessing: the photos, and odd sizes whose crop offsets round."""
    images = {Path(photo).stem: Image.open(photo).convert("RGB") for photo in photos}
    for width, height in ((97, 61), (61, 97), (300, 211), (389, 513), (641, 480)):
        images[f"gradient_{width}x{height}"] = gradient_image(width, height)
    return images


# The image processor of google/vit-hybrid-base-bit-384 and transformers' defaults.
PROCESSORS = {
    "google": dict(do_resize=True, size={"shortest_edge": 384}, resample=3, do_center_crop=True,
                   crop_size={"height": 384, "width": 384}, do_rescale=True, rescale_factor=1 / 255,
                   do_normalize=True, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_convert_rgb=True),
    "default": dict(),
}

PIL_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F")


def gradient_image(width: int = 97, height: int = 61) -> Image.Image:
    """A deterministic RGB picture with detail in every channel and an odd size."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), (x * 7 + y * 13) % 256], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def mode_images() -> dict[str, Image.Image]:
    """The gradient picture in every PIL mode the processor must accept, each with real content."""
    rgb = gradient_image()
    gray = np.asarray(rgb.convert("L"), dtype=np.int32)
    images = {mode: rgb.convert(mode) for mode in ("1", "L", "LA", "RGB", "RGBA", "CMYK")}
    images["P"] = rgb.quantize(colors=32)
    images["RGBA"].putalpha(Image.fromarray((gray[::-1] % 256).astype(np.uint8)))
    images["I;16"] = Image.fromarray((gray * 257).astype("<u2"))  # full 16-bit range
    images["I"] = Image.fromarray((gray * 3 - 100).astype(np.int32))  # below 0 and above 255
    images["F"] = Image.fromarray((gray / 255.0 * 300).astype(np.float32))
    return images
