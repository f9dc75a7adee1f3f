"""Core commands: classify, embed, evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from iconograph.backends import DEFAULT_MODEL
from iconograph.cli.common import (
    ActorsOpt,
    BatchOpt,
    CropDetectorOpt,
    CropMarginOpt,
    CropMaskOpt,
    CropModeOpt,
    CropOpt,
    CropQueryOpt,
    DeviceOpt,
    EngineOpt,
    ExactDecodeOpt,
    ModelOpt,
    NoCacheOpt,
    OutOpt,
    ProgressOpt,
    RayAddressOpt,
    RuntimeOpt,
    Sources,
    StorageOptionOpt,
    StoreOpt,
    StrictOpt,
    WorkersOpt,
    app,
    crop_kwargs,
    echo_stderr,
    embedder_options,
    engine_options,
    open_store,
    report_run,
    user_errors,
)


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
        typer.Option(
            "--templates",
            help="A template set (default, openai/imagenet, photo, none, cifar10/cifar100, coins, artworks, products) or a file with one '{}' template per line.",
        ),
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
    engine: EngineOpt = None,
    ray_address: RayAddressOpt = None,
    actors: ActorsOpt = None,
    storage_option: StorageOptionOpt = None,
    crop: CropOpt = None,
    crop_query: CropQueryOpt = None,
    detector: CropDetectorOpt = None,
    crop_mode: CropModeOpt = "largest",
    crop_margin: CropMarginOpt = 0.05,
    crop_mask: CropMaskOpt = False,
):
    """Zero-shot labels for every image: one JSON record per image, in input order."""
    from iconograph.classification.classify import run_classify

    stats = run_classify(
        sources,
        labels,
        labels_file=labels_file,
        model=model,
        templates=templates,
        multi_label=multi_label,
        threshold=threshold,
        top_k=top_k,
        neutral=neutral,
        out=out,
        **crop_kwargs(crop, crop_query, detector, crop_mode, crop_margin, crop_mask),
        **embedder_options(
            open_store(store, storage_option), no_cache, batch_size, workers, device, progress, runtime, exact_decode
        ),
        **engine_options(engine, ray_address, actors),
    )
    report_run(stats, strict)


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
    engine: EngineOpt = None,
    ray_address: RayAddressOpt = None,
    actors: ActorsOpt = None,
    storage_option: StorageOptionOpt = None,
    crop: CropOpt = None,
    crop_query: CropQueryOpt = None,
    detector: CropDetectorOpt = None,
    crop_mode: CropModeOpt = "largest",
    crop_margin: CropMarginOpt = 0.05,
    crop_mask: CropMaskOpt = False,
):
    """Compute (or fetch from the cache) image embeddings."""
    from iconograph.engine.embed import run_embed

    stats = run_embed(
        sources,
        model,
        out=out,
        log=echo_stderr,
        **crop_kwargs(crop, crop_query, detector, crop_mode, crop_margin, crop_mask),
        **embedder_options(
            open_store(store, storage_option), no_cache, batch_size, workers, device, progress, runtime, exact_decode
        ),
        **engine_options(engine, ray_address, actors),
    )
    report_run(stats, strict)


@app.command()
@user_errors
def evaluate(
    predictions: Annotated[
        Path,
        typer.Argument(
            help="Predictions: labels (JSONL/CSV from classify or predict), boxes or masks (JSONL from detect "
            "or segment), or a folder of label-map PNGs.",
            show_default=False,
        ),
    ],
    truth: Annotated[
        Path,
        typer.Option(
            "--truth",
            "-t",
            help="Labels: an ImageFolder tree or CSV/JSONL with path and labels (';'-separated). "
            "Boxes and masks: COCO .json, a VOC folder of .xml or a YOLO folder. Label maps: a PNG folder.",
        ),
    ],
    report: Annotated[Optional[Path], typer.Option("--report", help="Write an HTML report (labels or boxes).")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the metrics as JSON.")] = None,
    multi_label: Annotated[
        Optional[bool],
        typer.Option(
            "--multi-label/--single-label", help="Default: multi-label when any truth item has other than one label."
        ),
    ] = None,
):
    """Score predictions against the truth.

    Labels: accuracy, top-5, F1 (micro/macro/samples), mAP, per-class scores and confusion.

    Boxes and masks (detect/segment JSONL against COCO, VOC or YOLO truth): COCO mAP, AP50, AP75 and per-class AP (pycocotools; with masks on both sides also mask_mAP ...).

    Label-map PNG folders: pixel accuracy, mIoU and per-class IoU.
    """
    from iconograph.evaluation.run import evaluate_files

    metrics = evaluate_files(predictions, truth, report=report, json_out=json_out, multi_label=multi_label)
    if metrics["task"] == "detection":
        from iconograph.cli.detect import print_box_metrics

        print_box_metrics(metrics)
    else:
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
