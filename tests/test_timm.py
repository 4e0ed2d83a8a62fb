"""timm's hybrid ViTs: its Hub layout loads, preprocesses and converts as timm 1.0.31 itself runs them.

One oracle call builds all nine architectures of oracle/cases.py's TIMM_CASES at their native sizes
with random weights (every parameter, norms and biases included), saves them with timm's save_for_hf,
and records timm's logits for a random input and timm's eval transform of sample pictures.
"""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from conftest import SAMPLE_PHOTOS, missing, oracle_output
from helpers import assert_same_arithmetic, tiny_model
from oracle.cases import TIMM_CASES, processor_images, timm_label_names
from oracle.env import oracle_python, run_oracle
from vithybrid import CheckpointError, ViTHybridConfig, ViTHybridForImageClassification, ViTHybridImageProcessor
from vithybrid.checkpoints.convert import convert
from vithybrid.checkpoints.timm_format import (ARCHITECTURES, IN21K_CHECKPOINTS, SUPPORTED_CHECKPOINTS, architecture_config,
                                  imagenet_labels, processor_options, vithybrid_config)

# Random weights give logits of standard deviation about 1 (asserted below), so 1e-4 is 1e-4 of their scale.
LOGITS_ATOL = 1e-4
# timm's eval transform gives the same floats (0.0 difference measured); a float32 ulp or two is allowed.
PIXELS_ATOL = 1e-6
# Converted, every one of the nine runs in transformers 4.46.3 (stem-only, three- and four-stage
# backbones, a headless model, and the checkpoint behind google/vit-hybrid-base-bit-384).
TRANSFORMERS_CASES = list(TIMM_CASES)


@pytest.fixture(scope="session")
def timm_dir(tmp_path_factory):
    """timm's checkpoints (config.json + weights), inputs, logits and eval transforms for TIMM_CASES."""
    out = oracle_output(tmp_path_factory, "timm", "timm")
    yield out
    shutil.rmtree(out, ignore_errors=True)  # about 4 GB: not for pytest to keep for three sessions


@pytest.fixture(scope="session")
def images():
    return processor_images([str(photo) for photo in SAMPLE_PHOTOS])


def timm_logits(timm_dir, name):
    expected = load_file(timm_dir / f"{name}.safetensors")
    return expected["pixel_values"], expected["logits"]


def logits_of(model, pixels):
    with torch.no_grad():
        return model(pixels).logits


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("name", TIMM_CASES)
def test_timm_checkpoint_gives_timms_logits(timm_dir, name, attn):
    pixels, expected = timm_logits(timm_dir, name)
    model = ViTHybridForImageClassification.from_pretrained(timm_dir / name, attn_implementation=attn)
    assert model.attn_implementation == attn and model.config.image_size == pixels.shape[-1]
    assert 0.8 < expected.std() < 1.5  # logits on the scale the tolerance assumes
    logits = logits_of(model, pixels)
    assert logits.shape == expected.shape
    torch.testing.assert_close(logits, expected, atol=LOGITS_ATOL, rtol=0)


def test_shipped_imagenet_labels_are_timms():
    run = subprocess.run([str(oracle_python()), "-c", "import json; from timm.data import ImageNetInfo; "
                          "info = ImageNetInfo('imagenet-1k'); "
                          "print(json.dumps([info.index_to_description(i) for i in range(1000)]))"],
                         capture_output=True, text=True, check=True)
    assert imagenet_labels() == dict(enumerate(json.loads(run.stdout)))
    assert imagenet_labels()[281] == "tabby, tabby cat"


def test_timm_configs_become_our_configs(timm_dir):
    """The facts that follow from timm's config.json: architecture, eps, labels, backbone."""
    tiny = ViTHybridConfig.from_pretrained(timm_dir / "vit_tiny_r_s16_p8_384")
    assert (tiny.backbone_config.depths, tiny.backbone_config.out_features) == ([], ["stem"])
    assert (tiny.patch_size, tiny.grid_size, tiny.hidden_size, tiny.layer_norm_eps) == (8, (12, 12), 192, 1e-6)
    names, descriptions = timm_label_names(10)
    assert tiny.id2label == {i: descriptions[name] for i, name in enumerate(names)}  # label_descriptions win
    large = ViTHybridConfig.from_pretrained(timm_dir / "vit_large_r50_s32_224")
    assert large.backbone_config.depths == [3, 4, 6, 3] and large.backbone_featmap_shape == [1, 2048, 7, 7]
    assert (large.num_hidden_layers, large.num_attention_heads, large.intermediate_size) == (24, 16, 4096)
    assert large.num_labels == 1000 and large.id2label == imagenet_labels()  # no label_names: ImageNet-1k's
    headless = ViTHybridForImageClassification.from_pretrained(timm_dir / "vit_base_r50_s16_224")
    assert headless.config.num_labels == 0 and isinstance(headless.classifier, torch.nn.Identity)


