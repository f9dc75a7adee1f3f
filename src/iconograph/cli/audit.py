"""``iconograph audit``: duplicates, outliers and suspect labels (a thin shell over
:func:`iconograph.auditing.run.audit`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from iconograph.auditing.defaults import NEAR_K, NEAR_SIMILARITY, OUTLIER_K, OUTLIER_MADS, PHASH_DISTANCE, TIERS
from iconograph.backends import DEFAULT_MODEL
from iconograph.cli.common import (
    BatchOpt,
    DeviceOpt,
    ModelOpt,
    NoCacheOpt,
    ProgressOpt,
    RuntimeOpt,
    StoreOpt,
    StrictOpt,
    WorkersOpt,
    app,
    embedder_options,
    report_run,
    user_errors,
)


@app.command()
@user_errors
def audit(
    sources: Annotated[
        Optional[list[Path]],
        typer.Argument(
            help="Image files, folders (recursive) or dataset files (CSV, JSONL, COCO JSON); or --collection.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="Folder for the findings (JSONL files, report.html).")
    ] = None,
    collection: Annotated[
        Optional[str],
        typer.Option(
            "--collection",
            "-c",
            help="Audit an indexed collection (its stored vectors, through its index) and keep the findings "
            "for the review page's queues.",
        ),
    ] = None,
    truth: Annotated[
        Optional[Path],
        typer.Option("--truth", "-t", help="ImageFolder tree, or CSV/JSONL with path and labels: find suspect labels."),
    ] = None,
    model: ModelOpt = DEFAULT_MODEL,
    rotations: Annotated[
        bool,
        typer.Option(
            "--rotations/--no-rotations",
            help="Perceptual duplicates also when rotated 90/180/270 degrees or mirrored (default on; off is faster).",
        ),
    ] = True,
    tiers: Annotated[
        str,
        typer.Option(
            "--tiers",
            help="Duplicate tiers to look for, comma-separated (near chains unrelated images on a weak model).",
        ),
    ] = ",".join(TIERS),
    phash_distance: Annotated[
        int, typer.Option("--phash-distance", min=0, max=64, help="Perceptual tier: most differing hash bits of 64.")
    ] = PHASH_DISTANCE,
    near_similarity: Annotated[
        float, typer.Option("--near-similarity", min=-1.0, max=1.0, help="Near tier: least embedding cosine.")
    ] = NEAR_SIMILARITY,
    near_k: Annotated[int, typer.Option("--near-k", min=1, help="Near tier: neighbours looked at per image.")] = NEAR_K,
    outlier_k: Annotated[
        int, typer.Option("--outlier-k", min=1, help="Outliers: neighbours of the mean cosine distance.")
    ] = OUTLIER_K,
    outlier_mads: Annotated[
        float, typer.Option("--outlier-mads", min=0.0, help="Outliers: flagged above median + this many scaled MADs.")
    ] = OUTLIER_MADS,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write DIR/report.html.")] = True,
    format: Annotated[
        str, typer.Option("--format", "-f", help="jsonl | csv: the format of the finding files.")
    ] = "jsonl",
    batch_size: BatchOpt = 32,
    workers: WorkersOpt = None,
    device: DeviceOpt = None,
    no_cache: NoCacheOpt = False,
    store: StoreOpt = None,
    progress: ProgressOpt = None,
    runtime: RuntimeOpt = "auto",
    strict: StrictOpt = False,
):
    """Audit a collection: duplicate clusters, outliers and (with --truth) suspect labels, one JSONL (or CSV) each in --out."""
    from iconograph.auditing.run import audit as run_audit
    from iconograph.errors import OptionError

    if out is None and collection is None:
        raise OptionError("give --out DIR for the findings (or --collection NAME to keep them with a collection)")
    result = run_audit(
        sources or None,
        truth,
        model,
        out=out,
        report=report,
        format=format,
        rotations=rotations,
        tiers=tiers,
        phash_distance=phash_distance,
        near_similarity=near_similarity,
        near_k=near_k,
        outlier_k=outlier_k,
        outlier_mads=outlier_mads,
        collection=collection,
        **embedder_options(store, no_cache, batch_size, workers, device, progress, runtime),
    )
    report_run(result.run_stats(), strict)
