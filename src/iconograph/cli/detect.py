"""Locate and describe: detect, caption, describe, convert-boxes (and box evaluation for evaluate)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from iconograph.cli.common import (
    EXIT_FAILED_IMAGES,
    BatchOpt,
    DeviceOpt,
    NoCacheOpt,
    ProgressOpt,
    Sources,
    StoreOpt,
    StrictOpt,
    WorkersOpt,
    app,
    fail,
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
):
    """Find and box what the queries name: one record per image (boxes in pixels, sorted by score)."""
    from iconograph.classification.zeroshot import parse_label_list, read_labels_file
    from iconograph.detection import DetectionWriter, OwlDetector, iter_detections
    from iconograph.detection.run import output_format
    from iconograph.engine.jobs import ImageJobRunner
    from iconograph.reading.sources import read_collection

    if queries is not None and queries_file is not None:
        fail("give --queries or --queries-file, not both")
    texts = parse_label_list(queries) if queries is not None else read_labels_file(queries_file) if queries_file else []
    fmt = output_format(out, format)
    items = read_collection(sources)
    detector = OwlDetector(
        model,
        queries=texts,
        image_queries=image_queries,
        threshold=threshold,
        nms_iou=nms_iou,
        clip=clip,
        device=device,
    ).prepare()
    runner = ImageJobRunner(
        detector,
        store=store,
        use_cache=not no_cache,
        batch_size=batch_size,
        workers=workers,
        progress=progress,
        description="detecting",
    )
    boxes = 0
    drawn: dict[str, int] = {}
    with DetectionWriter(out, fmt, detector.classes_) as writer:
        for result in iter_detections(items, detector, runner):
            writer.write(result)
            boxes += len(result.detections) if result.detections is not None else 0
            if annotate is not None and result.error is None:
                _annotate(result, annotate, drawn)
    for failed in writer.failed:
        if fmt != "jsonl":
            typer.echo(f"{failed.path}: {failed.error}", err=True)
    where = f" -> {out}" if out else ""
    typer.echo(
        f"{len(items)} images: {len(items) - len(writer.failed)} ok, {len(writer.failed)} failed; {boxes} boxes; "
        f"{runner.stats.computed} computed, {runner.stats.cached} from cache{where}",
        err=True,
    )
    if strict and writer.failed:
        raise typer.Exit(EXIT_FAILED_IMAGES)


def _annotate(result, folder: Path, used: dict[str, int]) -> None:
    from iconograph.detection import save_annotated
    from iconograph.reading.decode import DecodeError, read_image

    path = Path(result.path)
    used[path.name] = used.get(path.name, 0) + 1  # the same name from two folders: name-2.jpg, ...
    name = path.name if used[path.name] == 1 else f"{path.stem}-{used[path.name]}{path.suffix}"
    target = folder / name
    if target.exists() and target.resolve() == path.resolve():
        raise ValueError(f"--annotate {folder} would overwrite the original {path}")
    try:
        save_annotated(read_image(path).image, result.detections, target)
    except DecodeError as exc:  # changed since it was detected
        typer.echo(f"{path}: not annotated: {exc}", err=True)


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
):
    """Caption every image: {"path", "caption", "error"} per image, cached in the store."""
    from iconograph.description.captions import Captioner, iter_captions, write_captions
    from iconograph.engine.jobs import ImageJobRunner
    from iconograph.reading.sources import read_collection

    items = read_collection(sources)
    captioner = Captioner(model, prompt=prompt, max_new_tokens=max_new_tokens, num_beams=num_beams, device=device)
    runner = ImageJobRunner(
        captioner,
        store=store,
        use_cache=not no_cache,
        batch_size=batch_size,
        workers=workers,
        progress=progress,
        description="captioning",
    )
    captions = iter_captions(items, captioner, runner)
    _, failed = write_captions(captions, out)
    where = f" -> {out}" if out else ""
    typer.echo(
        f"{len(items)} images: {len(items) - failed} ok, {failed} failed; "
        f"{runner.stats.computed} captioned, {runner.stats.cached} from cache{where}",
        err=True,
    )
    if strict and failed:
        raise typer.Exit(EXIT_FAILED_IMAGES)


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
    from iconograph.description import Describer, gather_facts, make_engine, write_descriptions
    from iconograph.reading.sources import read_collection

    if engine == "template" and (llm_url or llm_model or example_text):
        fail("--llm-url, --llm-model and --example-text need --engine llm")
    if engine == "template" and template is None:
        from iconograph.description import TemplateEngine

        shipped = TemplateEngine().available_languages()
        if language not in shipped:
            fail(
                f"no template for language '{language}' (shipped: {', '.join(shipped)}); pass --template FILE.j2 or use --engine llm"
            )
    style = example_text.read_text(encoding="utf-8") if example_text else None
    chosen = (
        make_engine(
            engine,
            template=template,
            example_text=style,
            llm_url=llm_url,
            llm_model=llm_model,
            timeout=timeout,
            retries=retries,
            temperature=temperature,
        )
        if engine == "llm"
        else make_engine(engine, template=template)
    )
    facts = gather_facts(
        read_collection(sources), attributes=attributes, tags=tags, captions=captions, min_tag_score=min_tag_score
    )
    describer = Describer(
        chosen,
        language=language,
        max_words=max_words,
        concurrency=concurrency,
        store=store,
        use_cache=not no_cache,
        progress=progress,
    )
    descriptions = describer.describe(facts)
    truncated = 0

    def counted():
        nonlocal truncated
        for item in descriptions:
            truncated += item.truncated
            if item.error:
                typer.echo(f"{item.path}: {item.error}", err=True)
            yield item

    try:
        _, failed = write_descriptions(counted(), out)
    finally:
        if hasattr(chosen, "close"):
            chosen.close()
    where = f" -> {out}" if out else ""
    typer.echo(
        f"{len(facts)} items: {len(facts) - failed} described, {failed} failed, {truncated} cut to the word limit{where}",
        err=True,
    )
    if strict and failed:
        raise typer.Exit(EXIT_FAILED_IMAGES)


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


def evaluate_boxes(predictions: Path, truth: Path, report: Path | None, json_out: Path | None) -> None:
    """``evaluate`` for box predictions (called by the core command when the records have boxes)."""
    from rich.console import Console
    from rich.table import Table

    from iconograph.boxes import evaluate_detections
    from iconograph.engine.files import atomic_write_text

    metrics = evaluate_detections(predictions, truth)
    if json_out:
        atomic_write_text(json_out, json.dumps(metrics, indent=2))
    if report:
        from iconograph.evaluation.report.detection import write_detection_report

        write_detection_report(metrics, report)
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