@pytest.mark.parametrize("name", TIMM_CASES)
def test_processor_follows_timms_eval_transform(timm_dir, images, name):
    """Resize to floor(size / crop_pct) with the named interpolation, center crop, mean/std: timm's pixels."""
    expected = load_file(timm_dir / f"{name}.processed.safetensors")
    processor = ViTHybridImageProcessor.from_pretrained(timm_dir / name)
    assert sorted(expected) == sorted(images)
    for image_name, image in images.items():
        torch.testing.assert_close(processor(image)["pixel_values"], expected[image_name], atol=PIXELS_ATOL, rtol=0)


def test_timms_rounded_crop_offset_matters(timm_dir, images):
    """With transformers' floored offset, some of these crops would sit one pixel off timm's."""
    expected = load_file(timm_dir / "vit_base_r50_s16_384.processed.safetensors")
    processor = ViTHybridImageProcessor.from_pretrained(timm_dir / "vit_base_r50_s16_384")
    floored = ViTHybridImageProcessor(**{**processor.to_dict(), "crop_offset_rounding": "floor"})
    assert processor.crop_offset_rounding == "round"
    off = [n for n, image in images.items() if not torch.allclose(floored(image)["pixel_values"], expected[n])]
    assert off and len(off) < len(images)


def assert_same_files(first, second):
    """Two converted checkpoints hold identical tensors and identical JSON."""
    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    for name in ("config.json", "preprocessor_config.json"):
        assert (first / name).read_text() == (second / name).read_text()


@pytest.mark.parametrize("name", ["vit_tiny_r_s16_p8_384", "vit_small_r26_s32_224"])
def test_convert_timm_round_trip(timm_dir, images, tmp_path, name):
    pixels, expected = timm_logits(timm_dir, name)
    convert(timm_dir / name, tmp_path / "ours")
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == \
        ["config.json", "model.safetensors", "preprocessor_config.json"]
    assert "architecture" not in json.loads((tmp_path / "ours" / "config.json").read_text())  # ours, not timm's
    converted = ViTHybridForImageClassification.from_pretrained(tmp_path / "ours")
    direct = ViTHybridForImageClassification.from_pretrained(timm_dir / name)
    aside = ("architectures", "torch_dtype", "_name_or_path")  # what saving adds, and where each was read from
    saved = {k: v for k, v in converted.config.to_dict().items() if k not in aside}
    assert saved == {k: v for k, v in direct.config.to_dict().items() if k not in aside}
    assert_same_arithmetic(logits_of(converted, pixels), logits_of(direct, pixels))
    torch.testing.assert_close(logits_of(converted, pixels), expected, atol=LOGITS_ATOL, rtol=0)
    ours = ViTHybridImageProcessor.from_pretrained(tmp_path / "ours")
    timms = ViTHybridImageProcessor.from_pretrained(timm_dir / name)
    for image in images.values():
        assert torch.equal(ours(image)["pixel_values"], timms(image)["pixel_values"])
    convert(tmp_path / "ours", tmp_path / "again")
    assert_same_files(tmp_path / "ours", tmp_path / "again")


