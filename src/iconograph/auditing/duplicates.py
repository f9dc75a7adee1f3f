"""Duplicate clusters in three tiers, strongest first:

- ``identical``: the same file content (the content hash the embedding cache keys on);
- ``perceptual``: perceptual hashes (``imagehash.phash``, 64 bits) at a Hamming distance of at
  most :data:`PHASH_DISTANCE` (8 of 64 bits); with ``rotations`` the upright hash of one image is compared with
  the hashes of the other's 90/180/270 degree rotations, its mirror image and the mirror's rotations;
- ``near``: cosine similarity of the images' embeddings at least :data:`NEAR_SIMILARITY` (0.95), among
  each image's :data:`NEAR_K` (10) nearest neighbours (:func:`~iconograph.auditing.neighbours.knn_self_join`).

Pairs become clusters by connected components of the pair graph (union-find); a cluster takes the
strongest tier among its pairs, its ``score`` is the weakest pair of that tier on a 0..1
similarity scale (1 for identical, ``1 - distance / 64`` for perceptual, the cosine for near), and
its suggested ``representative`` is the image with the most pixels, then the shortest path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from iconograph.auditing.defaults import NEAR_K, NEAR_SIMILARITY, PHASH_DISTANCE, TIERS
from iconograph.auditing.images import ImageFacts
from iconograph.auditing.neighbours import knn_self_join, pairs_at_least
from iconograph.errors import OptionError

HASH_BITS = 64


def hash_signs(hashes: Sequence[int]) -> np.ndarray:
    """64-bit hashes as rows of +1/-1, so that ``a . b = 64 - 2 * hamming(a, b)``."""
    words = np.array(hashes, dtype=np.uint64).reshape(-1, 1)
    bits = (words >> np.arange(HASH_BITS, dtype=np.uint64)) & np.uint64(1)
    return (bits.astype(np.float32) * 2 - 1).reshape(len(hashes), HASH_BITS)


def perceptual_pairs(phashes: Sequence[Sequence[int]], max_distance: int = PHASH_DISTANCE):
    """``(i, j, distance)`` for i < j whose upright hash is within ``max_distance`` of any hash of
    the other (its variants), the smallest distance of either direction."""
    n = len(phashes)
    if n < 2:
        return []
    variants = len(phashes[0])
    upright = hash_signs([h[0] for h in phashes])
    every = hash_signs([v for h in phashes for v in h])
    rows, cols, dots = pairs_at_least(upright, every, HASH_BITS - 2 * max_distance - 0.5)
    best: dict[tuple[int, int], int] = {}
    for i, j, dot in zip(rows.tolist(), (cols // variants).tolist(), dots.tolist()):
        if i == j:
            continue
        key = (min(i, j), max(i, j))
        distance = int(round((HASH_BITS - dot) / 2))
        best[key] = min(distance, best.get(key, HASH_BITS))
    return [(i, j, d) for (i, j), d in sorted(best.items())]


def near_pairs(vectors: np.ndarray | None, min_similarity: float = NEAR_SIMILARITY, k: int = NEAR_K, knn=None):
    """``(i, j, cosine)`` for i < j where one is among the other's ``k`` nearest at ``min_similarity`` or more.

    ``knn``: the self-join ``(indices, similarities)`` already computed (at least ``k`` wide),
    instead of :func:`~iconograph.auditing.neighbours.knn_self_join` on ``vectors``."""
    indices, sims = knn_self_join(vectors, k) if knn is None else (knn[0][:, :k], knn[1][:, :k])
    best: dict[tuple[int, int], float] = {}
    rows, cols = np.nonzero(sims >= min_similarity)
    for r, c in zip(rows.tolist(), cols.tolist()):
        j = int(indices[r, c])
        if j < 0:  # no neighbour there (an image that failed, or fewer found by the index)
            continue
        key = (min(r, j), max(r, j))
        best[key] = max(float(sims[r, c]), best.get(key, -1.0))
    return [(i, j, s) for (i, j), s in sorted(best.items())]


def find_duplicates(
    facts: Sequence[ImageFacts],
    vectors: np.ndarray | None = None,
    *,
    phash_distance: int = PHASH_DISTANCE,
    near_similarity: float = NEAR_SIMILARITY,
    near_k: int = NEAR_K,
    tiers: Sequence[str] = TIERS,
    knn: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[dict]:
    """Duplicate clusters among ``facts`` (failed images take no part): one record per cluster
    ``{"paths", "representative", "tier", "score", "size"}``, strongest tier first, then by score.

    ``vectors``: embeddings row-aligned with ``facts`` (rows of failed images are ignored); None
    skips the ``near`` tier, as does leaving it out of ``tiers``. ``knn``: the self-join of the
    good rows' vectors, already computed (:func:`~iconograph.auditing.neighbours.self_join`).

    Clusters are connected components, so pairs chain: with a weak embedding model the ``near``
    tier can join unrelated images into one cluster (look for ``identical`` and ``perceptual``
    only, or raise ``near_similarity``)."""
    tiers = check_tiers(tiers)
    good = [i for i, f in enumerate(facts) if f.error is None]
    edges: dict[tuple[int, int], tuple[int, float]] = {}  # (i, j) -> (tier rank, score), best kept

    def add(i: int, j: int, rank: int, score: float) -> None:
        key = (min(i, j), max(i, j))
        old = edges.get(key)
        if old is None or (rank, -score) < (old[0], -old[1]):
            edges[key] = (rank, score)

    first: dict[str, int] = {}
    for i in good if "identical" in tiers else ():
        j = first.setdefault(facts[i].hash, i)
        if j != i:
            add(j, i, 0, 1.0)
    if "perceptual" in tiers:
        for a, b, distance in perceptual_pairs([facts[i].phashes for i in good], phash_distance):
            add(good[a], good[b], 1, 1 - distance / HASH_BITS)
    if "near" in tiers and (vectors is not None or knn is not None) and len(good) > 1:
        good_vectors = None if knn is not None else np.asarray(vectors)[good]
        for a, b, sim in near_pairs(good_vectors, near_similarity, near_k, knn=knn):
            add(good[a], good[b], 2, min(1.0, sim))
    return clusters(facts, edges)


def check_tiers(tiers: str | Sequence[str]) -> tuple[str, ...]:
    """Tier names (a sequence, or a comma-separated string), validated."""
    if isinstance(tiers, str):
        tiers = [t.strip() for t in tiers.split(",") if t.strip()]
    unknown = [t for t in tiers if t not in TIERS]
    if unknown or not tiers:
        raise OptionError(f"duplicate tiers are {', '.join(TIERS)} (one or more), not {', '.join(unknown) or 'none'}")
    return tuple(tiers)


def clusters(facts: Sequence[ImageFacts], edges: dict[tuple[int, int], tuple[int, float]]) -> list[dict]:
    n = len(facts)
    if not edges:
        return []
    pairs = np.array(list(edges), dtype=np.int64)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for node in sorted(set(pairs.ravel().tolist())):
        members.setdefault(int(component[node]), []).append(node)
    strongest: dict[int, tuple[int, float]] = {}
    for (i, _), (rank, score) in edges.items():
        c = int(component[i])
        old = strongest.get(c)
        if old is None or rank < old[0] or (rank == old[0] and score < old[1]):
            strongest[c] = (rank, score)
    records = []
    for c, nodes in members.items():
        rank, score = strongest[c]
        paths = [facts[i].path for i in nodes]
        best = min(nodes, key=lambda i: (-_pixels(facts[i]), len(facts[i].path), facts[i].path))
        records.append(
            {
                "paths": paths,
                "representative": facts[best].path,
                "tier": TIERS[rank],
                "score": round(float(score), 6),
                "size": len(paths),
            }
        )
    records.sort(key=lambda r: (TIERS.index(r["tier"]), -r["score"], r["paths"][0]))
    return records


def _pixels(f: ImageFacts) -> int:
    return f.size[0] * f.size[1] if f.size else 0
