"""vithybrid.pipeline and `python -m vithybrid`: images in, top-k labels out."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SAMPLE_PHOTOS
from helpers import malformed_exif_jpeg, tiny_checkpoint
from vithybrid import ViTHybridForImageClassification, ViTHybridImageProcessor
from vithybrid.images import ImageError
from vithybrid.pipeline import pipeline

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny"))


def test_top_k_matches_the_model(checkpoint):
    classify = pipeline(checkpoint, top_k=3)
    photo = SAMPLE_PHOTOS[0]
    result = classify(str(photo))
    assert [r["label"] for r in result] and len(result) == 3
    scores = [r["score"] for r in result]
    assert scores == sorted(scores, reverse=True) and sum(scores) <= 1 + 1e-6
    model = ViTHybridForImageClassification.from_pretrained(checkpoint)
    pixels = ViTHybridImageProcessor.from_pretrained(checkpoint)(Image.open(photo))["pixel_values"]
    with torch.no_grad():
        probabilities = model(pixels).logits.softmax(-1)[0]
    best = int(probabilities.argmax())
    assert result[0]["label"] == model.config.id2label[best]
    assert result[0]["score"] == pytest.approx(float(probabilities[best]), abs=1e-6)


def test_batches_mixed_inputs_like_single_calls(checkpoint):
    classify = pipeline(checkpoint, batch_size=2)
    photo = Image.open(SAMPLE_PHOTOS[0])
    inputs = [SAMPLE_PHOTOS[0], photo, np.asarray(photo.convert("RGB")), photo.convert("L"), str(SAMPLE_PHOTOS[-1])]
    results = classify(inputs)
    assert len(results) == len(inputs) and all(len(r) == 5 for r in results)
    for image, batched in zip(inputs, results):
        single = classify(image)
        assert [r["label"] for r in single] == [r["label"] for r in batched]
        assert [r["score"] for r in single] == pytest.approx([r["score"] for r in batched], abs=1e-5)


def test_loaded_model_needs_its_processor(checkpoint):
    model = ViTHybridForImageClassification.from_pretrained(checkpoint)
    with pytest.raises(ValueError, match="Pass the image processor"):
        pipeline(model)
    assert len(pipeline(model, ViTHybridImageProcessor.from_pretrained(checkpoint))(SAMPLE_PHOTOS[0])) == 5


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "vithybrid", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_cli_prints_top5_and_reports_unreadable_files(checkpoint, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not an image")
    exif = tmp_path / "exif.jpg"  # issue 26: its EXIF made exif_transpose raise struct.error, a traceback here
    exif.write_bytes(malformed_exif_jpeg())
    result = run_cli(SAMPLE_PHOTOS[0], bad, tmp_path / "missing.png", exif, "--model", checkpoint)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == str(SAMPLE_PHOTOS[0]) and len(lines) == 6 and "%" in lines[1]
    assert f"cannot read {bad}" in result.stderr and f"cannot read {tmp_path / 'missing.png'}" in result.stderr
    assert f"cannot read {exif}: exif.jpg is truncated or corrupt and cannot be read" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_pipeline_refuses_a_malformed_file_with_image_error(checkpoint, tmp_path):
    exif = tmp_path / "exif.jpg"
    exif.write_bytes(malformed_exif_jpeg())
    with pytest.raises(ImageError, match="exif.jpg is truncated or corrupt and cannot be read"):
        pipeline(checkpoint)([SAMPLE_PHOTOS[0], exif])


def test_cli_json(checkpoint):
    result = run_cli(*SAMPLE_PHOTOS[:2], "--model", checkpoint, "--json", "--top-k", "2")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert list(data) == [str(p) for p in SAMPLE_PHOTOS[:2]] and all(len(v) == 2 for v in data.values())
    for photo in SAMPLE_PHOTOS[:2]:
        expected = pipeline(checkpoint, top_k=2)(photo)
        assert [r["label"] for r in data[str(photo)]] == [r["label"] for r in expected]
        assert [r["score"] for r in data[str(photo)]] == pytest.approx([r["score"] for r in expected], abs=1e-6)


def test_cli_int8_gives_the_float32_ranking_up_to_quantization():
    shapes = [str(ROOT / "examples" / f"shape_{name}.png") for name in ("circle", "star", "triangle")]
    int8, full = (json.loads(run_cli(*shapes, "--model", "shapes", "--json", *flag).stdout) for flag in (["--int8"], []))
    for photo in shapes:
        assert int8[photo][0]["label"] == full[photo][0]["label"] == photo.split("_")[-1][:-4]
        assert [r["score"] for r in int8[photo]] == pytest.approx([r["score"] for r in full[photo]], abs=0.05)
        assert [r["score"] for r in int8[photo]] != [r["score"] for r in full[photo]]  # really another model


def test_cli_bad_model(tmp_path):
    result = run_cli(SAMPLE_PHOTOS[0], "--model", tmp_path)
    assert result.returncode == 2 and "has no config.json" in result.stderr and "Traceback" not in result.stderr
