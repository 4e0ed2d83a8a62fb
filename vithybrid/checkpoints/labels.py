"""Class names in other languages, for showing to people: ImageNet-1k's (imagenet_labels_{language}.txt beside the
English imagenet_labels.txt, one line per class index) and a checkpoint folder's own (labels_{language}.txt, the
same layout). Teachers correct them there. A model's id2label is never changed: the library and the app's API keep
the checkpoint's labels."""

from __future__ import annotations

from pathlib import Path

from .timm_format import imagenet_labels

HERE = Path(__file__).resolve().parent


def read_names(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]


def translated_labels(id2label: dict[int, str], language: str, folder: str | Path | None = None) -> list[str] | None:
    """One name per class index in `language`, or None where there are none: the checkpoint folder's
    labels_{language}.txt, else ImageNet-1k's translation when id2label is ImageNet-1k's. A file whose line count
    is not the model's number of classes is not used."""
    candidates = [Path(folder) / f"labels_{language}.txt"] if folder is not None else []
    english = imagenet_labels()
    if {int(i): label for i, label in id2label.items()} == english:
        candidates.append(HERE / f"imagenet_labels_{language}.txt")
    for path in candidates:
        if path.is_file():
            names = read_names(path)
            if len(names) == len(id2label) and all(names):
                return names
    return None
