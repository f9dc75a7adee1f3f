"""Small file helpers: atomic writes and where iconograph keeps its files."""

from __future__ import annotations

import contextlib
import csv
import glob
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


TMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_target(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto it only when the block succeeds.

    For writers that want a file name (safetensors, skops, ONNX exporters). The temporary name
    carries this process's id, so a later run can remove what a killed run left behind
    (:func:`remove_stale_temporaries`) without touching a live writer's file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(
    path: str | Path, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None
) -> Iterator[IO]:
    """Write to a temporary file beside ``path`` and rename it into place only on success.

    A reader never sees a half-written file; an interrupted writer leaves the old file intact.
    """
    with (
        atomic_target(path) as tmp,
        open(tmp, mode, encoding=None if "b" in mode else encoding, newline=newline) as handle,
    ):
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the temporaries of ``path`` whose writing process is gone (a SIGKILLed run)."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*{TMP_SUFFIX}"):
        pid = tmp.name[len(path.name) + 2 :].partition("-")[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


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
