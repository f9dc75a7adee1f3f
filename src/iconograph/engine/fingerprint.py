"""Content fingerprints for models and preprocessing: what the model caches (embeddings,
detections, captions) are keyed by.

A weights file is hashed once; its digest is remembered by (path, size, mtime) in a small JSON
file so that a second run does not read hundreds of megabytes again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

from iconograph.engine.files import atomic_write_text, user_cache_dir

FINGERPRINT_VERSION = "1"  # bump when what a fingerprint covers changes
_SKIPPED_NAMES = {"README.md", ".gitattributes", "LICENSE", "LICENSE.txt"}
_lock = threading.Lock()


def digest(*parts: object) -> str:
    """A short stable hex digest of JSON-serialisable parts."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def file_digest(path: str | Path) -> str:
    path = Path(path).resolve()
    stat = path.stat()
    # ctime and inode change on every rewrite or replacement, even one within the mtime tick
    memo_key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}|{stat.st_ino}"
    memo = _load_memo()
    if memo_key in memo:
        return memo[memo_key]
    hasher = hashlib.blake2b(digest_size=16)
    with path.open("rb") as handle:
        while chunk := handle.read(8 << 20):
            hasher.update(chunk)
    value = hasher.hexdigest()
    _remember(memo_key, value)
    return value


def remembered(key: str, compute: Callable[[], str], memo: str = "file-digests.json") -> str:
    """``compute()``, remembered under ``key`` in a small JSON file in the user cache folder.

    For facts that are slow to find out and fixed by what ``key`` names (a file's digest by its
    path, size and times; the image processor class transformers picks for a model folder by the
    folder's digest and the installed versions).
    """
    known = _load_memo(memo)
    if key in known:
        return known[key]
    value = compute()
    _remember(key, value, memo)
    return value


def installed_versions(*distributions: str) -> dict[str, str | None]:
    """The installed version of each distribution (None when absent), read without importing it."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for name in distributions:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _remember(key: str, value: str, memo: str = "file-digests.json") -> None:
    with _lock:
        known = _load_memo(memo)
        known[key] = value
        atomic_write_text(_memo_path(memo), json.dumps(known))


def directory_digest(directory: str | Path) -> str:
    """Digest of every file in a model folder (names and contents), recursively."""
    directory = Path(directory)
    entries = sorted(
        (str(p.relative_to(directory)), file_digest(p))
        for p in directory.rglob("*")
        if p.is_file() and p.name not in _SKIPPED_NAMES and ".git" not in p.parts and ".cache" not in p.parts
    )
    return digest(FINGERPRINT_VERSION, entries)


def _memo_path(memo: str = "file-digests.json") -> Path:
    return user_cache_dir() / memo


def _load_memo(memo: str = "file-digests.json") -> dict:
    try:
        return json.loads(_memo_path(memo).read_text())
    except (OSError, ValueError):
        return {}


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}
