"""Outliers: images far from the rest in embedding space, and images of poor quality.

Embedding outliers (reason ``isolated``): an image's ``knn_distance`` is its mean cosine distance
(1 - cosine) to its :data:`OUTLIER_K` nearest other images; it is flagged above the robust
threshold ``median + OUTLIER_MADS * 1.4826 * MAD`` of those distances over the collection (MAD:
the median absolute deviation; 1.4826 scales it to a standard deviation for normal data). Needs at
least :data:`MIN_IMAGES` embedded images.

Quality flags (measures from :mod:`iconograph.auditing.images`, on the image shrunk to at most
512 px a side):

- ``tiny``: shorter side below :data:`TINY_SIDE` px (of the full image);
- ``blurred``: variance of the Laplacian of the luminance below :data:`BLUR_VARIANCE`
  (not flagged on near-empty images, which have no edges to be sharp);
- ``dark`` / ``bright``: mean luminance below :data:`DARK` / above :data:`BRIGHT`;
- ``near-empty``: luminance standard deviation below :data:`EMPTY_CONTRAST`;
- ``grayscale``: no pixel's channels differ by :data:`GRAY_DIFFERENCE` or more.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from iconograph.auditing.defaults import (
    BLUR_VARIANCE,
    BRIGHT,
    DARK,
    EMPTY_CONTRAST,
    GRAY_DIFFERENCE,
    MIN_IMAGES,
    OUTLIER_K,
    OUTLIER_MADS,
    TINY_SIDE,
)
from iconograph.auditing.images import ImageFacts
from iconograph.auditing.neighbours import knn_self_join

QUALITY_REASONS = ("tiny", "blurred", "dark", "bright", "near-empty", "grayscale")


def quality_reasons(facts: ImageFacts) -> list[str]:
    m, (width, height) = facts.measures, facts.size
    reasons = []
    if min(width, height) < TINY_SIDE:
        reasons.append("tiny")
    empty = m["contrast"] < EMPTY_CONTRAST
    if m["sharpness"] < BLUR_VARIANCE and not empty:
        reasons.append("blurred")
    if m["luminance"] < DARK:
        reasons.append("dark")
    if m["luminance"] > BRIGHT:
        reasons.append("bright")
    if empty:
        reasons.append("near-empty")
    if m["colour"] < GRAY_DIFFERENCE:
        reasons.append("grayscale")
    return reasons


def knn_distances(vectors: np.ndarray | None, k: int = OUTLIER_K, knn=None):
    """Mean cosine distance of each row to its ``k`` nearest other rows, and those neighbours
    (``knn``: the self-join already computed, at least ``k`` wide)."""
    indices, sims = knn_self_join(vectors, k) if knn is None else (knn[0][:, :k], knn[1][:, :k])
    found = indices >= 0  # -1: no neighbour there (the index path, around failed images)
    mean = np.where(found, sims, 0).sum(axis=1) / np.maximum(found.sum(axis=1), 1)
    return 1.0 - mean, indices, sims


def robust_threshold(values: np.ndarray, mads: float = OUTLIER_MADS) -> float:
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median)))
    return median + mads * 1.4826 * mad


def find_outliers(
    facts: Sequence[ImageFacts],
    vectors: np.ndarray | None = None,
    *,
    k: int = OUTLIER_K,
    mads: float = OUTLIER_MADS,
    neighbours: int = 3,
    knn: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[list[dict], float | None]:
    """One record per flagged image ``{"path", "reasons", "knn_distance", "measures",
    "neighbours"}`` (most isolated first, then quality-only flags in input order), and the
    ``knn_distance`` threshold used (None when there were too few embeddings)."""
    good = [i for i, f in enumerate(facts) if f.error is None]
    distance: dict[int, float] = {}
    near: dict[int, list[dict]] = {}
    threshold = None
    if (vectors is not None or knn is not None) and len(good) >= MIN_IMAGES:
        dist, indices, sims = knn_distances(None if knn is not None else np.asarray(vectors)[good], k, knn)
        threshold = robust_threshold(dist, mads)
        for row, i in enumerate(good):
            distance[i] = float(dist[row])
            near[i] = [
                {"path": facts[good[j]].path, "similarity": round(float(s), 6)}
                for j, s in zip(indices[row, :neighbours], sims[row, :neighbours])
                if j >= 0
            ]
    records = []
    for i in good:
        reasons = quality_reasons(facts[i])
        if threshold is not None and distance[i] > threshold:
            reasons.insert(0, "isolated")
        if not reasons:
            continue
        records.append(
            {
                "path": facts[i].path,
                "reasons": reasons,
                "knn_distance": round(distance[i], 6) if i in distance else None,
                "width": facts[i].size[0],
                "height": facts[i].size[1],
                **{key: round(value, 6) for key, value in facts[i].measures.items()},
                "neighbours": near.get(i, []),
            }
        )
    records.sort(key=lambda r: -(r["knn_distance"] or 0) if "isolated" in r["reasons"] else 0.0)
    return records, threshold
