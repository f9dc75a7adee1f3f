"""Search benchmark: exact vs ANN (LanceDB IVF_HNSW_SQ) on random unit vectors.

Baseline, measured in the same run: brute-force numpy cosine search (one matrix-vector product
and argpartition per query). Reports recall@10 of the ANN index against the exact top 10, query
latency p50/p95 for numpy, LanceDB's exact flat scan and the ANN index, index build time, memory
(peak resident-set growth while building; store size on disk), and what an incremental update of
1% more rows costs compared with the first build.

    python benchmarks/bench_search.py                     # 100,000 x 512-d, 200 queries
    python benchmarks/bench_search.py --n 20000 --queries 100
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from iconograph.search.vectors import QUERY_EF, QUERY_REFINE, VectorTable  # noqa: E402


def memory_mb(field: str = "VmRSS") -> float:
    """Resident memory now (VmRSS) or its peak so far (VmHWM), from /proc."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_memory() -> None:
    """Make VmHWM start again from the current resident set (Linux: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def unit(rng, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def percentiles(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--ef", default=str(QUERY_EF), help="HNSW beam widths to try, comma-separated")
    parser.add_argument("--refine", default=str(QUERY_REFINE), help="refine factors to try, comma-separated")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    import lancedb

    rng = np.random.default_rng(0)
    vectors = unit(rng, args.n, args.dim)
    queries = unit(rng, args.queries, args.dim)
    paths = [f"img/{i:07d}.jpg" for i in range(args.n)]
    k = args.k

    # baseline: brute-force numpy
    numpy_times, exact_ids = [], []
    for q in queries:
        start = time.perf_counter()
        sims = vectors @ q
        top = np.argpartition(-sims, k)[:k]
        top = top[np.argsort(-sims[top])]
        numpy_times.append(time.perf_counter() - start)
        exact_ids.append(set(top.tolist()))

    folder = Path(tempfile.mkdtemp(prefix="iconograph-bench-"))
    table = VectorTable(lancedb.connect(str(folder)), "bench", ann_threshold=args.n)
    start = time.perf_counter()
    table.upsert(paths, ["-"] * args.n, vectors)
    load_s = time.perf_counter() - start

    lance_exact_times = []
    exact_agree = 0
    for q, truth in zip(queries[:50], exact_ids[:50]):
        start = time.perf_counter()
        hits, _ = table.search(q, k, mode="exact")
        lance_exact_times.append(time.perf_counter() - start)
        exact_agree += {int(h.path[4:11]) for h in hits} == truth

    reset_peak_memory()
    rss_before = memory_mb("VmRSS")
    state = table.maintain()
    build_s = state.seconds
    rss_growth = max(0.0, memory_mb("VmHWM") - rss_before)  # peak while building, over the resident set before
    disk_mb = folder_mb(folder)

    def ann_run(qs, truths, ef=QUERY_EF, refine=QUERY_REFINE):
        times, recall = [], []
        for q, truth in zip(qs, truths):
            start = time.perf_counter()
            hits, mode = table.search(q, k, ef=ef, refine_factor=refine)
            times.append(time.perf_counter() - start)
            assert mode == "ann"
            recall.append(len({int(h.path[4:11]) for h in hits} & truth) / k)
        return times, float(np.mean(recall))

    settings = {}
    for ef in map(int, args.ef.split(",")):
        for refine in map(int, args.refine.split(",")):
            times, setting_recall = ann_run(queries, exact_ids, ef, refine)
            settings[f"ef={ef},refine={refine}"] = {"recall_at_10": setting_recall, **percentiles(times)}
    ann_times, recall = ann_run(queries, exact_ids)  # the defaults

    # incremental: 1% more rows, folded into the existing index by optimize()
    extra = unit(rng, max(1, args.n // 100), args.dim)
    table.upsert([f"new/{i:07d}.jpg" for i in range(len(extra))], ["-"] * len(extra), extra)
    unindexed = table.state().unindexed_rows
    update = table.maintain()
    all_vectors = np.concatenate([vectors, extra])
    truths_after = []
    for q in queries:
        sims = all_vectors @ q
        top = np.argpartition(-sims, k)[:k]
        truths_after.append({int(i) if i < args.n else -1 - int(i - args.n) for i in top})

    def hit_id(path: str) -> int:
        return int(path[4:11]) if path.startswith("img/") else -1 - int(path[4:11])

    recall_after = []
    for q, truth in zip(queries, truths_after):
        hits, _ = table.search(q, k)
        recall_after.append(len({hit_id(h.path) for h in hits} & truth) / k)

    numpy_p = percentiles(numpy_times)
    figures = {
        "n": args.n,
        "dim": args.dim,
        "queries": args.queries,
        "index": state.index_type,
        "load_s": load_s,
        "build_s": build_s,
        "build_peak_rss_growth_mb": rss_growth,
        "store_on_disk_mb": disk_mb,
        "recall_at_10": recall,
        "numpy_exact": numpy_p,
        "lance_exact": percentiles(lance_exact_times),
        "lance_exact_matches_numpy": f"{exact_agree}/{len(lance_exact_times)}",
        "ann": percentiles(ann_times),
        "ann_settings": settings,
        "incremental_rows": len(extra),
        "incremental_unindexed_before": unindexed,
        "incremental_update_s": update.seconds,
        "incremental_action": update.action,
        "incremental_unindexed_after": update.unindexed_rows,
        "recall_at_10_after_update": float(np.mean(recall_after)),
    }
    ann_p, flat_p = figures["ann"], figures["lance_exact"]
    print(f"{args.n} x {args.dim}-d random unit vectors, {args.queries} queries, k={k} (shared 2-core machine)")
    print(
        f"index {state.index_type}: built in {build_s:.1f}s (loading rows {load_s:.1f}s); "
        f"peak RSS +{rss_growth:.0f} MB while building; store on disk {disk_mb:.0f} MB"
    )
    print(f"recall@10 vs exact: {recall:.3f}")
    print(f"latency numpy brute force (baseline): p50 {numpy_p['p50_ms']:.2f} ms, p95 {numpy_p['p95_ms']:.2f} ms")
    print(
        f"latency LanceDB exact flat scan:      p50 {flat_p['p50_ms']:.2f} ms, p95 {flat_p['p95_ms']:.2f} ms "
        f"({flat_p['p50_ms'] / numpy_p['p50_ms']:.1f}x baseline p50; top-10 equal to numpy in "
        f"{figures['lance_exact_matches_numpy']})"
    )
    print(
        f"latency ANN (ef={QUERY_EF}, refine={QUERY_REFINE}):      p50 {ann_p['p50_ms']:.2f} ms, p95 {ann_p['p95_ms']:.2f} ms "
        f"({ann_p['p50_ms'] / numpy_p['p50_ms']:.1f}x baseline p50)"
    )
    for name, figures_of in settings.items():
        print(
            f"  ANN {name}: recall@10 {figures_of['recall_at_10']:.3f}, p50 {figures_of['p50_ms']:.2f} ms, "
            f"p95 {figures_of['p95_ms']:.2f} ms ({figures_of['p50_ms'] / numpy_p['p50_ms']:.1f}x baseline p50)"
        )
    print(
        f"incremental: +{len(extra)} rows ({unindexed} unindexed) -> {update.action} in {update.seconds:.1f}s "
        f"({update.seconds / build_s:.2g}x the first build), {update.unindexed_rows} unindexed after; "
        f"recall@10 after {figures['recall_at_10_after_update']:.3f}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
