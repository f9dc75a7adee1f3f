"""``ig.audit``: duplicates, outliers and (with truth) suspect labels of a collection, in one pass.

>>> result = ig.audit("photos/", truth="labels.csv", out="audit/")
>>> result.duplicates[0]   # {"paths": [...], "representative": ..., "tier": "perceptual", "score": 0.97, "size": 2}
>>> result.outliers[0]     # {"path": ..., "reasons": ["isolated", "dark"], "knn_distance": ..., ...}
>>> result.label_issues[0] # {"path": ..., "label": "cat", "suggested": "dog", "quality": 0.02}

Each image is read and decoded once for its hashes and quality measures, and embedded once
through the cache (:class:`~iconograph.engine.embed.Embedder`: nothing cached is embedded again).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from iconograph.auditing.defaults import FOLDS, NEAR_K, NEAR_SIMILARITY, OUTLIER_K, OUTLIER_MADS, PHASH_DISTANCE, TIERS
from iconograph.auditing.duplicates import check_tiers, find_duplicates
from iconograph.auditing.images import collect_facts
from iconograph.auditing.labels import find_label_issues
from iconograph.auditing.neighbours import self_join
from iconograph.auditing.outliers import find_outliers
from iconograph.engine.embed import Embedder
from iconograph.engine.files import RecordWriter
from iconograph.engine.runs import RunStats
from iconograph.errors import DataError, OptionError
from iconograph.reading.sources import SourceError, labels_by_path, path_key, read_collection

FILES = {
    "duplicates": "duplicates.jsonl",
    "outliers": "outliers.jsonl",
    "label_issues": "label_issues.jsonl",
    "failed": "failed.jsonl",
}
DEFAULT_COLUMNS = {  # the header of a CSV with no findings
    "duplicates": ("paths", "representative", "tier", "score", "size"),
    "outliers": ("path", "reasons", "knn_distance"),
    "label_issues": ("path", "label", "suggested", "quality", "neighbours"),
    "failed": ("path", "error"),
}
EVIDENCE_NEIGHBOURS = 3  # labelled neighbours shown with each suspect label
REPORT = "report.html"


@dataclass
class AuditResult:
    paths: list[str]
    duplicates: list[dict]
    outliers: list[dict]
    label_issues: list[dict] | None  # None: no truth given
    failed: list[dict] = field(default_factory=list)  # {"path", "error"}
    outlier_threshold: float | None = None
    computed: int = 0
    cached: int = 0
    out: Path | None = None

    def run_stats(self) -> RunStats:
        extra = [
            f"{len(self.duplicates)} duplicate clusters ({sum(r['size'] for r in self.duplicates)} images)",
            f"{len(self.outliers)} outliers",
        ]
        if self.label_issues is not None:
            extra.append(f"{len(self.label_issues)} label issues")
        return RunStats(len(self.paths), len(self.failed), self.computed, self.cached, self.out, extra=tuple(extra))

    def write(self, out: str | os.PathLike, report: bool = True, format: str = "jsonl") -> Path:
        """One file per finding kind in the folder ``out`` (``label_issues`` only with truth,
        ``failed`` always): JSONL, or with ``format="csv"`` CSV (one column per key; lists of
        paths or labels joined by ``; ``, neighbour evidence as JSON); and ``report.html`` unless
        ``report=False``."""
        if format not in ("jsonl", "csv"):
            raise OptionError(f"--format must be jsonl or csv, not {format!r}")
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise OptionError(f"--out {out} must be a folder (audit writes several files)")
        out.mkdir(parents=True, exist_ok=True)
        for kind, name in FILES.items():
            records = getattr(self, kind)
            if records is None:
                continue
            if format == "csv":
                columns = csv_columns(records) or DEFAULT_COLUMNS[kind]
                writer = RecordWriter(
                    out / f"{kind}.csv", columns, lambda r, c=columns: [csv_cell(r.get(k)) for k in c]
                )
            else:
                writer = RecordWriter(out / name)
            with writer:
                writer.write_all(records)
        if report:
            from iconograph.auditing.report import write_report

            write_report(self, out / REPORT)
        self.out = out
        return out


def audit(
    sources: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    truth: str | os.PathLike | Sequence | None = None,
    model=None,
    *,
    out: str | os.PathLike | None = None,
    report: bool = True,
    format: str = "jsonl",
    rotations: bool = True,
    tiers: str | Sequence[str] = TIERS,
    phash_distance: int = PHASH_DISTANCE,
    near_similarity: float = NEAR_SIMILARITY,
    near_k: int = NEAR_K,
    outlier_k: int = OUTLIER_K,
    outlier_mads: float = OUTLIER_MADS,
    folds: int = FOLDS,
    embedder: Embedder | None = None,
    threads: int = 4,
    collection: str | None = None,
    **embedder_options,
) -> AuditResult:
    """Audit ``sources``: duplicate clusters, outliers, and with ``truth`` (an ImageFolder tree or
    a CSV/JSONL/COCO file, as ``evaluate`` reads it) suspect labels. ``model``: a model spec
    (default: iconograph's default CLIP) unless an ``embedder`` is given. ``out``: a folder to
    write the findings to (:meth:`AuditResult.write`, as JSONL or ``format="csv"``). ``tiers``: the duplicate tiers to look
    for (:mod:`iconograph.auditing.duplicates`).

    ``collection``: audit an indexed collection instead of ``sources`` (its images and stored
    vectors: no model runs), with the neighbours found through the collection's LanceDB index, and
    keep the findings with the collection for the review page's queues. Otherwise the
    neighbours come from an exact blocked self-join up to
    :data:`~iconograph.auditing.neighbours.EXACT_LIMIT` images and through a scratch LanceDB
    index in the store above (:func:`~iconograph.auditing.neighbours.self_join`)."""
    tiers = check_tiers(tiers)
    if format not in ("jsonl", "csv"):
        raise OptionError(f"--format must be jsonl or csv, not {format!r}")
    if not 0 <= phash_distance <= 64:
        raise OptionError(f"phash distance must be from 0 to 64 bits, not {phash_distance}")
    if not -1 <= near_similarity <= 1:
        raise OptionError(f"near similarity must be a cosine from -1 to 1, not {near_similarity}")
    if near_k < 1 or outlier_k < 1 or folds < 2:
        raise OptionError("neighbour counts must be at least 1 and folds at least 2")
    truth_map = None
    if truth is not None:
        from iconograph.evaluation.metrics import read_truth

        truth_map = labels_by_path(read_truth(truth) if isinstance(truth, (str, os.PathLike)) else truth)
    k = max(near_k, outlier_k)
    target = None
    if collection is not None:
        from iconograph.auditing.neighbours import knn_from_table
        from iconograph.search import SearchCollection

        if sources is not None:
            raise OptionError("give SOURCE or --collection, not both")
        target = SearchCollection(collection, embedder_options.get("store")).require()
        table_paths, indices, sims = knn_from_table(target.vectors, k)
        paths = sorted(table_paths)
        facts = collect_facts(paths, rotations=rotations, threads=threads)
        position = {p: i for i, p in enumerate(table_paths)}
        good = [i for i, f in enumerate(facts) if f.error is None]
        # the self-join in the order of the good rows (indices refer to the table's rows)
        to_good = np.full(len(table_paths), -1)
        to_good[[position[paths[i]] for i in good]] = np.arange(len(good))
        rows = [position[paths[i]] for i in good]
        knn = (to_good[indices[rows]], sims[rows])
        vectors = None
        computed = cached = 0
    else:
        if sources is None:
            raise OptionError("give SOURCE (images, folders or a dataset file) or --collection")
        items = read_collection(sources)
        if not items:
            raise SourceError("no images found in the sources")
        paths = [item.path for item in items]
        if len(set(map(path_key, paths))) != len(paths):
            raise DataError("an image is given twice in the sources; give each image once")
        embedder = embedder or Embedder(model, **embedder_options)
        before = (embedder.stats.computed, embedder.stats.cached)
        facts = collect_facts(paths, rotations=rotations, threads=threads)
        embedded = embedder.embed_images(paths)
        for fact, error in zip(facts, embedded.errors):
            if fact.error is None and error is not None:
                fact.error = error
        vectors = embedded.vectors
        good = [i for i, f in enumerate(facts) if f.error is None]
        knn = self_join(vectors[good], k, store=embedder.store) if len(good) > 1 else None
        computed, cached = embedder.stats.computed - before[0], embedder.stats.cached - before[1]
    duplicates = find_duplicates(
        facts,
        phash_distance=phash_distance,
        near_similarity=near_similarity,
        near_k=near_k,
        tiers=tiers,
        knn=knn,
    )
    outliers, threshold = find_outliers(facts, k=outlier_k, mads=outlier_mads, knn=knn)
    issues = None
    if truth_map is not None:
        labelled = [i for i in good if truth_map.get(path_key(paths[i]))]
        if not labelled:
            raise DataError("no audited image has a label in the truth")
        if vectors is None:
            found = target.vectors.vectors_for([paths[i] for i in labelled])
            labelled_vectors = np.stack([found[paths[i]] for i in labelled])
        else:
            labelled_vectors = vectors[labelled]
        issues = find_label_issues(
            [paths[i] for i in labelled],
            labelled_vectors,
            [tuple(truth_map[path_key(paths[i])]) for i in labelled],
            folds=folds,
        )
        add_label_evidence(issues, knn, good, paths, truth_map)
    result = AuditResult(
        paths,
        duplicates,
        outliers,
        issues,
        [{"path": f.path, "error": f.error} for f in facts if f.error is not None],
        threshold,
        computed,
        cached,
    )
    if target is not None:
        save_findings(target, result)
    if out is not None:
        result.write(out, report=report, format=format)
    return result


def add_label_evidence(issues, knn, good, paths, truth_map, count: int = EVIDENCE_NEIGHBOURS) -> None:
    """Give each suspect label its nearest labelled images and their labels: the evidence a
    reviewer reads (four neighbours labelled "dog" next to a "cat" say more than a quality score)."""
    if knn is None:
        return
    indices, similarities = knn
    row_of = {paths[i]: row for row, i in enumerate(good)}
    for issue in issues:
        row = row_of[issue["path"]]
        evidence = []
        for other, similarity in zip(indices[row], similarities[row]):
            if other < 0 or other == row:
                continue
            path = paths[good[other]]
            labels = truth_map.get(path_key(path))
            if labels:
                evidence.append({"path": path, "labels": list(labels), "similarity": round(float(similarity), 6)})
            if len(evidence) == count:
                break
        issue["neighbours"] = evidence


def csv_columns(records: list[dict]) -> tuple[str, ...]:
    """Every key of the records, in the order they first appear."""
    return tuple(dict.fromkeys(key for record in records for key in record))


def csv_cell(value) -> str | float | int:
    """Lists of paths or labels as ``a; b``, nested evidence as JSON, numbers as they are, and
    text a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab or CR first: a
    label from a truth file, say) behind a ``'``, which spreadsheets show as text (OWASP's advice
    for CSV injection; Python's csv module does not do it)."""
    if value is None:
        return ""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = "; ".join(value)
    elif isinstance(value, (list, dict)):
        value = json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


FINDINGS_META = "search_audit_{}"


def save_findings(collection, result: AuditResult) -> None:
    """Keep an audit's findings with the collection (the review page's queues read them)."""
    collection.store.write_meta(
        FINDINGS_META.format(collection.name),
        {"duplicates": result.duplicates, "outliers": result.outliers, "label_issues": result.label_issues or []},
    )


def load_findings(collection) -> dict:
    """The findings of the collection's last audit: ``duplicates``, ``outliers``, ``label_issues``."""
    found = collection.store.read_meta(FINDINGS_META.format(collection.name)) or {}
    return {kind: found.get(kind, []) for kind in ("duplicates", "outliers", "label_issues")}
