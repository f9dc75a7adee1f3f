"""Core commands: classify, embed, evaluate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from iconograph.backends import DEFAULT_MODEL
from iconograph.cli.common import (
    EXIT_FAILED_IMAGES,
    BatchOpt,
    DeviceOpt,
    ExactDecodeOpt,
    ModelOpt,
    NoCacheOpt,
    OutOpt,
    ProgressOpt,
    RuntimeOpt,
    Sources,
    StoreOpt,
    StrictOpt,
    WorkersOpt,
    app,
    fail,
    make_embedder,
    user_errors,
)


def parse_threshold(value: str) -> float | dict[str, float]:
    """``--threshold``: a number from 0 to 1, or a per-label thresholds file."""
    from iconograph.classification.decisions import check_threshold
    from iconograph.classification.zeroshot import read_thresholds

    try:
        number = float(value)
    except ValueError:
        if not Path(value).is_file():
            raise ValueError(f"--threshold {value!r} is neither a number nor a thresholds file") from None
        return read_thresholds(value)
    try:
        return check_threshold(number)
    except ValueError:
        raise ValueError(f"--threshold {value!r} is not a number from 0 to 1") from None


@app.command()
@user_errors
def classify(
    sources: Sources,
    labels: Annotated[
        Optional[str], typer.Option("--labels", "-l", help='Comma-separated labels: "zeus,eagle,patera".')
    ] = None,
    labels_file: Annotated[Optional[Path], typer.Option("--labels-file", help="One label per line.")] = None,
    model: ModelOpt = DEFAULT_MODEL,
    templates: Annotated[
        str,
        typer.Option("--templates", help="default | openai | photo | none | a file with one '{}' template per line."),
    ] = "default",
    multi_label: Annotated[
        bool, typer.Option("--multi-label", help="Independent per-label scores; keep labels at/above the threshold.")
    ] = False,
    threshold: Annotated[
        str, typer.Option("--threshold", help="Multi-label threshold: a number or a per-label CSV/JSON file.")
    ] = "0.5",
    top_k: Annotated[
        Optional[int],
        typer.Option("--top-k", min=1, help="Labels per image (default 5; with --multi-label: a cap, default none)."),
    ] = None,
    neutral: Annotated[
        str, typer.Option("--neutral", help="CLIP multi-label: the prompt each label is scored against.")
    ] = "object",
    out: OutOpt = None,
    batch_size: BatchOpt = 32,
    workers: WorkersOpt = None,
    device: DeviceOpt = None,
    no_cache: NoCacheOpt = False,
    strict: StrictOpt = False,
    store: StoreOpt = None,
    progress: ProgressOpt = None,
    runtime: RuntimeOpt = "auto",
    exact_decode: ExactDecodeOpt = False,
):
    """Zero-shot labels for every image: one JSON record per image, in input order."""
    from iconograph.classification.classify import iter_predictions
    from iconograph.classification.zeroshot import ZeroShotClassifier, parse_label_list, read_labels_file
    from iconograph.reading.sources import read_collection

    if (labels is None) == (labels_file is None):
        fail("give exactly one of --labels or --labels-file")
    names = parse_label_list(labels) if labels is not None else read_labels_file(labels_file)
    thresholds = parse_threshold(threshold)
    items = read_collection(sources)
    embedder = make_embedder(model, store, no_cache, batch_size, workers, device, progress, runtime, exact_decode)
    classifier = ZeroShotClassifier(
        names,
        templates=templates,
        multi_label=multi_label,
        threshold=thresholds,
        top_k=top_k,
        neutral=neutral,
    ).prepare(embedder)
    predictions = iter_predictions(items, classifier, embedder)
    failed = write_or_print(predictions, out)
    summarize(len(items), failed, embedder, out)
    if strict and failed:
        raise typer.Exit(EXIT_FAILED_IMAGES)


def write_or_print(predictions, out: Path | None) -> int:
    from iconograph.classification.results import write_predictions

    return write_predictions(predictions, out).failed


def summarize(total: int, failed: int, embedder, out: Path | None) -> None:
    stats = embedder.stats
    where = f" -> {out}" if out else ""
    typer.echo(
        f"{total} images: {total - failed} ok, {failed} failed; "
        f"{stats.computed} embeddings computed, {stats.cached} from cache{where}",
        err=True,
    )


@app.command()
@user_errors
def embed(
    sources: Sources,
    model: ModelOpt = DEFAULT_MODEL,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", "-o", help="Write vectors: .npz, .parquet or .jsonl (always cached in the store)."),
    ] = None,
    batch_size: BatchOpt = 32,
    workers: WorkersOpt = None,
    device: DeviceOpt = None,
    no_cache: NoCacheOpt = False,
    strict: StrictOpt = False,
    store: StoreOpt = None,
    progress: ProgressOpt = None,
    runtime: RuntimeOpt = "auto",
    exact_decode: ExactDecodeOpt = False,
):
    """Compute (or fetch from the cache) image embeddings."""
    from iconograph.engine.embed import write_embeddings
    from iconograph.reading.sources import read_collection

    items = read_collection(sources)
    embedder = make_embedder(model, store, no_cache, batch_size, workers, device, progress, runtime, exact_decode)
    result = embedder.embed_images([item.path for item in items])
    if out is not None:
        write_embeddings(result, out)
    failed = sum(e is not None for e in result.errors)
    for path, error in zip(result.paths, result.errors):
        if error is not None:
            typer.echo(f"{path}: {error}", err=True)
    summarize(len(items), failed, embedder, out)
    if strict and failed:
        raise typer.Exit(EXIT_FAILED_IMAGES)


@app.command()
@user_errors
def evaluate(
    predictions: Annotated[
        Path, typer.Argument(help="Predictions JSONL or CSV (from classify or predict).", show_default=False)
    ],
    truth: Annotated[
        Path, typer.Option("--truth", "-t", help="ImageFolder tree, or CSV/JSONL with path and labels (';'-separated).")
    ],
    report: Annotated[Optional[Path], typer.Option("--report", help="Write an HTML report.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the metrics as JSON.")] = None,
    multi_label: Annotated[
        Optional[bool],
        typer.Option(
            "--multi-label/--single-label", help="Default: multi-label when any truth item has other than one label."
        ),
    ] = None,
):
    """Accuracy, top-5, F1 (micro/macro/samples), mAP, per-class scores and confusion (boxes: COCO mAP)."""
    from iconograph.boxes import is_detection_file

    if is_detection_file(predictions):
        from iconograph.cli.detect import evaluate_boxes

        return evaluate_boxes(predictions, truth, report, json_out)
    from iconograph.engine.files import atomic_write_text
    from iconograph.evaluation.metrics import evaluate as evaluate_predictions

    metrics = evaluate_predictions(predictions, truth, multi_label=multi_label)
    if json_out:
        atomic_write_text(json_out, json.dumps(metrics, indent=2))
    if report:
        from iconograph.evaluation.report import write_full_report

        write_full_report(predictions, truth, report, metrics=metrics, multi_label=multi_label)
    print_metrics(metrics)


def print_metrics(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{metrics['task']} evaluation ({metrics['counts']['evaluated']} images)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        if isinstance(value, float):
            table.add_row(name, f"{value:.4f}")
    Console().print(table)
