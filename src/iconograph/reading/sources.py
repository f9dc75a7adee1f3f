"""What a collection is (items: a path, optional truth labels, metadata) and how to read one.

Sources: image files, folders (recursive), ImageFolder trees (label = parent folder name),
CSV/JSONL label files with a ``path`` and an optional ``labels`` column (``;``-separated or a
JSON list), plain ``.txt`` lists of paths, and COCO JSON (its ``images``). Files are read by
:mod:`iconograph.reading.textfiles` (encodings, strict CSV); labels are checked by :func:`clean_label`.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from iconograph.reading.decode import is_image_path
from iconograph.reading.textfiles import SourceError, read_csv, read_json, read_jsonl, read_lines

LABEL_SEPARATOR = ";"
MAX_LABEL_LENGTH = 200  # characters; the same bound everywhere labels come in (files, CLI, service)
MAX_PATH_LENGTH = 4096
TABLE_SUFFIXES = {".csv", ".tsv", ".jsonl", ".ndjson"}
DATASET_SUFFIXES = TABLE_SUFFIXES | {".json", ".txt"}


@dataclass(frozen=True)
class Item:
    path: str
    labels: tuple[str, ...] | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)


def read_collection(sources: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Item]:
    """Expand sources, in the order given, into items. Folders are walked in sorted order."""
    return [item for _, item in read_located(sources)]


def read_located(
    sources: str | os.PathLike | Iterable[str | os.PathLike], *, image_folders: bool = False
) -> list[tuple[str, Item]]:
    """Items with where each came from (``"t.csv line 3"``, or the image's path), for messages.

    ``image_folders=True`` reads folders as ImageFolder trees (label = first sub-folder).
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    located: list[tuple[str, Item]] = []
    for source in map(Path, sources):
        if image_folders and source.is_dir():
            located.extend((item.path, item) for item in read_image_folder(source))
        else:
            located.extend(iter_source(source))
    return located


def iter_source(source: Path) -> Iterator[tuple[str, Item]]:
    if source.is_dir():
        yield from ((str(p), Item(str(p))) for p in walk_images(source))
    elif source.suffix.lower() in DATASET_SUFFIXES and not is_image_path(source):
        if not source.exists():
            raise SourceError(f"{source}: no such file")
        yield from read_dataset_file(source)
    elif source.exists() or source.is_symlink() or is_image_path(source):
        yield str(source), Item(str(source))  # unreadable files become error records downstream
    else:
        raise SourceError(f"{source}: no such file or folder")


def walk_images(root: Path) -> list[Path]:
    """Image files below ``root`` (recursive, sorted, hidden files and folders skipped)."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        found.extend(Path(folder) / f for f in files if not f.startswith(".") and is_image_path(f))
    return sorted(found)


def read_image_folder(root: str | os.PathLike) -> list[Item]:
    """An ImageFolder tree: every image below ``root/<label>/`` gets ``<label>`` as its label."""
    root = Path(root)
    items = []
    for path in walk_images(root):
        relative = path.relative_to(root)
        if len(relative.parts) < 2:
            raise SourceError(f"{path}: ImageFolder images must sit in a <label>/ folder under {root}")
        try:
            label = clean_label(relative.parts[0])
        except ValueError as exc:
            raise SourceError(f"{path}: folder name {exc}") from None
        items.append(Item(str(path), (label,)))
    return items


def read_dataset_file(path: Path) -> list[tuple[str, Item]]:
    """(``"file line N"``, item) for every row of a CSV/TSV/JSONL/TXT/COCO file."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return read_table_rows(path, read_csv(path, multiline=True))
    if suffix in (".jsonl", ".ndjson"):
        return read_table_rows(path, read_jsonl(path))
    if suffix == ".json":
        return [(f"{path} image id {item.meta['coco_id']}", item) for item in read_coco_images(path)]
    return [
        (f"{path} line {number}", Item(str(_path(path, number, line.strip()))))
        for number, line in read_lines(path)
        if line.strip()
    ]


def read_table_rows(path: Path, rows: Iterable[tuple[int, dict]]) -> list[tuple[str, Item]]:
    items = []
    for number, row in rows:
        if not row.get("path"):
            raise SourceError(f"{path}: line {number} has no 'path'")
        meta = {k: v for k, v in row.items() if k not in ("path", "labels")}
        try:
            labels = None if row.get("labels") is None else parse_labels(row["labels"])
        except ValueError as exc:
            raise SourceError(f"{path}: line {number}: {exc}") from None
        items.append((f"{path} line {number}", Item(str(_path(path, number, row["path"])), labels, meta)))
    return items


def parse_labels(value: str | Sequence[str]) -> tuple[str, ...]:
    """``"eagle; zeus"`` or ``["eagle", "zeus"]`` to ``("eagle", "zeus")``; empty means no labels.

    Anything else (numbers, booleans, objects, nested lists) is a ``ValueError``, as is a label
    :func:`clean_label` refuses.
    """
    if isinstance(value, str):
        parts = value.split(LABEL_SEPARATOR)
    elif isinstance(value, (list, tuple)) and all(isinstance(part, str) for part in value):
        parts = value
    else:
        raise ValueError(f"'labels' must be a ';'-separated string or a list of strings, not {_json_type(value)}")
    return tuple(label for label in map(clean_label, parts) if label)


def clean_label(label: str) -> str:
    """A label without surrounding whitespace; ``ValueError`` for control characters or length."""
    label = label.strip()
    bad = next((c for c in label if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)
    if bad is not None:
        hint = " (an unterminated quote?)" if bad in "\r\n" else ""
        raise ValueError(f"label {_clip(label)!r} contains the control character U+{ord(bad):04X}{hint}")
    if len(label) > MAX_LABEL_LENGTH:
        raise ValueError(f"label {_clip(label)!r} is longer than {MAX_LABEL_LENGTH} characters")
    return label


def _clip(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[:width] + "..."


def _json_type(value) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", dict: "an object", list: "a nested list"}
    return names.get(type(value), type(value).__name__)


def read_coco_images(path: Path) -> list[Item]:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise SourceError(f"{path}: a JSON source must be COCO-style, with an 'images' list")
    try:
        names = {c["id"]: clean_label(c["name"]) for c in data.get("categories", [])}
        labels: dict[int, set[str]] = {}
        for ann in data.get("annotations", []):
            if ann.get("category_id") in names:
                labels.setdefault(ann["image_id"], set()).add(names[ann["category_id"]])
        return [
            Item(
                str(_path(path, None, img["file_name"])),
                tuple(sorted(labels.get(img["id"], ()))),
                {"coco_id": img["id"]},
            )
            for img in data["images"]
        ]
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise SourceError(f"{path}: not a usable COCO file ({detail})") from None


def _path(table: Path, line: int | None, value) -> Path:
    """Paths in a label file are relative to the file's folder unless absolute."""
    where = f"{table}: line {line}" if line else str(table)
    if not isinstance(value, str):
        raise SourceError(f"{where}: 'path' must be a string, not {_json_type(value)}")
    if len(value) > MAX_PATH_LENGTH or any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value):
        raise SourceError(f"{where}: 'path' is not a usable file path (control characters, or too long)")
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else table.parent / candidate


def unique_items(located: Iterable[tuple[str, Item]]) -> list[Item]:
    """The items, checked to name each image (by :func:`path_key`) once: two spellings of one file count."""
    seen: dict[str, str] = {}
    items = []
    for where, item in located:
        key = path_key(item.path)
        if key in seen:
            raise SourceError(f"{_pair(seen[key], where)} name the same image ({item.path}); list each image once")
        seen[key] = where
        items.append(item)
    return items


def _pair(first: str, second: str) -> str:
    file_a, _, line_a = first.partition(" line ")
    file_b, _, line_b = second.partition(" line ")
    if line_a and line_b and file_a == file_b:
        return f"{file_a}: lines {line_a} and {line_b}"
    return f"{first} and {second}"


def labels_by_path(items: Iterable[Item]) -> dict[str, tuple[str, ...]]:
    """Truth keyed by the resolved path, for matching predictions made from other spellings."""
    return {path_key(item.path): item.labels or () for item in items if item.labels is not None}


def path_key(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))
