"""Learn from the reviews (active learning): fit a head on the reviewed labels, re-score the rest.

:func:`learn` takes every reviewed image with exactly one confirmed label (images excluded or
marked as duplicates stay out), fits a head (default ``make_head("logistic")``, L2-normalised
features, ``C = 1``) on the collection's stored vectors (no model runs: seconds), estimates its
accuracy by stratified K-fold cross-validation on those reviews, and scores every unreviewed
image with the head fitted on all of them. The scores go to a LanceDB table beside the
collection (``search_learned_<name>``: path, labels, scores best first) and the figures to the
store's metadata; the ``uncertain`` queue (:mod:`iconograph.search.queues`) then orders the
unreviewed images by the margin of these scores instead of the zero-shot ones.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from iconograph.errors import DataError
from iconograph.search.collection import SearchCollection

FOLDS = 5
SEED = 0
SCORE_BATCH = 4096
TOP = 5  # scores kept per image


@dataclass
class LearnResult:
    head: str
    reviews: int  # reviewed images learned from
    classes: list[str]
    accuracy: float | None  # cross-validated on the reviews; None with too few per class
    folds: int
    scored: int  # unreviewed images re-scored
    seconds: float
    time: float  # when (Unix seconds)

    def summary(self) -> str:
        accuracy = "n/a (a class has fewer than 2 reviews)" if self.accuracy is None else f"{self.accuracy:.3f}"
        return (
            f"learned a {self.head} head on {self.reviews} reviews ({len(self.classes)} classes): "
            f"cross-validated accuracy {accuracy} ({self.folds} folds); "
            f"re-scored {self.scored} unreviewed images in {self.seconds:.1f}s"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def meta_name(collection: SearchCollection) -> str:
    return f"search_learned_{collection.name}"


def learn(collection: SearchCollection, *, head: str = "logistic", folds: int = FOLDS, **head_params) -> LearnResult:
    """Fit ``head`` on the reviewed labels, cross-validate it, re-score the unreviewed images."""
    from sklearn.model_selection import StratifiedKFold

    from iconograph.learning.heads import make_head

    started = time.perf_counter()
    collection.require()
    views = collection.items()
    reviewed = [v for v in views if v.reviewed and not v.excluded and not v.duplicate_of]
    labelled = [(v.path, v.confirmed_labels()) for v in reviewed]
    labelled = [(p, labels[0]) for p, labels in labelled if len(labels) == 1]
    classes = sorted({label for _, label in labelled})
    if len(classes) < 2:
        raise DataError(
            f"learning needs reviewed images of at least two labels (one confirmed label each); "
            f"found {len(labelled)} image(s) with {len(classes)} label(s)"
        )
    found = collection.vectors.vectors_for([p for p, _ in labelled])
    X = np.stack([found[p] for p, _ in labelled]).astype(np.float32)
    y = np.array([label for _, label in labelled], dtype=object).astype(str)
    params = {"C": 1.0, **head_params} if head == "logistic" else dict(head_params)
    rarest = min(int((y == c).sum()) for c in classes)
    accuracy, used = None, 0
    if rarest >= 2:
        used = min(folds, rarest)
        correct = 0
        for train, test in StratifiedKFold(n_splits=used, shuffle=True, random_state=SEED).split(X, y):
            model = make_head(head, **params).fit(X[train], y[train])
            correct += int((np.asarray(model.predict(X[test])).astype(str) == y[test]).sum())
        accuracy = correct / len(y)
    model = make_head(head, **params).fit(X, y)
    names = [str(c) for c in model.classes_]
    done = {v.path for v in views if v.reviewed}
    paths, labels, scores = [], [], []
    lance = collection.vectors.table.to_lance()
    for batch in lance.to_batches(columns=["path", "vector"], batch_size=SCORE_BATCH):
        batch_paths = batch.column("path").to_pylist()
        keep = [i for i, p in enumerate(batch_paths) if p not in done]
        if not keep:
            continue
        column = batch.column("vector")
        matrix = column.values.to_numpy(zero_copy_only=False).reshape(len(batch_paths), column.type.list_size)
        probs = np.asarray(model.predict_proba(matrix[keep]))
        order = np.argsort(-probs, axis=1)[:, :TOP]
        for row, i in enumerate(keep):
            paths.append(batch_paths[i])
            labels.append([names[c] for c in order[row]])
            scores.append([float(probs[row, c]) for c in order[row]])
    table = pa.table(
        {
            "path": pa.array(paths, pa.string()),
            "labels": pa.array(labels, pa.list_(pa.string())),
            "scores": pa.array(scores, pa.list_(pa.float32())),
        }
    )
    collection.store.db.create_table(meta_name(collection), table, mode="overwrite")
    result = LearnResult(
        head, len(labelled), classes, accuracy, used, len(paths), time.perf_counter() - started, time.time()
    )
    collection.store.write_meta(meta_name(collection), result.to_dict())
    return result


def last_learned(collection: SearchCollection) -> dict | None:
    """The figures of the collection's last :func:`learn`, or None."""
    return collection.store.read_meta(meta_name(collection))


def learned_scores(collection: SearchCollection) -> dict[str, tuple[list[str], list[float]]]:
    """path -> (labels, scores) of the last :func:`learn` (empty before any)."""
    if last_learned(collection) is None:
        return {}
    table = collection.store.open_table(meta_name(collection))
    if table is None:
        return {}
    rows = table.to_arrow()
    return {
        p: (list(lab), [float(s) for s in sc])
        for p, lab, sc in zip(
            rows.column("path").to_pylist(), rows.column("labels").to_pylist(), rows.column("scores").to_pylist()
        )
    }


def learn_collection(collection: str, *, store=None, head: str = "logistic", folds: int = FOLDS) -> LearnResult:
    """``iconograph learn COLLECTION``."""
    return learn(SearchCollection(collection, store), head=head, folds=folds)
