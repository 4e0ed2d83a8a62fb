"""Writing output files whole, safely in folders others can write to: every file is written to a temporary file
created exclusively in the target's folder (a new, unguessable name; O_EXCL never follows a link planted there,
and never opens an existing file), then renamed over the target. Readers see the old file or the new one, never
half of one, and nothing is ever written through a path that someone else prepared."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def create_temporary(folder: Path, stem: str) -> tuple[int, Path]:
    """A new empty file `.STEM.RANDOM.tmp` in `folder` (hidden: readers of a dataset folder skip names starting
    with "."), opened for writing: (descriptor, path). Permissions as for any new file (0666 less the umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    while True:
        path = Path(folder) / f".{stem}.{secrets.token_hex(8)}.tmp"
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:  # 64 random bits taken already: only by chance, so try another
            continue


@contextmanager
def replacing(path: str | Path, mode: str = "wb", **open_options) -> Iterator[IO]:
    """A file object whose contents become `path` when the block ends without an exception (written to an
    exclusive temporary file beside it, then renamed over it); on an exception the temporary file is removed and
    `path` is left as it was."""
    path = Path(path)
    fd, temporary = create_temporary(path.parent, path.name)
    try:
        with os.fdopen(fd, mode, **open_options) as file:
            yield file
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """`path` holds `text` (UTF-8), written whole through `replacing`."""
    with replacing(path, "w", encoding="utf-8") as file:
        file.write(text)


def check_writable(folder: str | Path) -> None:
    """OSError unless a new file can be created in `folder` (one is created exclusively and removed)."""
    fd, temporary = create_temporary(Path(folder), "write-test")
    os.close(fd)
    temporary.unlink()
