"""segment: masks for boxes from a box file, or for words (boxed by the detector first)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from iconograph.cli.common import (
    BatchOpt,
    DeviceOpt,
    NoCacheOpt,
    ProgressOpt,
    Sources,
    StoreOpt,
    StrictOpt,
    WorkersOpt,
    app,
    echo_stderr,
    report_run,
    runner_options,
    unit_interval,
    user_errors,
)


@app.command()
@user_errors
def segment(
    sources: Sources,
    boxes: Annotated[
        Optional[Path],
        typer.Option("--boxes", "-b", help="Box prompts: a detect JSONL, a COCO .json, a VOC or YOLO folder."),
    ] = None,
    queries: Annotated[
        Optional[str],
        typer.Option(
            "--queries",
            "-q",
            help='Comma-separated words: "coin,eagle". Boxed by --detector first, or, with a SAM3 / CLIPSeg'
            " --model, segmented directly.",
        ),
    ] = None,
    queries_file: Annotated[Optional[Path], typer.Option("--queries-file", help="One word query per line.")] = None,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="SAM / SlimSAM / SAM2 (box prompts), SAM3 or CLIPSeg (word prompts): hub id or save_pretrained folder.",
        ),
    ] = "facebook/sam-vit-base",
    detector: Annotated[
        str, typer.Option("--detector", help="OWL-ViT / OWLv2 that boxes the --queries.")
    ] = "google/owlvit-base-patch32",
    threshold: Annotated[
        Optional[float],
        typer.Option(
            "--threshold",
            min=0.0,
            max=1.0,
            callback=unit_interval,
            help="Score threshold: the detector's (default 0.1), or SAM3's / CLIPSeg's (default 0.3).",
        ),
    ] = None,
    nms_iou: Annotated[
        float, typer.Option("--nms-iou", min=0.0, max=1.0, callback=unit_interval, help="Detector NMS IoU.")
    ] = 0.5,
    mask_threshold: Annotated[
        float,
        typer.Option(
            "--mask-threshold",
            min=0.0,
            max=1.0,
            callback=unit_interval,
            help="SAM3 / CLIPSeg: mask probability above which a pixel is in the mask.",
        ),
    ] = 0.5,
    auto: Annotated[
        bool,
        typer.Option("--auto", help="Segment everything: SAM prompted by a grid of points (no --boxes/--queries)."),
    ] = False,
    points_per_side: Annotated[
        int, typer.Option("--points-per-side", min=1, help="--auto: grid points per side.")
    ] = 32,
    points_per_batch: Annotated[
        int, typer.Option("--points-per-batch", min=1, help="--auto: points through the mask decoder at once.")
    ] = 64,
    pred_iou_thresh: Annotated[
        float,
        typer.Option("--pred-iou-thresh", callback=unit_interval, help="--auto: keep masks with this predicted IoU."),
    ] = 0.88,
    stability_score_thresh: Annotated[
        float,
        typer.Option("--stability-score-thresh", callback=unit_interval, help="--auto: keep masks this stable."),
    ] = 0.95,
    crops_nms_thresh: Annotated[
        float, typer.Option("--crops-nms-thresh", callback=unit_interval, help="--auto: box NMS IoU between masks.")
    ] = 0.7,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="JSONL file, COCO .json, or a folder for png label maps.")
    ] = None,
    format: Annotated[
        Optional[str], typer.Option("--format", "-f", help="jsonl | coco | png (default: by --out suffix).")
    ] = None,
    annotate: Annotated[
        Optional[Path], typer.Option("--annotate", help="Write a copy of each image with its masks drawn here.")
    ] = None,
    batch_size: BatchOpt = 8,
    workers: WorkersOpt = None,
    device: DeviceOpt = None,
    no_cache: NoCacheOpt = False,
    strict: StrictOpt = False,
    store: StoreOpt = None,
    progress: ProgressOpt = None,
):
    """Outline what the boxes (or the words) show: the detect record, each box with its mask (COCO RLE)."""
    from iconograph.segmentation import run_segmentation

    stats = run_segmentation(
        sources,
        boxes=boxes,
        queries=queries,
        queries_file=queries_file,
        model=model,
        detector=detector,
        threshold=threshold,
        nms_iou=nms_iou,
        mask_threshold=mask_threshold,
        auto=auto
        and {
            "points_per_side": points_per_side,
            "points_per_batch": points_per_batch,
            "pred_iou_thresh": pred_iou_thresh,
            "stability_score_thresh": stability_score_thresh,
            "crops_nms_thresh": crops_nms_thresh,
        },
        device=device,
        out=out,
        format=format,
        annotate=annotate,
        log=echo_stderr,
        **runner_options(store, no_cache, batch_size, workers, progress),
    )
    report_run(stats, strict)
