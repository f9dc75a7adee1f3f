"""What a collection is (items: a path, optional truth labels, metadata) and how to read one.

Sources: image files, folders (recursive), ImageFolder trees (label = parent folder name),
CSV/JSONL label files with a ``path`` and an optional ``labels`` column (``;``-separated or a
JSON list), plain ``.txt`` lists of paths, and COCO JSON (its ``images``).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from iconograph.decode import is_image_path

LABEL_SEPARATOR = ";"
TABLE_SUFFIXES = {".csv", ".tsv", ".jsonl", ".ndjson"}
DATASET_SUFFIXES = TABLE_SUFFIXES | {".json", ".txt"}


class SourceError(ValueError):
    """A source that cannot be read at all (missing, unknown format, malformed table)."""


@dataclass(frozen=True)
class Item:
    path: str
    labels: tuple[str, ...] | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)


def read_collection(sources: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Item]:
    """Expand sources, in the order given, into items. Folders are walked in sorted order."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    items: list[Item] = []
    for source in sources:
        items.extend(iter_source(Path(source)))
    return items


def iter_source(source: Path) -> Iterator[Item]:
    if source.is_dir():
        yield from (Item(str(p)) for p in walk_images(source))
    elif source.suffix.lower() in DATASET_SUFFIXES and not is_image_path(source):
        if not source.exists():
            raise SourceError(f"{source}: no such file")
        yield from read_dataset_file(source)
    elif source.exists() or source.is_symlink() or is_image_path(source):
        yield Item(str(source))  # unreadable files become error records downstream
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
        items.append(Item(str(path), (relative.parts[0],)))
    return items


def read_dataset_file(path: Path) -> list[Item]:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return read_table_rows(path, _csv_rows(path, "\t" if suffix == ".tsv" else ","))
    if suffix in (".jsonl", ".ndjson"):
        return read_table_rows(path, _jsonl_rows(path))
    if suffix == ".json":
        return read_coco_images(path)
    return [Item(str(_resolve(path, line.strip()))) for line in path.read_text().splitlines() if line.strip()]


def read_table_rows(path: Path, rows: Iterable[dict]) -> list[Item]:
    items = []
    for number, row in enumerate(rows, start=1):
        if "path" not in row or not row["path"]:
            raise SourceError(f"{path}: row {number} has no 'path'")
        meta = {k: v for k, v in row.items() if k not in ("path", "labels")}
        labels = parse_labels(row["labels"]) if "labels" in row and row["labels"] is not None else None
        items.append(Item(str(_resolve(path, str(row["path"]))), labels, meta))
    return items


def parse_labels(value: str | Sequence[str]) -> tuple[str, ...]:
    """``"eagle; zeus"`` or ``["eagle", "zeus"]`` to ``("eagle", "zeus")``; empty means no labels."""
    parts = value.split(LABEL_SEPARATOR) if isinstance(value, str) else value
    return tuple(p.strip() for p in map(str, parts) if p.strip())


def read_coco_images(path: Path) -> list[Item]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or "images" not in data:
        raise SourceError(f"{path}: a JSON source must be COCO-style, with an 'images' list")
    names = {c["id"]: c["name"] for c in data.get("categories", [])}
    labels: dict[int, set[str]] = {}
    for ann in data.get("annotations", []):
        if ann.get("category_id") in names:
            labels.setdefault(ann["image_id"], set()).add(names[ann["category_id"]])
    return [
        Item(str(_resolve(path, img["file_name"])), tuple(sorted(labels.get(img["id"], ()))), {"coco_id": img["id"]})
        for img in data["images"]
    ]


def _csv_rows(path: Path, delimiter: str) -> Iterator[dict]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        yield from csv.DictReader(handle, delimiter=delimiter)


def _jsonl_rows(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SourceError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None


def _resolve(table: Path, value: str) -> Path:
    """Paths in a label file are relative to the file's folder unless absolute."""
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else table.parent / candidate


def labels_by_path(items: Iterable[Item]) -> dict[str, tuple[str, ...]]:
    """Truth keyed by the resolved path, for matching predictions made from other spellings."""
    return {path_key(item.path): item.labels or () for item in items if item.labels is not None}


def path_key(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))
