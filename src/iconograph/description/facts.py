"""What is known about an item: catalogue attributes, tags and a caption, gathered by image path.

Attribute columns keep their names; the common ones (in English or German) are also available
under a role name for the templates: ``title``, ``category``, ``brand``, ``colour``, ``material``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from iconograph.reading.sources import Item, parse_labels, path_key, read_collection

ROLES = {
    "title": ("title", "name", "product", "product name", "titel", "produkt", "produktname", "bezeichnung", "artikel"),
    "category": ("category", "type", "product type", "kategorie", "art", "typ", "produktart", "warengruppe"),
    "brand": ("brand", "manufacturer", "maker", "marke", "hersteller"),
    "colour": ("colour", "color", "farbe"),
    "material": ("material", "upper material", "fabric", "obermaterial", "stoff"),
}
TAG_COLUMNS = ("tags", "labels", "schlagworte")
CAPTION_COLUMNS = ("caption", "bildbeschreibung")


@dataclass(frozen=True)
class ItemFacts:
    path: str
    attributes: dict[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    caption: str | None = None

    def _role(self, role: str) -> str | None:
        for name, value in self.attributes.items():
            if name.strip().lower().replace("_", " ") in ROLES[role] and _text(value):
                return _text(value)
        return None

    @property
    def title(self) -> str | None:
        return self._role("title")

    @property
    def category(self) -> str | None:
        return self._role("category")

    @property
    def brand(self) -> str | None:
        return self._role("brand")

    @property
    def colour(self) -> str | None:
        return self._role("colour")

    @property
    def material(self) -> str | None:
        return self._role("material")

    @property
    def details(self) -> dict[str, str]:
        """Attributes that have no role (shown by name)."""
        known = {alias for aliases in ROLES.values() for alias in aliases}
        return {
            k: _text(v)
            for k, v in self.attributes.items()
            if k.strip().lower().replace("_", " ") not in known and _text(v)
        }

    @property
    def empty(self) -> bool:
        return not (self.attributes or self.tags or self.caption)


def _text(value) -> str | None:
    """A value as trimmed text; None when it is None or blank (an ItemFacts made by hand may hold either)."""
    text = "" if value is None else str(value).strip()
    return text or None


def gather_facts(
    items: Sequence[Item],
    *,
    attributes: str | os.PathLike | None = None,
    tags: str | os.PathLike | Mapping[str, Sequence[str]] | None = None,
    captions: str | os.PathLike | Mapping[str, str] | None = None,
    min_tag_score: float = 0.0,
) -> list[ItemFacts]:
    """Facts for each item: its own table columns, then the attributes file's row for its path,
    tags from a classify output (labels scoring at least ``min_tag_score``) or a ``tags`` column,
    the caption from a caption output or a ``caption`` column."""
    rows = _attribute_rows(attributes) if attributes is not None else {}
    tag_map = _tag_map(tags, min_tag_score) if tags is not None else {}
    caption_map = _caption_map(captions) if captions is not None else {}
    facts = []
    for item in items:
        key = path_key(item.path)
        row_labels, row_meta = rows.get(key, (None, {}))
        values = {**_clean(item.meta), **_clean(row_meta)}
        found_tags = list(tag_map.get(key, ()))
        for labels in (item.labels, row_labels):
            found_tags += list(labels or ())
        for column in [c for c in values if c.lower() in TAG_COLUMNS]:
            found_tags += parse_labels(values.pop(column))
        caption = caption_map.get(key)
        for column in [c for c in values if c.lower() in CAPTION_COLUMNS]:
            caption = caption or values[column]
            values.pop(column)
        facts.append(ItemFacts(item.path, values, tuple(dict.fromkeys(found_tags)), caption))
    return facts


def _clean(meta: Mapping) -> dict[str, str]:
    return {str(k).strip(): str(v).strip() for k, v in meta.items() if k and v is not None and str(v).strip()}


def _attribute_rows(path) -> dict[str, tuple]:
    return {path_key(item.path): (item.labels, item.meta) for item in read_collection(path)}


def _tag_map(tags, min_score: float) -> dict[str, tuple[str, ...]]:
    if isinstance(tags, Mapping):
        return {path_key(k): tuple(v) for k, v in tags.items()}
    from iconograph.classification.results import read_predictions

    return {
        path_key(p.path): tuple(ls.label for ls in p.labels if ls.score >= min_score)
        for p in read_predictions(tags)
        if p.error is None
    }


def _caption_map(captions) -> dict[str, str]:
    if isinstance(captions, Mapping):
        return {path_key(k): v for k, v in captions.items()}
    from iconograph.description.captions import read_captions

    return read_captions(captions)
