"""The image processor against transformers 4.46.3's, on the sample photos and every PIL mode."""

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import SAMPLE_PHOTOS
from oracle.cases import PIL_MODES, PROCESSORS, gradient_image, mode_images
from vithybrid import CheckpointError, ViTHybridImageProcessor


@pytest.fixture(scope="module")
def expected(oracle_dir):
    return load_file(oracle_dir / "processors.expected.safetensors")


@pytest.mark.parametrize("processor_name", PROCESSORS)
def test_sample_photos_equal_reference(oracle_dir, expected, processor_name):
    processor = ViTHybridImageProcessor.from_pretrained(oracle_dir / "processors" / processor_name)
    assert SAMPLE_PHOTOS
    for photo in SAMPLE_PHOTOS:
        ours = processor(Image.open(photo), return_tensors="pt")["pixel_values"]
        torch.testing.assert_close(ours, expected[f"{processor_name}/{photo.stem}"], atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", PIL_MODES)
@pytest.mark.parametrize("processor_name", PROCESSORS)
def test_every_pil_mode_equals_reference(oracle_dir, expected, processor_name, mode):
    processor = ViTHybridImageProcessor.from_pretrained(oracle_dir / "processors" / processor_name)
    image = mode_images()[mode]
    assert image.mode == mode
    ours = processor(image)["pixel_values"]
    assert ours.shape == (1, 3, processor.crop_size["height"], processor.crop_size["width"])
    torch.testing.assert_close(ours, expected[f"{processor_name}/mode_{mode.replace(';', '_')}"], atol=1e-6, rtol=0)


@pytest.mark.parametrize("processor_name", PROCESSORS)
def test_arrays_and_tensors_equal_reference(oracle_dir, expected, processor_name):
    processor = ViTHybridImageProcessor.from_pretrained(oracle_dir / "processors" / processor_name)
    array = np.array(gradient_image())
    torch.testing.assert_close(processor(array)["pixel_values"], expected[f"{processor_name}/array_hwc"],
                               atol=1e-6, rtol=0)
    chw = torch.from_numpy(array).permute(2, 0, 1)
    torch.testing.assert_close(processor(chw)["pixel_values"], expected[f"{processor_name}/tensor_chw"],
                               atol=1e-6, rtol=0)
    # floats in [0, 1] mean the same picture as uint8 in [0, 255]
    torch.testing.assert_close(processor(array / 255.0)["pixel_values"], processor(array)["pixel_values"],
                               atol=1 / 127.5 + 1e-6, rtol=0)


def test_batches_and_return_types():
    processor = ViTHybridImageProcessor(size=32, crop_size=32)
    images = [gradient_image(50, 40), gradient_image(40, 50), gradient_image(33, 33)]
    batch = processor(images, return_tensors="pt")["pixel_values"]
    assert batch.shape == (3, 3, 32, 32) and batch.dtype == torch.float32
    for i, image in enumerate(images):
        assert torch.equal(batch[i], processor(image)["pixel_values"][0])
    assert processor(images, return_tensors="np")["pixel_values"].shape == (3, 3, 32, 32)
    assert len(processor(images, return_tensors=None)["pixel_values"]) == 3
    assert processor(np.stack([np.asarray(im.resize((40, 40))) for im in images]))["pixel_values"].shape[0] == 3


def test_small_images_are_padded_like_the_reference():
    processor = ViTHybridImageProcessor(do_resize=False, crop_size={"height": 8, "width": 10})
    array = np.full((4, 5, 3), 255, np.uint8)
    out = processor(array, return_tensors="np")["pixel_values"][0]
    white = (1.0 - np.float32(processor.image_mean[0])) / np.float32(processor.image_std[0])
    black = (0.0 - np.float32(processor.image_mean[0])) / np.float32(processor.image_std[0])
    assert out.shape == (3, 8, 10)
    np.testing.assert_allclose(out[0, 2:6, 3:8], white, rtol=1e-6)  # ceil((8-4)/2)=2, ceil((10-5)/2)=3
    np.testing.assert_allclose(out[0, :2], black, rtol=1e-6)


def test_config_round_trip_and_errors(tmp_path):
    processor = ViTHybridImageProcessor(**PROCESSORS["google"])
    processor.save_pretrained(tmp_path)
    again = ViTHybridImageProcessor.from_pretrained(tmp_path)
    assert again.to_dict() == processor.to_dict()
    assert again.size == {"shortest_edge": 384} and again.crop_size == {"height": 384, "width": 384}
    legacy = ViTHybridImageProcessor(size=384, crop_size=384)  # older configs write plain integers
    assert legacy.size == {"shortest_edge": 384} and legacy.crop_size == {"height": 384, "width": 384}
    with pytest.raises(CheckpointError, match="has no preprocessor_config.json"):
        ViTHybridImageProcessor.from_pretrained(tmp_path.parent)
    with pytest.raises(ValueError, match="Expected an image of shape"):
        processor(np.zeros((2, 2, 2, 2, 2), np.uint8))


def test_four_channel_arrays_keep_their_channels_as_transformers():
    """transformers' processor test (test_call_numpy_4_channels): do_convert_rgb converts PIL images only."""
    processor = ViTHybridImageProcessor(size=32, crop_size=32)
    rgba = np.concatenate([np.asarray(gradient_image(50, 40)), np.full((40, 50, 1), 255, np.uint8)], axis=-1)
    out = processor(rgba.transpose(2, 0, 1), input_data_format="channels_first", image_mean=0, image_std=1)
    assert out["pixel_values"].shape == (1, 4, 32, 32)
    torch.testing.assert_close(out["pixel_values"][0, 3], torch.ones(32, 32))  # the alpha channel, rescaled
    torch.testing.assert_close(out["pixel_values"][0, :3], processor(rgba[..., :3], image_mean=0, image_std=1)[
        "pixel_values"][0], atol=1 / 255, rtol=0)  # the colours as an RGB array gives them (Pillow resizes alike)
    assert processor(Image.fromarray(rgba))["pixel_values"].shape == (1, 3, 32, 32)  # a PIL image is converted
    with pytest.raises(ValueError, match="one value per channel: the image has 4"):
        processor(rgba)  # three means for four channels
