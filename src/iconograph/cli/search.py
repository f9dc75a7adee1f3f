"""Search and review commands: index, search, serve, export."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

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
    ProgressOpt,
    RayAddressOpt,
    StoreOpt,
    WorkersOpt,
    app,
    crop_kwargs,
    echo_stderr,
    engine_options,
    unit_interval,
    user_errors,
)

CollectionOpt = Annotated[str, typer.Option("--collection", "-c", help="Collection name in the store.")]
FilterOpt = Annotated[
    Optional[list[str]], typer.Option("--filter", help="label=NAME (repeatable; all must hold), reviews included.")
]


OptionalSources = Annotated[
    Optional[list[Path]],
    typer.Argument(
        help="Image files, folders (recursive) or dataset files (CSV, JSONL, COCO JSON). "
        "May be left out with --target-recall/--bench (tune the collection as it is).",
        show_default=False,
    ),
]


@app.command()
@user_errors
def index(
    sources: OptionalSources = None,
    collection: CollectionOpt = "default",
    model: Annotated[
        Optional[str], typer.Option("--model", "-m", help="Default: the collection's model, else the default model.")
    ] = None,
    labels: Annotated[
        Optional[str], typer.Option("--labels", "-l", help="Tag every image zero-shot with these labels (a,b,c).")
    ] = None,
    labels_file: Annotated[Optional[Path], typer.Option("--labels-file", help="Tag with one label per line.")] = None,
    predictions: Annotated[
        Optional[Path],
        typer.Option("--predictions", help="Attach predictions from classify/predict (JSONL/CSV) instead of tagging."),
    ] = None,
    templates: Annotated[str, typer.Option("--templates", help="Prompt templates for tagging.")] = "default",
    multi_label: Annotated[bool, typer.Option("--multi-label", help="Independent per-label tag scores.")] = False,
    threshold: Annotated[
        float, typer.Option("--threshold", callback=unit_interval, help="Multi-label threshold.")
    ] = 0.5,
    top_k: Annotated[Optional[int], typer.Option("--top-k", min=1, help="Tags kept per image.")] = None,
    root: Annotated[
        Optional[list[Path]], typer.Option("--root", help="Extra folder the service may serve images from.")
    ] = None,
    ann_threshold: Annotated[
        Optional[int], typer.Option("--ann-threshold", min=2, help="Rows from which an ANN index is built (20000).")
    ] = None,
    rebuild: Annotated[
        bool, typer.Option("--rebuild-index", help="Build the ANN index now, whatever the size.")
    ] = False,
    index_type: Annotated[
        Optional[str], typer.Option("--index-type", help="ANN index: IVF_HNSW_SQ (default) or IVF_PQ; remembered.")
    ] = None,
    target_recall: Annotated[
        Optional[float],
        typer.Option(
            "--target-recall",
            help="Tune the ANN query settings on queries from the collection to reach this recall@10; stored.",
        ),
    ] = None,
    bench: Annotated[
        bool, typer.Option("--bench", help="Print the recall/latency table of the ANN query settings.")
    ] = False,
    prune: Annotated[bool, typer.Option("--prune", help="Drop rows whose files no longer exist.")] = False,
    regions: Annotated[
        Optional[Path],
        typer.Option("--regions", help="A detect or segment JSONL: its boxes and masks are drawn in the review page."),
    ] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the index report as JSON.")] = None,
    batch_size: BatchOpt = 32,
    workers: WorkersOpt = None,
    device: DeviceOpt = None,
    store: StoreOpt = None,
    progress: ProgressOpt = None,
    exact_decode: ExactDecodeOpt = False,
    engine: EngineOpt = None,
    ray_address: RayAddressOpt = None,
    actors: ActorsOpt = None,
    crop: CropOpt = None,
    crop_query: CropQueryOpt = None,
    detector: CropDetectorOpt = None,
    crop_mode: CropModeOpt = "largest",
    crop_margin: CropMarginOpt = 0.05,
    crop_mask: CropMaskOpt = False,
):
    """Embed (what the cache lacks), optionally tag, and index images for search and review;
    --target-recall / --bench tune and measure the ANN query settings of the collection.
    With --crop / --crop-query each image's largest box is what is embedded (the row keeps the
    image)."""
    from iconograph.engine.files import atomic_write_text
    from iconograph.errors import OptionError
    from iconograph.search.run import index_collection, tune_collection

    if not sources and target_recall is None and not bench:
        raise OptionError("give SOURCE (images to index), or --target-recall/--bench to tune the collection")
    if sources:
        report = index_collection(
            sources,
            collection,
            store=store,
            model=model,
            labels=labels,
            labels_file=labels_file,
            predictions=predictions,
            templates=templates,
            multi_label=multi_label,
            threshold=threshold,
            top_k=top_k,
            roots=root or (),
            prune=prune,
            rebuild=rebuild,
            ann_threshold=ann_threshold,
            index_type=index_type,
            regions=regions,
            **crop_kwargs(crop, crop_query, detector, crop_mode, crop_margin, crop_mask),
            batch_size=batch_size,
            workers=workers,
            device=device,
            progress=progress,
            exact_decode=exact_decode,
            **engine_options(engine, ray_address, actors),
        )
        for path, error in report.failed:
            echo_stderr(f"{path}: {error}")
        for path in report.outside:
            echo_stderr(f"{path}: outside the collection roots (add --root)")
        if json_out:
            atomic_write_text(json_out, json.dumps(report.to_dict(), indent=1))
        echo_stderr(f"collection {collection!r}: {report.summary()}")
    if target_recall is not None or bench:
        tuning = tune_collection(collection, target_recall=target_recall, store=store)
        typer.echo(tuning.table())
        if target_recall is not None:
            echo_stderr(
                f"collection {collection!r}: query settings {tuning.chosen.settings.describe()} stored "
                f"(recall@{tuning.k} {tuning.chosen.recall:.3f} on tuning queries, "
                f"{tuning.heldout.recall:.3f} held out)"
            )


@app.command()
@user_errors
def search(
    query: Annotated[Optional[str], typer.Argument(help="Text to search for.", show_default=False)] = None,
    image: Annotated[Optional[Path], typer.Option("--image", help="Search by an image file instead.")] = None,
    like: Annotated[
        Optional[str],
        typer.Option(
            "--like", help="More like this indexed image (a path from here, or relative to the collection's folders)."
        ),
    ] = None,
    collection: CollectionOpt = "default",
    filters: FilterOpt = None,
    k: Annotated[int, typer.Option("-k", "--top", min=1, help="Results to return.")] = 20,
    mode: Annotated[str, typer.Option("--mode", help="auto | exact | ann (auto: ann once an index exists).")] = "auto",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write hits as JSONL (default: stdout).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Default: the collection's model.")] = None,
    device: DeviceOpt = None,
    store: StoreOpt = None,
):
    """Nearest images to a text, an image file, or an indexed image (cosine similarity)."""
    from iconograph.engine.files import atomic_open
    from iconograph.search.run import search_collection

    found = search_collection(
        collection,
        text=query,
        image=image,
        like=like,
        k=k,
        filters=filters or (),
        mode=mode,
        model=model,
        store=store,
        device=device,
    )
    lines = [json.dumps(h.to_record(rank), ensure_ascii=False) + "\n" for rank, h in enumerate(found.hits, start=1)]
    if out is not None:
        with atomic_open(out) as handle:
            handle.writelines(lines)
    else:
        sys.stdout.writelines(lines)
    echo_stderr(found.summary() + (f" -> {out}" if out else ""))


@app.command()
@user_errors
def export(
    collection: CollectionOpt = "default",
    reviews: Annotated[
        bool, typer.Option("--reviews", help="Reviewed images' labels as path,labels (truth for evaluate/train).")
    ] = False,
    predictions: Annotated[
        bool, typer.Option("--predictions", help="Every image's prediction corrected by review (classify format).")
    ] = False,
    include_predicted: Annotated[
        bool, typer.Option("--include-predicted", help="--reviews: keep predicted labels nobody rejected.")
    ] = False,
    out: Annotated[Path, typer.Option("--out", "-o", help=".csv/.tsv or .jsonl")] = ...,
    store: StoreOpt = None,
):
    """Write reviewed labels or review-corrected predictions."""
    from iconograph.search.run import export_collection

    count = export_collection(
        out, collection, reviews=reviews, predictions=predictions, include_predicted=include_predicted, store=store
    )
    what = "reviewed images" if reviews else "predictions (review-corrected)"
    echo_stderr(f"{count} {what} -> {out}")


@app.command()
@user_errors
def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port (0: any free port).")] = 8000,
    token_file: Annotated[
        Optional[Path],
        typer.Option("--token-file", help="Read the access token from this file; created (mode 600) if missing."),
    ] = None,
    model: Annotated[
        Optional[str], typer.Option("--model", "-m", help="Model for /api/classify (default: the default model).")
    ] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="Largest accepted upload.")] = 20.0,
    store: StoreOpt = None,
    device: DeviceOpt = None,
):
    """Serve the API (OpenAPI docs at /docs) and the review page."""
    import uvicorn

    from iconograph.backends import DEFAULT_MODEL
    from iconograph.service import ServiceConfig, create_app, load_or_create_token

    token = load_or_create_token(token_file)
    config = ServiceConfig(
        store=store,
        model=model or DEFAULT_MODEL,
        token=token,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        device=device,
    )
    application = create_app(config)
    server = uvicorn.Server(uvicorn.Config(application, host=host, port=port, log_level="warning"))
    original_startup = server.startup

    async def startup(sockets=None):
        await original_startup(sockets)
        bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        where = f"token in {token_file}" if token_file else f"token {token}"
        typer.echo(f"iconograph serving on http://{shown}:{bound}/ ({where})", err=True)
        typer.echo(f"open http://{shown}:{bound}/?token={token}", err=True)

    server.startup = startup
    server.run()
