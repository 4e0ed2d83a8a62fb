"""Class names in Arabic: ImageNet-1k's 1000 (one line per class index, correctable by a teacher) and the shapes
model's five; shown in an Arabic session, the checkpoint's own labels after them, and never in the API or library."""

import re

import pytest

from helpers import tiny_checkpoint
from vithybrid.checkpoints.labels import HERE, read_names, translated_labels
from vithybrid.checkpoints.timm_format import imagenet_labels

ARABIC = re.compile(r"[\u0600-\u06FF]")
LATIN = re.compile(r"[A-Za-z]")


@pytest.mark.parametrize("path, count", [(HERE / "imagenet_labels_ar.txt", 1000),
                                         (HERE / "models" / "shapes" / "labels_ar.txt", 5)])
def test_every_class_has_one_arabic_name_of_its_own(path, count):
    names = read_names(path)
    assert len(names) == count, f"{path.name}: {len(names)} lines, one per class expected"
    missing = [i for i, name in enumerate(names) if not ARABIC.search(name) or LATIN.search(name)]
    assert not missing, f"lines without an Arabic name (or with Latin letters): {[i + 1 for i in missing][:10]}"
    duplicates = {name for name in names if names.count(name) > 1}
    assert not duplicates, f"names given to two classes: {sorted(duplicates)[:10]}"


def test_translations_are_found_for_imagenet_and_for_a_folder_of_its_own(tmp_path):
    assert translated_labels(imagenet_labels(), "ar")[1] == read_names(HERE / "imagenet_labels_ar.txt")[1]
    assert translated_labels(imagenet_labels(), "fr") is None  # no such file
    five = {i: f"LABEL_{i}" for i in range(5)}
    assert translated_labels(five, "ar", tmp_path) is None  # neither ImageNet's labels nor a file of its own
    (tmp_path / "labels_ar.txt").write_text("أ\nب\nج\nد\n", encoding="utf-8")  # a line short: not used
    assert translated_labels(five, "ar", tmp_path) is None
    (tmp_path / "labels_ar.txt").write_text("أ\nب\nج\nد\nه\n", encoding="utf-8")
    assert translated_labels(five, "ar", tmp_path) == ["أ", "ب", "ج", "د", "ه"]


def test_an_arabic_session_names_imagenet_classes_in_arabic_then_english(tmp_path):
    """A random checkpoint with ImageNet-1k's labels: the top-5 and the class pickers in Arabic with the English
    label after each; the library's answer keeps the checkpoint's labels."""
    from explorer import Explorer, WorkQueue
    from ui.header import labels_shown
    from ui.page import top_choices
    from vithybrid.training.shapes import sample

    labels = imagenet_labels()
    folder = tiny_checkpoint(tmp_path / "imagenet", num_labels=1000, id2label=labels,
                             label2id={v: k for k, v in labels.items()})
    explorer = Explorer(str(folder), fallback=False, queue=WorkQueue())
    photo = sample(seed=3, index=0, size=96).image
    analysis = explorer.analysis(photo)
    arabic = read_names(HERE / "imagenet_labels_ar.txt")
    shown = labels_shown(explorer, analysis.top, "ar")
    assert list(shown) == [f"{arabic[i]} ({labels[i]})" for i, _, _ in analysis.top]
    assert list(labels_shown(explorer, analysis.top, "en")) == [labels[i] for i, _, _ in analysis.top]
    assert [name for name, _ in top_choices(explorer, analysis, "ar")][0].startswith(arabic[analysis.top[0][0]])
    assert set(explorer.classify(photo)) <= set(labels.values())  # the library's own: English
