"""Per-image results and their files (JSONL or CSV), written atomically in input order.

JSONL record (the command-line contract)::

    {"path": "...", "labels": [{"label": "cat", "score": 0.93}, ...], "error": null}

CSV columns: ``path, labels, scores, error`` with ``;``-separated labels and scores.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from iconograph.engine.files import RecordWriter
from iconograph.reading.sources import LABEL_SEPARATOR, SourceError, clean_label
from iconograph.reading.textfiles import read_csv, read_jsonl


class LabelScore(NamedTuple):
    label: str
    score: float


@dataclass(frozen=True)
class Prediction:
    path: str
    labels: tuple[LabelScore, ...] = ()
    error: str | None = None
    box: tuple[float, float, float, float] | None = None  # with --crop: the box the crop came from

    def to_record(self) -> dict:
        record = {
            "path": self.path,
            "labels": [{"label": ls.label, "score": float(ls.score)} for ls in self.labels],
            "error": self.error,
        }
        if self.box is not None:
            record["box"] = [float(v) for v in self.box]
        return record

    @classmethod
    def from_record(cls, record: dict) -> Prediction:
        labels = tuple(LabelScore(str(d["label"]), float(d["score"])) for d in record.get("labels") or [])
        box = record.get("box")
        return cls(str(record["path"]), labels, record.get("error"), tuple(box) if box else None)

    @property
    def label_names(self) -> list[str]:
        return [ls.label for ls in self.labels]


PREDICTION_COLUMNS = ("path", "labels", "scores", "error")


def _csv_row(record: dict) -> list[str]:
    return [
        record["path"],
        LABEL_SEPARATOR.join(d["label"] for d in record["labels"]),
        LABEL_SEPARATOR.join(f"{d['score']:.6g}" for d in record["labels"]),
        record["error"] or "",
    ]


class PredictionWriter(RecordWriter):
    """Predictions as JSONL (a file, or stdout when ``path`` is None) or CSV/TSV, atomically, in order."""

    def __init__(self, path: str | Path | None):
        super().__init__(path, columns=PREDICTION_COLUMNS, csv_row=_csv_row)

    def write(self, prediction: Prediction) -> None:
        super().write(prediction.to_record())


def write_predictions(predictions: Iterable[Prediction], path: str | Path | None) -> PredictionWriter:
    with PredictionWriter(path) as writer:
        writer.write_all(predictions)
    return writer


def read_predictions(path: str | Path) -> list[Prediction]:
    """Read a JSONL or CSV predictions file; a malformed record is a ``SourceError`` naming its line."""
    path = Path(path)
    is_csv = path.suffix.lower() in (".csv", ".tsv")
    rows = read_csv(path) if is_csv else read_jsonl(path)
    convert = _from_csv_row if is_csv else _from_record
    predictions = []
    for number, row in rows:
        try:
            predictions.append(convert(row))
        except (KeyError, TypeError, ValueError) as exc:
            reason = f"no {exc} column" if isinstance(exc, KeyError) else str(exc)
            raise SourceError(f"{path}: line {number}: {reason}") from None
    return predictions


def _from_record(record: dict) -> Prediction:
    labels = record.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(d, dict) and isinstance(d.get("label"), str) for d in labels):
        raise ValueError('\'labels\' must be a list of {"label": text, "score": number}')
    error = record.get("error")
    pairs = tuple(LabelScore(clean_label(d["label"]), _score(d.get("score"))) for d in labels)
    return Prediction(_path(record.get("path")), pairs, None if error is None else str(error))


def _from_csv_row(row: dict) -> Prediction:
    labels = [x for x in (row.get("labels") or "").split(LABEL_SEPARATOR) if x.strip()]
    scores = [x for x in (row.get("scores") or "").split(LABEL_SEPARATOR) if x.strip()]
    if scores and len(scores) != len(labels):
        raise ValueError(f"{len(labels)} labels but {len(scores)} scores")
    pairs = tuple(LabelScore(clean_label(lab), _score(scores[i]) if scores else 1.0) for i, lab in enumerate(labels))
    return Prediction(_path(row["path"]), pairs, row.get("error") or None)


def _path(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("'path' must be a non-empty string")
    return value


def _score(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"score {value!r} is not a number")
    score = float(value)
    if not math.isfinite(score):
        raise ValueError(f"score {value!r} is not a finite number")
    return score
