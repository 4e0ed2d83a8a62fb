"""The training CLI end to end (tiny models, one short epoch), its resume, and its messages for bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vithybrid import ViTHybridForImageClassification, ViTHybridImageProcessor
from vithybrid.training import train as train_module
from vithybrid.training.shapes import CLASSES, sample
from vithybrid.checkpoints.shipped import resolve_model
from vithybrid.training.train import main

ROOT = Path(__file__).resolve().parents[1]
TINY_SHAPES = ["--config", "tiny", "--shapes", "--train-size", "64", "--val-size", "32", "--batch-size", "32",
               "--no-progress"]


def predict(folder: Path, images) -> torch.Tensor:
    """Class indices that the saved model predicts, loading it the way the app does."""
    model = ViTHybridForImageClassification.from_pretrained(folder)
    processor = ViTHybridImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        logits = model(processor(images)["pixel_values"]).logits
    assert logits.shape == (len(images), model.config.num_labels)
    return logits.argmax(-1)


def write_folder(root: Path, classes: dict[str, int], seed: int = 0) -> Path:
    """An image folder: `count` generated images per class (label by name), in mixed sizes and formats."""
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        found = (s for i in range(10_000) if (s := sample(seed, i, 80)).name == name)
        for i in range(count):
            image = next(found).image.resize((80, 60) if i % 2 else (70, 90))
            image.save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("tiny_shapes")
    assert main([*TINY_SHAPES, "--epochs", "1", "--output", str(output)]) == 0
    return output


def test_generator_run_writes_a_hub_folder_that_loads_and_predicts(shapes_run):
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= {p.name for p in shapes_run.iterdir()}
    config = json.loads((shapes_run / "config.json").read_text())
    assert config["id2label"] == {str(i): name for i, name in enumerate(CLASSES)}
    assert json.loads((shapes_run / "preprocessor_config.json").read_text())["crop_size"] == {"height": 32, "width": 32}
    state = json.loads((shapes_run / "trainer_state.json").read_text())
    assert [e["epoch"] for e in state["epochs"]] == [1] and 0 <= state["epochs"][0]["val_accuracy"] <= 1
    assert state["command"].startswith("python -m vithybrid.training.train --config tiny --shapes")
    assert (shapes_run / "checkpoints" / "last.pt").is_file()
    predicted = predict(shapes_run, [sample(1, i, 32).image for i in range(4)])
    assert predicted.min() >= 0 and predicted.max() < len(CLASSES)


def test_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    arguments = [*TINY_SHAPES, "--epochs", "2"]
    assert main([*arguments, "--output", str(tmp_path / "straight")]) == 0

    real_train_epoch, calls = train_module.train_epoch, []

    def crash_in_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_train_epoch(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_epoch", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        main([*arguments, "--output", str(tmp_path / "resumed")])
    monkeypatch.setattr(train_module, "train_epoch", real_train_epoch)
    assert main([*arguments, "--output", str(tmp_path / "resumed"), "--resume"]) == 0

    straight = load_file(tmp_path / "straight" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=1e-6, msg=key)
    history = json.loads((tmp_path / "resumed" / "trainer_state.json").read_text())["epochs"]
    assert [e["epoch"] for e in history] == [1, 2]


def test_folder_run_from_a_config_and_fine_tuning_a_checkpoint(tmp_path, shapes_run):
    data = write_folder(tmp_path / "data", {"circle": 6, "square": 6})
    common = ["--data-dir", str(data), "--epochs", "1", "--batch-size", "4", "--val-fraction", "0.34",
              "--no-progress"]
    assert main(["--config", "tiny", *common, "--output", str(tmp_path / "scratch")]) == 0
    assert main(["--from-pretrained", str(shapes_run), *common, "--output", str(tmp_path / "tuned")]) == 0
    photos = [sample(3, i, 50).image for i in range(3)]
    for run in ("scratch", "tuned"):
        config = json.loads((tmp_path / run / "config.json").read_text())
        assert config["id2label"] == {"0": "circle", "1": "square"}
        assert set(predict(tmp_path / run, photos).tolist()) <= {0, 1}
        assert json.loads((tmp_path / run / "trainer_state.json").read_text())["epochs"][0]["val_accuracy"] >= 0
    # fine-tuning keeps the backbone it started from (it trains, so weights move, but not from scratch)
    start = load_file(shapes_run / "model.safetensors")
    tuned = load_file(tmp_path / "tuned" / "model.safetensors")
    key = "vit.embeddings.patch_embeddings.backbone.bit.embedder.convolution.weight"
    assert torch.nn.functional.cosine_similarity(start[key].flatten(), tuned[key].flatten(), dim=0) > 0.9


def test_fine_tuning_the_shipped_model_by_name(tmp_path):
    data = write_folder(tmp_path / "data", {"star": 2, "triangle": 2})
    assert main(["--from-pretrained", "shapes", "--data-dir", str(data), "--epochs", "1", "--val-fraction", "0",
                 "--no-progress", "--output", str(tmp_path / "out")]) == 0
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["id2label"] == {"0": "star", "1": "triangle"}
    assert config["image_size"] == json.loads((resolve_model("shapes") / "config.json").read_text())["image_size"]


def test_resolve_model():
    folder = resolve_model("shapes")
    assert isinstance(folder, Path) and (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert sum(p.stat().st_size for p in folder.iterdir()) < 10_000_000
    assert resolve_model("google/vit-hybrid-base-bit-384") == "google/vit-hybrid-base-bit-384"
    assert resolve_model(Path("some/folder")) == "some/folder"


def error_of(capsys, argv: list[str]) -> str:
    assert main(argv) == 1
    return capsys.readouterr().err


def test_messages_for_bad_folders(tmp_path, capsys):
    common = ["--config", "tiny", "--epochs", "1", "--output", str(tmp_path / "out"), "--no-progress"]
    missing = tmp_path / "nowhere"
    assert f"{missing} is not a folder" in error_of(capsys, [*common, "--data-dir", str(missing)])

    empty = tmp_path / "empty"
    empty.mkdir()
    assert f"{empty} has no class subfolders" in error_of(capsys, [*common, "--data-dir", str(empty)])

    one = write_folder(tmp_path / "one", {"circle": 2})
    assert "only one class subfolder (circle)" in error_of(capsys, [*common, "--data-dir", str(one)])

    no_images = write_folder(tmp_path / "no_images", {"circle": 2, "square": 2})
    (no_images / "dog").mkdir()
    (no_images / "dog" / "notes.txt").write_text("not an image")
    message = error_of(capsys, [*common, "--data-dir", str(no_images)])
    assert "class 'dog' has no images" in message and str(no_images / "dog") in message
    assert not (tmp_path / "out").exists()  # nothing was trained or written


def test_unreadable_files_are_named_without_a_traceback(tmp_path):
    data = write_folder(tmp_path / "data", {"circle": 2, "square": 2})
    (data / "square" / "broken.jpg").write_bytes(b"this is not a JPEG")
    (data / "circle" / "cut.png").write_bytes((data / "circle" / "1.png").read_bytes()[:60])
    result = subprocess.run([sys.executable, "-m", "vithybrid.training.train", "--config", "tiny", "--data-dir", str(data),
                             "--output", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "2 file(s) cannot be read as images" in result.stderr
    assert str(data / "square" / "broken.jpg") in result.stderr and str(data / "circle" / "cut.png") in result.stderr


def test_messages_for_a_bad_config_and_a_missing_checkpoint(tmp_path, capsys):
    common = ["--shapes", "--epochs", "1", "--output", str(tmp_path / "out"), "--no-progress"]
    assert "neither a preset (shapes, tiny) nor a config.json" in error_of(capsys, ["--config", "huge", *common])
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"hidden_size": 30, "num_attention_heads": 4}))
    assert "must be divisible by num_attention_heads" in error_of(capsys, ["--config", str(bad), *common])
    assert "there is no checkpoint" in error_of(capsys, ["--config", "tiny", *common, "--resume"])
    assert "neither a checkpoint folder nor a Hub model id" in error_of(
        capsys, ["--from-pretrained", str(tmp_path / "file.txt/x"), *common])
