"""Review decisions: an append-only LanceDB log, one commit per decision, folded into labels.

A decision says what a person did to one label of one image:

* ``accept``: the label is right (usually a predicted one);
* ``reject``: the label is wrong;
* ``add``: a label the model did not give is right (optionally with a box);
* ``remove``: take back a label that was accepted or added;
* ``exclude``: the image does not belong in the collection's truth (label ``excluded``);
* ``duplicate``: the image duplicates another (the label is that image's path).

``exclude`` and ``duplicate`` are decisions about the image, not about a label: the audit's review
queues (:mod:`iconograph.search.queues`) write them, and ``export`` leaves such images out of
the truth it writes. ``remove`` on the same label takes either back.

The last decision per (image, label) wins. Every decision is a separate Lance commit made as
soon as it arrives, so a reload or a crash loses nothing that was acknowledged. Lance commits
are optimistic: concurrent writers to one table retry on conflict, but inside one process we
serialise the writes with a lock so that none of them has to.
"""

from __future__ import annotations

import math
import re
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, get_args

import pyarrow as pa

from iconograph.errors import UserError
from iconograph.reading.sources import MAX_LABEL_LENGTH

Action = Literal["accept", "reject", "add", "remove", "exclude", "duplicate"]
ACTIONS: tuple[str, ...] = get_args(Action)
MAX_LABEL_CHARS = MAX_LABEL_LENGTH  # the library's one bound on a label
MAX_REVIEWER_CHARS = 100
# One line of text: no control characters (C0, DEL, C1) and no Unicode line separators. The
# pattern is written for both Python's re and the Rust regex engine that Pydantic uses.
ONE_LINE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$"
_ONE_LINE = re.compile(ONE_LINE_PATTERN)
POSITIVE = frozenset({"accept", "add"})
IMAGE_ACTIONS = frozenset({"exclude", "duplicate"})  # about the image, not one of its labels
EXCLUDED_LABEL = "excluded"
COMPACT_EVERY = 256  # appends between compactions: one fragment per decision otherwise
STATE_TTL = 2.0  # seconds a folded review state is reused when nothing was written


class _Writer:
    """The one writer of a review table in this process: a lock and the last time stamp."""

    def __init__(self):
        self.lock = threading.Lock()
        self.last_ns = 0
        self.appended = 0
        self.state = None  # (appended, monotonic time, folded state)


_WRITERS: dict[str, _Writer] = {}
_WRITERS_GUARD = threading.Lock()


def _writer(key: str) -> _Writer:
    with _WRITERS_GUARD:
        return _WRITERS.setdefault(key, _Writer())


class ReviewError(UserError):
    """A decision that cannot be recorded (unknown action, empty or too long label, bad box)."""


@dataclass(frozen=True)
class Review:
    path: str
    label: str
    action: str
    box: tuple[float, float, float, float] | None = None  # x1, y1, x2, y2 in image pixels
    reviewer: str = ""
    time_ns: int = 0
    id: str = ""

    def validate(self) -> Review:
        if self.action not in ACTIONS:
            raise ReviewError(f"action must be one of {', '.join(ACTIONS)}; got {self.action!r}")
        if not self.label.strip():
            raise ReviewError("a review needs a label")
        _check_text("label", self.label, MAX_LABEL_CHARS)
        _check_text("reviewer", self.reviewer, MAX_REVIEWER_CHARS)
        if not self.path:
            raise ReviewError("a review needs a path")
        if self.box is not None:
            if len(self.box) != 4:
                raise ReviewError("a box is [x1, y1, x2, y2]")
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in self.box):
                raise ReviewError("a box needs four finite numbers")
            x1, y1, x2, y2 = self.box
            if not (x2 > x1 and y2 > y1):
                raise ReviewError("a box needs x2 > x1 and y2 > y1")
        return self

    def to_record(self) -> dict:
        return {
            "id": self.id,
            "path": self.path,
            "label": self.label,
            "action": self.action,
            "box": list(self.box) if self.box is not None else None,
            "reviewer": self.reviewer,
            "time": self.time_ns / 1e9,
        }


def _check_text(what: str, text: str, max_chars: int) -> None:
    if not isinstance(text, str):
        raise ReviewError(f"the {what} must be text")
    if len(text) > max_chars:
        raise ReviewError(f"the {what} is longer than {max_chars} characters")
    if not _ONE_LINE.fullmatch(text):
        raise ReviewError(f"the {what} must be one line without control characters")


