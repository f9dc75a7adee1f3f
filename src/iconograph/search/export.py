"""Reviewed labels out of the store: truth files for ``evaluate``/``train``, corrected predictions.

* :func:`export_reviews`: one row per reviewed image, ``path,labels`` with the labels a person
  accepted or added (``;``-separated in CSV, a list in JSONL) — what
  :func:`iconograph.evaluation.metrics.read_truth` and :func:`iconograph.reading.sources.read_collection` read.
  ``include_predicted=True`` also keeps predicted labels that nobody rejected or removed.
  Images a reviewer excluded or marked as a duplicate are left out.
* :func:`export_predictions`: every indexed image in the classify contract, predictions
  corrected by review (confirmed labels score 1.0, rejected/removed ones dropped). Images a
  reviewer excluded are left out; duplicates stay (they are still images of the collection).
"""

from __future__ import annotations

from pathlib import Path

from iconograph.classification.results import write_predictions
from iconograph.engine.files import RecordWriter
from iconograph.errors import OptionError
from iconograph.reading.sources import LABEL_SEPARATOR


def export_reviews(collection, out: str | Path, *, include_predicted: bool = False) -> int:
    """Write the reviewed images' labels; returns the number of rows."""
    out = Path(out)
    if out.suffix.lower() not in (".jsonl", ".ndjson", ".csv", ".tsv"):
        raise OptionError(f"{out}: reviewed labels can be written as .csv, .tsv or .jsonl")
    with RecordWriter(out, columns=("path", "labels"), csv_row=_labels_row) as writer:
        for view in collection.items(reviewed=True):
            if view.excluded or view.duplicate_of:  # out of the truth (review queues)
                continue
            labels = view.effective_labels() if include_predicted else view.confirmed_labels()
            writer.write({"path": view.path, "labels": labels})
    return writer.count


def _labels_row(record: dict) -> list[str]:
    return [record["path"], LABEL_SEPARATOR.join(record["labels"])]


def export_predictions(collection, out: str | Path) -> int:
    """Write every image's review-corrected prediction (JSONL or CSV by suffix), excluded images
    left out."""
    views = (view for view in collection.items() if not view.excluded)
    writer = write_predictions((view.corrected_prediction() for view in views), out)
    return writer.count