def test_convert_overwrite_leaves_nothing_of_the_old_checkpoint(tmp_path):
    tiny_model().save_pretrained(tmp_path / "plain")  # our layout, without a processor
    out = tmp_path / "out"
    out.mkdir()
    for name in ("config.json", "preprocessor_config.json", "pytorch_model.bin"):  # an older checkpoint
        (out / name).write_text("{}")
    report = convert(tmp_path / "plain", out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert any("none was written" in line for line in report)
    ViTHybridForImageClassification.from_pretrained(out)


def test_convert_command_line(timm_dir, tmp_path):
    command = [sys.executable, "-m", "vithybrid.checkpoints.convert"]
    result = subprocess.run(command + [str(timm_dir / "vit_tiny_r_s16_p8_224"), str(tmp_path / "out")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "vit_tiny_r_s16_p8_224" in result.stdout and "transformers 4.46.3" in result.stdout
    assert "one pixel off" in result.stdout  # the processor caveat, since timm rounds its crop offset
    again = subprocess.run(command + [str(timm_dir / "vit_tiny_r_s16_p8_224"), str(tmp_path / "out")],
                           capture_output=True, text=True)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    absent = subprocess.run(command + [str(tmp_path / "absent"), str(tmp_path / "x")], capture_output=True, text=True)
    assert absent.returncode == 2 and absent.stderr.startswith("error: ") and "Traceback" not in absent.stderr
    usage = subprocess.run(command + ["--help"], capture_output=True, text=True)
    assert usage.returncode == 0 and "timm" in usage.stdout and "OUTPUT_DIR" in usage.stdout.upper()


def test_converted_timm_checkpoints_load_in_transformers(timm_dir, tmp_path):
    """transformers 4.46.3 loads what the converter writes and gives timm's logits, eager and SDPA."""
    triples = []
    try:
        for name in TRANSFORMERS_CASES:
            convert(timm_dir / name, tmp_path / name)
            triples += [str(tmp_path / name), str(timm_dir / f"{name}.safetensors"),
                        str(tmp_path / f"{name}.hf.safetensors")]
        try:
            oracle_python()
        except Exception as error:  # noqa: BLE001 - any failure to build the oracle's environment
            missing(f"the reference oracle's environment could not be built: {error}")
        run_oracle("logits", *triples)  # transformers failing to load a converted checkpoint fails the test
    finally:
        for name in TRANSFORMERS_CASES:  # about 4 GB of converted weights
            shutil.rmtree(tmp_path / name, ignore_errors=True)
    for name in TRANSFORMERS_CASES:
        _, expected = timm_logits(timm_dir, name)
        theirs = load_file(tmp_path / f"{name}.hf.safetensors")
        for attn in ("eager", "sdpa"):
            torch.testing.assert_close(theirs[attn], expected, atol=LOGITS_ATOL, rtol=0)


def timm_folder(tmp_path, data, weights=None):
    """A timm-layout folder with this config.json and these weights (else an empty weights file)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(data))
    if weights is None:
        (tmp_path / "model.safetensors").write_bytes(b"")
    else:
        (tmp_path / weights.name).symlink_to(weights)
    return tmp_path


@pytest.mark.parametrize("architecture", ["vit_base_resnet50d_224", "resnet50.a1_in1k", "vit_base_patch16_224"])
def test_unsupported_timm_architecture_is_a_clear_error(tmp_path, architecture):
    folder = timm_folder(tmp_path, {"architecture": architecture, "num_classes": 1000, "pretrained_cfg": {}})
    with pytest.raises(CheckpointError, match=f"timm '{architecture}' checkpoint; only timm's hybrid ViTs"):
        ViTHybridForImageClassification.from_pretrained(folder)
    with pytest.raises(CheckpointError, match="vit_small_r26_s32_384"):  # the message lists what is supported
        ViTHybridImageProcessor.from_pretrained(folder)


@pytest.mark.parametrize("change, message", [
    ({"model_args": {"class_token": False}}, "model_args .*class_token"),
    ({"model_args": {"global_pool": "avg"}}, "global_pool 'avg'"),
    ({"model_args": {"img_size": [224, 320]}}, "not square"),
    ({"label_names": ["a", "b"]}, "label_names name 2 classes, but num_classes is 1000"),
])
def test_unsupported_timm_options_are_clear_errors(timm_dir, tmp_path, change, message):
    data = {**json.loads((timm_dir / "vit_base_r26_s32_224" / "config.json").read_text()), **change}
    with pytest.raises(CheckpointError, match=message):
        ViTHybridConfig.from_pretrained(timm_folder(tmp_path, data))


@pytest.mark.parametrize("config_of, weights_of, message", [
    ("vit_small_r26_s32_224", "vit_base_r26_s32_224", "Weight shapes do not match"),  # same layers, other widths
    ("vit_small_r26_s32_224", "vit_tiny_r_s16_p8_224", "not part of a ResNetV2 hybrid ViT"),
    ("vit_tiny_r_s16_p8_224", "vit_small_r26_s32_224", "not part of a stem-only hybrid ViT"),
    ("vit_tiny_r_s16_p8_224", "vit_tiny_r_s16_p8_384", r"position_embeddings: checkpoint \(1, 145, 192\)"),
    ("vit_base_r50_s16_224", "vit_base_r50_s16_384", "unexpected 2 weights: classifier.bias, classifier.weight"),
])
def test_timm_config_with_other_weights_is_a_clear_error(timm_dir, tmp_path, config_of, weights_of, message):
    weights = next(p for p in (timm_dir / weights_of).iterdir() if p.name != "config.json")
    data = json.loads((timm_dir / config_of / "config.json").read_text())
    with pytest.raises(CheckpointError, match=message):
        ViTHybridForImageClassification.from_pretrained(timm_folder(tmp_path, data, weights))


def test_bad_timm_weights_file_is_a_clear_error(timm_dir, tmp_path):
    state = load_file(timm_dir / "vit_tiny_r_s16_p8_384" / "model.safetensors")
    folder = timm_folder(tmp_path, json.loads((timm_dir / "vit_tiny_r_s16_p8_384" / "config.json").read_text()))
    state["blocks.0.attn.qkv.weight"] = state["blocks.0.attn.qkv.weight"][:-1]  # 575 rows: not 3 x 192
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="not a stacked q, k, v"):
        ViTHybridForImageClassification.from_pretrained(folder)


def test_supported_checkpoint_ids_name_supported_architectures():
    for repo_id in SUPPORTED_CHECKPOINTS + IN21K_CHECKPOINTS:
        owner, name = repo_id.split("/")
        assert owner == "google" or (owner == "timm" and name.split(".")[0] in ARCHITECTURES)
    assert len(ARCHITECTURES) == 9 and SUPPORTED_CHECKPOINTS[0] == "google/vit-hybrid-base-bit-384"
    # timm's vit_base_r50_s16_384 is google's checkpoint, but for LayerNorm eps (timm 1e-6, transformers 1e-12)
    timm_base, google = architecture_config("vit_base_r50_s16_384").to_dict(), ViTHybridConfig(
        image_size=384, num_labels=1000).to_dict()
    # (and the labels: ImageNet-1k's names rather than LABEL_i, since only the checkpoint's config.json has those)
    assert {k for k in google if google[k] != timm_base[k]} == {"layer_norm_eps", "id2label", "label2id"}
    assert timm_base["id2label"][281] == "tabby, tabby cat"


def test_processor_of_a_folder_without_any_config_is_a_clear_error(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "x.png")
    with pytest.raises(CheckpointError, match="has no preprocessor_config.json"):
        ViTHybridImageProcessor.from_pretrained(tmp_path)


def test_a_cached_timm_repo_loads_offline(timm_dir, tmp_path):
    """timm's repos have no preprocessor_config.json; once the Hub has said so (huggingface_hub caches the
    404 as a .no_exist entry), model and processor load from the cache without a network."""
    from test_loading import make_hub_cache

    repo_id, name = "timm/vit_tiny_r_s16_p8_384.augreg_in21k_ft_in1k", "vit_tiny_r_s16_p8_384"  # safetensors
    make_hub_cache(tmp_path, repo_id, timm_dir / name)
    offline = dict(cache_dir=tmp_path, local_files_only=True)
    with pytest.raises(CheckpointError, match="not in the local cache"):  # not known to be missing yet
        ViTHybridImageProcessor.from_pretrained(repo_id, **offline)
    repo = tmp_path / ("models--" + repo_id.replace("/", "--"))
    commit = (repo / "refs" / "main").read_text()
    (repo / ".no_exist" / commit).mkdir(parents=True)
    (repo / ".no_exist" / commit / "preprocessor_config.json").touch()
    processor = ViTHybridImageProcessor.from_pretrained(repo_id, **offline)
    assert processor.to_dict() == ViTHybridImageProcessor.from_pretrained(timm_dir / name).to_dict()
    pixels, expected = timm_logits(timm_dir, name)
    model = ViTHybridForImageClassification.from_pretrained(repo_id, **offline)
    torch.testing.assert_close(logits_of(model, pixels), expected, atol=LOGITS_ATOL, rtol=0)


def test_the_config_json_timm_publishes_on_the_hub():
    """The shape of the config.json files in timm's Hub repos (timm/vit_*: architecture without its tag,
    num_features, global_pool and a pretrained_cfg with the tag and timm's bookkeeping, no label names)."""
    published = {
        "architecture": "vit_small_r26_s32_384", "num_classes": 1000, "num_features": 384, "global_pool": "token",
        "pretrained_cfg": {
            "tag": "augreg_in21k_ft_in1k", "custom_load": True, "input_size": [3, 384, 384],
            "fixed_input_size": True, "interpolation": "bicubic", "crop_pct": 1.0, "crop_mode": "center",
            "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "num_classes": 1000, "pool_size": None,
            "first_conv": "patch_embed.backbone.stem.conv", "classifier": "head"}}
    config = vithybrid_config(published, "config.json")
    assert config == architecture_config("vit_small_r26_s32_384")
    assert (config.image_size, config.hidden_size, config.backbone_config.depths) == (384, 384, [2, 2, 2, 2])
    assert config.id2label[281] == "tabby, tabby cat"
    options = processor_options(published)
    assert options["size"] == {"shortest_edge": 384} and options["crop_size"] == {"height": 384, "width": 384}
    assert options["image_mean"] == [0.5] * 3 and options["resample"] == Image.BICUBIC