@dataclass
class LabelDecision:
    label: str
    action: str
    box: tuple[float, ...] | None
    time_ns: int

    @property
    def positive(self) -> bool:
        return self.action in POSITIVE


@dataclass
class ImageReview:
    """The folded state of one image: the latest decision per label."""

    path: str
    decisions: dict[str, LabelDecision] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        """The labels a person confirmed (accepted or added), in the order first decided."""
        return [d.label for d in self.decisions.values() if d.positive]

    @property
    def excluded(self) -> set[str]:
        return {d.label for d in self.decisions.values() if not d.positive and d.action not in IMAGE_ACTIONS}

    @property
    def image_decision(self) -> LabelDecision | None:
        """The latest exclude/duplicate decision still standing (not taken back with remove)."""
        standing = [d for d in self.decisions.values() if d.action in IMAGE_ACTIONS]
        return max(standing, key=lambda d: d.time_ns) if standing else None


def fold(reviews: Iterable[Review]) -> dict[str, ImageReview]:
    """The latest decision per (path, label), reviews taken in time order."""
    state: dict[str, ImageReview] = {}
    for review in sorted(reviews, key=lambda r: r.time_ns):
        image = state.setdefault(review.path, ImageReview(review.path))
        image.decisions[review.label] = LabelDecision(review.label, review.action, review.box, review.time_ns)
    return state


REVIEW_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("path", pa.string()),
        pa.field("label", pa.string()),
        pa.field("action", pa.string()),
        pa.field("box", pa.list_(pa.float32(), 4)),
        pa.field("reviewer", pa.string()),
        pa.field("time_ns", pa.int64()),
    ]
)


class ReviewLog:
    """The review decisions of one collection (table ``search_reviews_<collection>``)."""

    def __init__(self, store, collection: str):
        self.store = store
        self.collection = collection
        self.name = f"search_reviews_{collection}"
        self._writer = _writer(f"{store.root}/{self.name}")

    @property
    def table(self):
        return self.store.open_table(self.name)

    def record(self, review: Review) -> Review:
        """Validate, stamp (id, strictly increasing time) and commit one decision."""
        review.validate()
        writer = self._writer
        with writer.lock:
            now = max(time.time_ns(), writer.last_ns + 1)
            writer.last_ns = now
            stamped = Review(
                review.path,
                review.label.strip(),
                review.action,
                tuple(float(v) for v in review.box) if review.box is not None else None,
                review.reviewer,
                now,
                uuid.uuid4().hex,
            )
            batch = pa.table(
                {
                    "id": [stamped.id],
                    "path": [stamped.path],
                    "label": [stamped.label],
                    "action": [stamped.action],
                    "box": pa.array([list(stamped.box) if stamped.box else None], pa.list_(pa.float32(), 4)),
                    "reviewer": [stamped.reviewer],
                    "time_ns": pa.array([now], pa.int64()),
                },
                schema=REVIEW_SCHEMA,
            )
            table = self.table or self.store.db.create_table(self.name, schema=REVIEW_SCHEMA, exist_ok=True)
            table.add(batch)
            writer.appended += 1
            if writer.appended % COMPACT_EVERY == 0:
                table.optimize()
        return stamped

    def all(self) -> list[Review]:
        table = self.table
        if table is None:
            return []
        rows = table.to_arrow().to_pylist()
        reviews = [
            Review(
                r["path"],
                r["label"],
                r["action"],
                tuple(r["box"]) if r["box"] is not None else None,
                r["reviewer"] or "",
                int(r["time_ns"]),
                r["id"],
            )
            for r in rows
        ]
        return sorted(reviews, key=lambda r: r.time_ns)

    def for_path(self, path: str) -> list[Review]:
        return [r for r in self.all() if r.path == path]

    def state(self) -> dict[str, ImageReview]:
        """The folded decisions; reused while this process has written nothing new (for at most
        ``STATE_TTL`` seconds, after which commits from other processes are picked up too)."""
        writer = self._writer
        now = time.monotonic()
        cached = writer.state
        if cached is not None and cached[0] == writer.appended and now - cached[1] < STATE_TTL:
            return cached[2]
        appended = writer.appended
        state = fold(self.all())
        writer.state = (appended, now, state)
        return state

    def count(self) -> int:
        table = self.table
        return 0 if table is None else table.count_rows()
