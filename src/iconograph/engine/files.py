"""Small file helpers: atomic writes and where iconograph keeps its files."""

from __future__ import annotations

import contextlib
import csv
import glob
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
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


@contextlib.contextmanager
def atomic_directory(path: str | Path, earlier_output: Callable[[Path], bool]) -> Iterator[Path]:
    """Build a folder in a temporary sibling and swap it in whole when the block succeeds.

    Of what ``path`` held before, the entries ``earlier_output`` recognises (files an earlier run of
    the same writer made) are dropped, so none survives a re-run; anything else in it (a user's
    file) is moved into the new folder, never deleted. A failed block leaves ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}-", suffix=TMP_SUFFIX, dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)
        if path.is_dir():
            for entry in path.iterdir():
                if not earlier_output(entry) and not (tmp / entry.name).exists():
                    os.replace(entry, tmp / entry.name)
            old = path.with_name(f".{path.name}.{os.getpid()}-old{TMP_SUFFIX}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the temporaries of ``path`` whose writing process is gone (a SIGKILLed run)."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*{TMP_SUFFIX}"):
        pid = tmp.name[len(path.name) + 2 :].partition("-")[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                if tmp.is_dir() and not tmp.is_symlink():
                    shutil.rmtree(tmp)  # a folder of atomic_directory
                else:
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


class RecordWriter:
    """Per-image records (dicts with an ``error`` key), in the order written, as one context::

        with RecordWriter(out, columns=("path", "caption", "error")) as writer:
            for record in records:
                writer.write(record)
        writer.count, writer.failed

    JSONL to ``path``, or to stdout when ``path`` is None; CSV or TSV (by suffix) with a header
    of ``columns`` and one ``csv_row(record)`` per record (default: the columns' values, None as
    empty). A file appears only when the block ends cleanly (:func:`atomic_open`).
    """

    def __init__(self, path: str | Path | None, columns: Sequence[str] = (), csv_row=None):
        self.path = Path(path) if path is not None else None
        self.delimiter = {".csv": ",", ".tsv": "\t"}.get(self.path.suffix.lower()) if self.path else None
        self.columns = tuple(columns)
        self.csv_row = csv_row or (lambda record: ["" if record.get(k) is None else record[k] for k in self.columns])
        self.count = 0
        self.failed = 0
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> RecordWriter:
        if self.path is None:
            self._handle = sys.stdout  # looked up now: a caller may have redirected it
        else:
            newline = "" if self.delimiter else None
            self._handle = self._stack.enter_context(atomic_open(self.path, newline=newline))
        if self.delimiter:
            self._csv = csv.writer(self._handle, delimiter=self.delimiter)
            self._csv.writerow(self.columns)
        return self

    def write(self, record: dict) -> None:
        if self.delimiter:
            self._csv.writerow(self.csv_row(record))
        else:
            self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.count += 1
        self.failed += record.get("error") is not None

    def write_all(self, records: Iterable[dict]) -> RecordWriter:
        for record in records:
            self.write(record)
        return self

    def __exit__(self, *exc_info) -> bool | None:
        return self._stack.__exit__(*exc_info)
