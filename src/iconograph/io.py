"""Small file helpers: atomic writes and where iconograph keeps its files."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

_UMASK = os.umask(0)  # read once, at import: os.umask can only be read by setting it
os.umask(_UMASK)


def user_cache_dir() -> Path:
    """``$ICONOGRAPH_HOME`` or ``~/.cache/iconograph``: the default store and small memos."""
    root = os.environ.get("ICONOGRAPH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "iconograph"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_open(
    path: str | Path, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None
) -> Iterator[IO]:
    """Write to a temporary file beside ``path`` and rename it into place only on success.

    A reader never sees a half-written file; an interrupted writer leaves the old file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding, newline=newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path) as handle:
        handle.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_records(records: Iterable[dict], path: str | Path, columns: Sequence[str]) -> tuple[int, int]:
    """Per-item records (each with an ``error`` key) as JSONL, or CSV with ``columns`` when the
    suffix is ``.csv``, atomically; returns (count, failed)."""
    path = Path(path)
    count = failed = 0
    is_csv = path.suffix.lower() == ".csv"
    with atomic_open(path, newline="" if is_csv else None) as handle:
        writer = csv.writer(handle) if is_csv else None
        if writer:
            writer.writerow(columns)
        for record in records:
            count += 1
            failed += record.get("error") is not None
            if writer:
                writer.writerow(["" if record.get(k) is None else record[k] for k in columns])
            else:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return count, failed
