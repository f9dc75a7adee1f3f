"""Search and review commands: index, search, serve, export."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from iconograph.cli.common import (
    BatchOpt,
    DeviceOpt,
    ExactDecodeOpt,
    ProgressOpt,
    Sources,
    StoreOpt,
    WorkersOpt,
    app,
    fail,
    make_embedder,
    unit_interval,
    user_errors,
)

CollectionOpt = Annotated[str, typer.Option("--collection", "-c", help="Collection name in the store.")]
FilterOpt = Annotated[
    Optional[list[str]], typer.Option("--filter", help="label=NAME (repeatable; all must hold), reviews included.")
]


def _search_errors(command):
    """Collection and review errors are the user's to fix: one line, exit 2."""
    import functools

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from iconograph.search import CollectionError, ReviewError

        try:
            return command(*args, **kwargs)
        except (CollectionError, ReviewError) as exc:
            fail(" ".join(str(exc).split()))

    return wrapper


@app.command()
@user_errors
@_search_errors
def index(
    sources: Sources,
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
    prune: Annotated[bool, typer.Option("--prune", help="Drop rows whose files no longer exist.")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the index report as JSON.")] = None,
    batch_size: BatchOpt = 32,
    workers: WorkersOpt = None,
    device: DeviceOpt = None,
    store: StoreOpt = None,
    progress: ProgressOpt = None,
    exact_decode: ExactDecodeOpt = False,
):
    """Embed (what the cache lacks), optionally tag, and index images for search and review."""
    from iconograph.backends import DEFAULT_MODEL
    from iconograph.classification.results import read_predictions
    from iconograph.classification.zeroshot import parse_label_list, read_labels_file
    from iconograph.engine.files import atomic_write_text
    from iconograph.search import SearchCollection, TaggerConfig

    if labels is not None and labels_file is not None:
        fail("give at most one of --labels or --labels-file")
    if predictions is not None and (labels or labels_file):
        fail("--predictions and --labels/--labels-file exclude each other")
    target = SearchCollection(collection, store)
    embedder = make_embedder(
        model or target.model_spec or DEFAULT_MODEL,
        store,
        False,
        batch_size,
        workers,
        device,
        progress,
        exact_decode=exact_decode,
    )
    tagger = None
    if labels is not None or labels_file is not None:
        names = parse_label_list(labels) if labels is not None else read_labels_file(labels_file)
        tagger = TaggerConfig(tuple(names), templates, multi_label, threshold, top_k)
    report = target.index(
        sources,
        embedder,
        tagger=tagger,
        predictions=read_predictions(predictions) if predictions else None,
        roots=root or (),
        prune=prune,
        rebuild=rebuild,
        ann_threshold=ann_threshold,
    )
    for path, error in report.failed:
        typer.echo(f"{path}: {error}", err=True)
    for path in report.outside:
        typer.echo(f"{path}: outside the collection roots (add --root)", err=True)
    if json_out:
        atomic_write_text(json_out, json.dumps(report.to_dict(), indent=1))
    typer.echo(f"collection {collection!r}: {report.summary()}", err=True)


@app.command()
@user_errors
@_search_errors
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
    from iconograph.search import SearchCollection

    if sum(x is not None for x in (query, image, like)) != 1:
        fail("give exactly one of QUERY, --image FILE or --like PATH")
    if mode not in ("auto", "exact", "ann"):
        fail("--mode must be auto, exact or ann")
    target = SearchCollection(collection, store).require()
    if like is not None:
        # a path typed in the shell means the file it names from here; else it is collection-relative
        named = os.path.abspath(like) if os.path.exists(like) else like
        hits, used = target.similar(named, k, filters or (), mode)
    else:
        embedder = make_embedder(model or target.model_spec, store, False, 32, 0, device, False)
        if query is not None:
            hits, used = target.search_text(query, embedder, k, filters or (), mode)
        else:
            hits, used = target.search_image(image, embedder, k, filters or (), mode)
    lines = [json.dumps(h.to_record(rank), ensure_ascii=False) + "\n" for rank, h in enumerate(hits, start=1)]
    if out is not None:
        with atomic_open(out) as handle:
            handle.writelines(lines)
    else:
        sys.stdout.writelines(lines)
    state = target.vectors.state()
    how = state.describe() if used == state.mode else f"{used} search"
    typer.echo(f"{len(hits)} hits from {state.rows} images; {how}" + (f" -> {out}" if out else ""), err=True)


@app.command()
@user_errors
@_search_errors
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
    from iconograph.search import SearchCollection, export_predictions, export_reviews

    if reviews == predictions:
        fail("give exactly one of --reviews or --predictions")
    target = SearchCollection(collection, store).require()
    if reviews:
        count = export_reviews(target, out, include_predicted=include_predicted)
        typer.echo(f"{count} reviewed images -> {out}", err=True)
    else:
        count = export_predictions(target, out)
        typer.echo(f"{count} predictions (review-corrected) -> {out}", err=True)


@app.command()
@user_errors
@_search_errors
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
