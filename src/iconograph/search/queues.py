"""Review queues of a collection, and the decisions a reviewer takes on them.

Queues (each an ordered list of item records with a ``finding``):

- ``uncertain``: unreviewed images, most uncertain first: the smallest margin between the two
  best class probabilities of the head learned from the reviews (:mod:`iconograph.search.active`),
  or before any learning of the zero-shot scores the collection was tagged with;
- ``suspect``: suspect labels of the collection's last audit (``iconograph audit --collection
  NAME --truth T``), lowest label quality first;
- ``duplicates``: every member of each duplicate cluster but its representative;
- ``outliers``: isolated images and quality flags.

An image leaves a queue once it has any review. Decisions go to the collection's review log
(what ``export`` reads): ``keep`` accepts the labels (the given label for a suspect one),
``relabel`` rejects the labels and adds the new one, ``duplicate`` and ``exclude`` record that
the image duplicates another or does not belong (``export`` leaves it out of the truth).
"""

from __future__ import annotations

from iconograph.search.collection import ItemView, SearchCollection
from iconograph.search.reviews import EXCLUDED_LABEL, Review, ReviewError

QUEUES = ("uncertain", "suspect", "duplicates", "outliers")
DECISIONS = ("keep", "relabel", "duplicate", "exclude")


def margin(scores) -> float:
    """Best minus second-best score (a missing second counts 0); 1.0 without scores."""
    ranked = sorted((float(s) for s in scores), reverse=True)
    if not ranked:
        return 1.0
    return ranked[0] - (ranked[1] if len(ranked) > 1 else 0.0)


def review_queue(collection: SearchCollection, kind: str) -> list[dict]:
    """The queue ``kind`` (one of :data:`QUEUES`): item records, each with its ``finding``."""
    from iconograph.auditing.run import load_findings
    from iconograph.search.active import learned_scores

    if kind not in QUEUES:
        raise ReviewError(f"queues are {', '.join(QUEUES)}; not {kind!r}")
    views = {v.path: v for v in collection.items()}
    open_ = {p: v for p, v in views.items() if not v.reviewed}
    if kind == "uncertain":
        learned = learned_scores(collection)
        rows = []
        for path, view in open_.items():
            if path in learned:
                labels, scores = learned[path]
                finding = {"margin": round(margin(scores), 6), "by": "learned head", "suggested": labels[0]}
            else:
                scores = [lv.score for lv in view.labels if lv.score is not None]
                best = view.labels[0].label if view.labels else None
                finding = {"margin": round(margin(scores), 6), "by": "zero-shot", "suggested": best}
            rows.append((finding["margin"], path, finding))
        rows.sort(key=lambda r: (r[0], r[1]))
        return [_record(open_[path], finding) for _, path, finding in rows]
    findings = load_findings(collection)
    records = []
    if kind == "suspect":
        for issue in findings["label_issues"]:
            if issue["path"] in open_:
                records.append(_record(open_[issue["path"]], {k: v for k, v in issue.items() if k != "path"}))
    elif kind == "duplicates":
        for cluster in findings["duplicates"]:
            for path in cluster["paths"]:
                if path != cluster["representative"] and path in open_:
                    finding = {
                        "duplicate_of": cluster["representative"],
                        "tier": cluster["tier"],
                        "score": cluster["score"],
                        "cluster": cluster["paths"],
                    }
                    records.append(_record(open_[path], finding))
    else:
        for outlier in findings["outliers"]:
            if outlier["path"] in open_:
                finding = {"reasons": outlier["reasons"], "knn_distance": outlier.get("knn_distance")}
                records.append(_record(open_[outlier["path"]], finding))
    return records


def _record(view: ItemView, finding: dict) -> dict:
    return {**view.to_record(), "finding": finding}


def decide(
    collection: SearchCollection,
    path: str,
    decision: str,
    *,
    label: str | None = None,
    duplicate_of: str | None = None,
    reviewer: str = "",
) -> list[Review]:
    """Record a queue decision on one image as review-log entries (returned, as stored)."""
    if decision not in DECISIONS:
        raise ReviewError(f"decisions are {', '.join(DECISIONS)}; not {decision!r}")
    view = collection.item(path)
    predicted = {lv.label for lv in view.labels if lv.score is not None}
    effective = view.effective_labels()
    reviews: list[Review] = []
    if decision == "keep":
        keep = [label] if label else effective[:1]  # the best label (accept keys do several)
        if not keep:
            raise ReviewError(f"{view.path} has no label to keep; relabel it instead")
        reviews = [Review(view.path, x, "accept" if x in predicted else "add", reviewer=reviewer) for x in keep]
    elif decision == "relabel":
        if not label or not label.strip():
            raise ReviewError("relabel needs the new label")
        label = label.strip()
        reviews = [Review(view.path, x, "reject", reviewer=reviewer) for x in effective if x != label]
        reviews.append(Review(view.path, label, "accept" if label in predicted else "add", reviewer=reviewer))
    elif decision == "duplicate":
        if not duplicate_of:
            raise ReviewError("duplicate needs the image it duplicates")
        other = collection.key(duplicate_of)
        if other == view.path:
            raise ReviewError("an image is no duplicate of itself")
        reviews = [Review(view.path, other, "duplicate", reviewer=reviewer)]
    else:
        reviews = [Review(view.path, EXCLUDED_LABEL, "exclude", reviewer=reviewer)]
    for review in reviews:
        review.validate()
    return [collection.review(review) for review in reviews]
