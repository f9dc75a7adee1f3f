"""Locate and describe: detect, caption, describe, convert-boxes (and the box table of evaluate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from iconograph.cli.common import (
    ActorsOpt,
    BatchOpt,
    DeviceOpt,
    EngineOpt,
    NoCacheOpt,
    ProgressOpt,
    RayAddressOpt,
    Sources,
    StorageOptionOpt,
    StoreOpt,
    StrictOpt,
    WorkersOpt,
    app,
    echo_stderr,
    engine_options,
    open_store,
    report_run,
    runner_options,
    unit_interval,
    user_errors,
)


@app.command()
@user_errors
def detect(
    sources: Sources,
    queries: Annotated[
        Optional[str], typer.Option("--queries", "-q", help='Comma-separated text queries: "zeus,eagle,patera".')
    ] = None,
    queries_file: Annotated[Optional[Path], typer.Option("--queries-file", help="One text query per line.")] = None,
    image_queries: Annotated[
        Optional[Path],
        typer.Option("--image-queries", help="Folder of example images: DIR/<label>.jpg or DIR/<label>/*.jpg."),
    ] = None,
    model: Annotated[
        str, typer.Option("--model", "-m", help="OWL-ViT or OWLv2: hub id or save_pretrained folder.")
    ] = "google/owlvit-base-patch32",
    threshold: Annotated[
        float,
        typer.Option("--threshold", min=0.0, max=1.0, callback=unit_interval, help="Keep boxes scoring above this."),
    ] = 0.1,
    nms_iou: Annotated[
        float,
        typer.Option(
            "--nms-iou", min=0.0, max=1.0, callback=unit_interval, help="Class-wise NMS IoU threshold (1 disables NMS)."
        ),
    ] = 0.5,
    clip: Annotated[bool, typer.Option("--clip/--no-clip", help="Clip boxes to the image.")] = True,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="JSONL file, COCO .json, or a folder for voc/yolo.")
    ] = None,
    format: Annotated[
        Optional[str], typer.Option("--format", "-f", help="jsonl | coco | voc | yolo (default: by --out suffix).")
    ] = None,
    annotate: Annotated[
        Optional[Path], typer.Option("--annotate", help="Write a copy of each image with its boxes drawn here.")
    ] = None,
    batch_size: BatchOpt = 8,
    workers: WorkersOpt = None,
    device: DeviceOpt = None,
    no_cache: NoCacheOpt = False,
    strict: StrictOpt = False,
    store: StoreOpt = None,
    progress: ProgressOpt = None,
    engine: EngineOpt = None,
    ray_address: RayAddressOpt = None,
    actors: ActorsOpt = None,
    storage_option: StorageOptionOpt = None,
):
    """Find and box what the queries name: one record per image (boxes in pixels, sorted by score)."""
    from iconograph.detection import run_detection

    stats = run_detection(
        sources,
        queries,
        queries_file=queries_file,
        model=model,
        image_queries=image_queries,
        threshold=threshold,
        nms_iou=nms_iou,
        clip=clip,
        device=device,
        out=out,
        format=format,
        annotate=annotate,
        log=echo_stderr,
        **runner_options(open_store(store, storage_option), no_cache, batch_size, workers, progress),
        **engine_options(engine, ray_address, actors),
    )
    report_run(stats, strict)


@app.command()
@user_errors
def caption(
    sources: Sources,
    model: Annotated[
        str, typer.Option("--model", "-m", help="BLIP-class captioner: hub id or save_pretrained folder.")
    ] = "Salesforce/blip-image-captioning-base",
    prompt: Annotated[
        Optional[str],
        typer.Option("--prompt", help='Conditional captioning: the text the caption starts with ("a photo of").'),
    ] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="Longest caption in tokens.")] = 30,
    num_beams: Annotated[int, typer.Option("--num-beams", min=1, help="Beam search width (1: greedy).")] = 1,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="Output .jsonl or .csv (default: stdout JSONL).")
    ] = None,
    batch_size: BatchOpt = 8,
    workers: WorkersOpt = None,
    device: DeviceOpt = None,
    no_cache: NoCacheOpt = False,
    strict: StrictOpt = False,
    store: StoreOpt = None,
    progress: ProgressOpt = None,
    engine: EngineOpt = None,
    ray_address: RayAddressOpt = None,
    actors: ActorsOpt = None,
    storage_option: StorageOptionOpt = None,
):
    """Caption every image: {"path", "caption", "error"} per image, cached in the store."""
    from iconograph.description.captions import run_captions

    stats = run_captions(
        sources,
        model=model,
        prompt=prompt,
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
        device=device,
        out=out,
        **runner_options(open_store(store, storage_option), no_cache, batch_size, workers, progress),
        **engine_options(engine, ray_address, actors),
    )
    report_run(stats, strict)


@app.command()
@user_errors
def describe(
    sources: Sources,
    attributes: Annotated[
        Optional[Path], typer.Option("--attributes", "-a", help="CSV with a path column and attribute columns.")
    ] = None,
    tags: Annotated[
        Optional[Path], typer.Option("--tags", help="Tags per image: a classify output (JSONL/CSV).")
    ] = None,
    captions: Annotated[Optional[Path], typer.Option("--captions", help="A caption output (JSONL/CSV).")] = None,
    min_tag_score: Annotated[
        float, typer.Option("--min-tag-score", callback=unit_interval, help="Use --tags labels scoring at least this.")
    ] = 0.0,
    engine: Annotated[str, typer.Option("--engine", help="template | llm")] = "template",
    language: Annotated[
        str, typer.Option("--language", "-l", help="Language code: en, de (templates); any for llm.")
    ] = "en",
    max_words: Annotated[int, typer.Option("--max-words", min=1, help="Word limit, enforced.")] = 120,
    template: Annotated[
        Optional[Path], typer.Option("--template", help="Your own Jinja2 template (instead of the shipped one).")
    ] = None,
    example_text: Annotated[
        Optional[Path], typer.Option("--example-text", help="A text in the wanted style (LLM engine).")
    ] = None,
    llm_url: Annotated[
        Optional[str], typer.Option("--llm-url", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")
    ] = None,
    llm_model: Annotated[Optional[str], typer.Option("--llm-model", help="Model name at the endpoint.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds per LLM request.")] = 60.0,
    retries: Annotated[int, typer.Option("--retries", min=0, help="Retries after timeouts, 429 and 5xx.")] = 2,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="LLM sampling temperature.")] = 0.2,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="LLM requests in flight.")] = 4,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="Output .jsonl or .csv (default: stdout JSONL).")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write cached LLM answers.")] = False,
    strict: StrictOpt = False,
    store: StoreOpt = None,
    progress: ProgressOpt = None,
):
    """Item texts from attributes, tags and captions (API key: $ICONOGRAPH_LLM_API_KEY or $OPENAI_API_KEY)."""
    from iconograph.description import run_describe

    stats = run_describe(
        sources,
        attributes=attributes,
        tags=tags,
        captions=captions,
        min_tag_score=min_tag_score,
        engine=engine,
        language=language,
        max_words=max_words,
        template=template,
        example_file=example_text,
        llm_url=llm_url,
        llm_model=llm_model,
        out=out,
        log=echo_stderr,
        concurrency=concurrency,
        store=store,
        use_cache=not no_cache,
        progress=progress,
        timeout=timeout,
        retries=retries,
        temperature=temperature,
    )
    report_run(stats, strict)


@app.command("convert-boxes")
@user_errors
def convert_boxes(
    source: Annotated[
        Path, typer.Argument(help="COCO .json, VOC folder of .xml files, or YOLO folder.", show_default=False)
    ],
    to: Annotated[str, typer.Option("--to", help="coco | voc | yolo")],
    out: Annotated[Path, typer.Option("--out", "-o", help="A .json file (coco) or a folder (voc, yolo).")],
    images: Annotated[
        Optional[Path], typer.Option("--images", help="Image folder, where the source does not say (VOC, YOLO).")
    ] = None,
):
    """Convert a box dataset between COCO, Pascal VOC and YOLO (integer VOC boxes round-trip exactly)."""
    from iconograph.boxes import read_boxes

    dataset = read_boxes(source, images=images)
    dataset.write(out, to)
    typer.echo(
        f"{len(dataset)} images, {dataset.box_count} boxes, {len(dataset.classes)} classes -> {out} ({to})", err=True
    )


def print_box_metrics(metrics: dict) -> None:
    """The table ``evaluate`` prints for box predictions."""
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"detection evaluation ({metrics['counts']['evaluated']} of {metrics['counts']['truth']} images)"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        if isinstance(value, float):
            table.add_row(name, f"{value:.4f}")
    for name, row in metrics["per_class"].items():
        table.add_row(f"AP {name}", "–" if row["AP"] is None else f"{row['AP']:.4f}")
    Console().print(table)
