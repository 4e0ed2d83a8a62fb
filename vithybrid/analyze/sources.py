"""What to explain: an image folder (searched recursively), a glob pattern, or a CSV/Parquet table with a
`path` column, turned into rows {"path", "label", "bbox"}.

Table columns: `path` (required; relative paths are relative to the table's folder), `label` (optional: the
true class name, as in the model's id2label) and `bbox` (optional: [x0, y0, x1, y1] in the photo file's
pixels, x0 < x1 and y0 < y1; in a CSV written as "x0 y0 x1 y1", "x0,y0,x1,y1" or a JSON list; empty: none).
Paths are stored absolute, so that a resumed run or a Ray worker finds the same file under the same name, but
otherwise as given: links and ".." are not resolved (the rows and the report name what the user named, not where
a link leads). A folder or glob search leaves out links that lead outside the folder searched (or the glob's
fixed leading folder), unless `follow_symlinks`; links to folders are not searched (rglob). A table's paths are
read as listed.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
from PIL import Image

IMAGE_SUFFIXES = frozenset(suffix for suffix, kind in Image.registered_extensions().items()
                           if kind in Image.OPEN)  # whatever Pillow can open: .jpg, .png, .webp, .tif, ...
TABLE_SUFFIXES = (".csv", ".parquet")
SOURCE_SCHEMA = pa.schema([("path", pa.string()), ("label", pa.string()), ("bbox", pa.list_(pa.float64()))])


class SourceError(ValueError):
    """A source that cannot be explained; the message says why, in one line."""


def is_table(source: str) -> bool:
    return Path(source).suffix.lower() in TABLE_SUFFIXES and Path(source).is_file()


def read_source(source: str, follow_symlinks: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """The rows to explain, normalized (`normalize`), and the files a search left out because they are links to
    outside the folder searched (none with `follow_symlinks`). Raises SourceError."""
    if is_table(source):
        return normalize(read_table(source), Path(source).parent), []
    if Path(source).is_dir():
        root = Path(source)
        paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            empty = not any(root.iterdir())
            raise SourceError(f"{source} is an empty folder" if empty else
                              f"{source} holds no image files (no JPEG, PNG, WebP, ... by its name)")
    else:
        root = glob_root(source)
        paths = sorted(Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file())
        if not paths:
            raise SourceError(f"{source} is not a folder, a CSV/Parquet file, or a glob that matches any file")
    outside = [] if follow_symlinks else [p for p in paths if not leads_inside(p, root)]
    kept = [str(p) for p in paths if p not in set(outside)]
    if not kept:
        raise SourceError(f"{source} holds only links to files outside it; pass --follow-symlinks to read them")
    return normalize(pd.DataFrame({"path": kept}), Path(".")), [str(p) for p in outside]


def glob_root(pattern: str) -> Path:
    """The folder a glob searches: its leading parts without wildcards."""
    parts = Path(pattern).parts[:-1]
    return Path(*itertools.takewhile(lambda part: not glob.has_magic(part), parts)) if parts else Path(".")


def leads_inside(path: Path, root: Path) -> bool:
    """Whether `path`, with every link on the way followed, is in `root` (with its links followed)."""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))


def read_table(source: str) -> pd.DataFrame:
    try:
        table = pd.read_csv(source) if source.lower().endswith(".csv") else pd.read_parquet(source)
    except Exception as error:  # noqa: BLE001 - pandas and pyarrow raise many kinds for a malformed file
        raise SourceError(f"cannot read the table {source}: {str(error).splitlines()[0]}") from None
    if "path" not in table.columns:
        columns = ", ".join(map(str, table.columns))
        raise SourceError(f"the table {source} has no 'path' column (its columns: {columns})")
    if table.empty:
        raise SourceError(f"the table {source} has no rows")
    return table


def normalize(table: pd.DataFrame, base: Path) -> pd.DataFrame:
    """Absolute paths (links and ".." kept as given), labels as strings, boxes as [x0, y0, x1, y1] floats;
    missing columns as None. A malformed box raises SourceError naming its row."""
    paths = [str((base / str(p)).absolute()) for p in table["path"]]
    labels = [None if pd.isna(v) else str(v) for v in table["label"]] if "label" in table else None
    boxes = [parse_box(v, path) for v, path in zip(table["bbox"], table["path"])] if "bbox" in table else None
    # object columns: pandas 3's str dtype would turn a missing label back into NaN
    return pd.DataFrame({"path": paths, "label": labels, "bbox": boxes}, dtype=object)


def parse_box(value, path) -> list[float] | None:
    if value is None or (isinstance(value, float) and pd.isna(value)) or (isinstance(value, str) and not value.strip()):
        return None
    try:
        numbers = [float(v) for v in (json.loads(value) if value.strip().startswith("[") else
                                      re.split(r"[\s,;]+", value.strip()))] if isinstance(value, str) else \
            [float(v) for v in value]
    except (ValueError, TypeError):
        numbers = []
    if len(numbers) != 4 or not (numbers[0] < numbers[2] and numbers[1] < numbers[3]):
        raise SourceError(f"the bbox of {path} is {value!r}; expected [x0, y0, x1, y1] with x0 < x1 and y0 < y1")
    return numbers
