"""What every command shares: the Typer app, common options, the summary line and error handling.

Exit status:

- 0: the run completed (unreadable images are reported, not fatal);
- 1: a bug: Python's traceback is printed (please report it);
- 2: a usage error, printed as one line ``error: ...``: a :class:`~iconograph.errors.UserError`
  (bad argument, option, source, model, labels), or a ``FileNotFoundError``,
  ``IsADirectoryError`` or ``PermissionError``, which on the command line are about a path the
  user gave (a missing file, a folder where a file was expected, an unwritable ``--out``);
- 3: with ``--strict``, when any image or item failed.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Optional

import typer

from iconograph.engine.runs import RunStats
from iconograph.errors import UserError, one_line

app = typer.Typer(
    name="iconograph",
    help="Tell what an image collection depicts, and how sure it is.\n\n"
    "The commands in the order data flows: read a collection, embed it, decide what it shows, then "
    "use and check the results. Every [bold]iconograph COMMAND --help[/bold] ends with examples.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

EXIT_USAGE = 2
EXIT_FAILED_IMAGES = 3

Sources = Annotated[
    list[Path],
    typer.Argument(
        help="Image files, folders (recursive) or dataset files (CSV, JSONL, COCO JSON).", show_default=False
    ),
]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Hub id, local folder, open_clip:ARCH/TAG, ...")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Output file; format by extension.")]
StoreOpt = Annotated[
    Optional[str],
    typer.Option(
        "--store",
        help="Store folder or object-storage URI (s3://bucket/prefix) for the cache and indexes. "
        "Default: $ICONOGRAPH_STORE or ~/.cache/iconograph/store.",
    ),
]
StorageOptionOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--storage-option",
        help="KEY=VALUE for an object-storage store (aws_endpoint, region, allow_http ...); repeatable. "
        "The AWS_* environment variables are read too.",
    ),
]
EngineOpt = Annotated[
    Optional[str],
    typer.Option(
        "--engine", help="local (this process) or ray (a Ray cluster: Ray Data). Default: $ICONOGRAPH_ENGINE or local."
    ),
]
RayAddressOpt = Annotated[
    Optional[str],
    typer.Option(
        "--ray-address", help="Ray cluster to join (auto: the running one). Default: $RAY_ADDRESS or a new local one."
    ),
]
ActorsOpt = Annotated[
    Optional[int],
    typer.Option("--actors", min=1, help="Model replicas with --engine ray (default: one per GPU, or per 4 CPUs)."),
]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Images per model batch.")]
WorkersOpt = Annotated[
    Optional[int], typer.Option("--workers", min=0, help="Decoding worker processes (default: spare cores).")
]
DeviceOpt = Annotated[
    Optional[str], typer.Option("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available).")
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the embedding cache.")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Exit with status 3 when any image or item failed.")]
RuntimeOpt = Annotated[
    str,
    typer.Option(
        "--runtime",
        help="Image tower runtime: auto (ONNX Runtime on CPU for large jobs), torch, onnx, or onnx-int8 (faster, approximate).",
    ),
]
ExactDecodeOpt = Annotated[
    bool,
    typer.Option(
        "--exact-decode",
        help="Decode every image at full size (bit-parity with reference pipelines) instead of "
        "reducing large ones to twice the model's input first (faster, within PSNR 35 dB).",
    ),
]
ProgressOpt = Annotated[
    Optional[bool], typer.Option("--progress/--no-progress", help="Progress bars (default: when stderr is a terminal).")
]
CropOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--crop", help="Embed each image's box, not the photo: a detect/segment JSONL or a COCO/VOC/YOLO box file."
    ),
]
CropQueryOpt = Annotated[
    Optional[str], typer.Option("--crop-query", help="Embed the box --detector finds for this word (e.g. coin).")
]
CropDetectorOpt = Annotated[
    Optional[str],
    typer.Option("--detector", help="For --crop-query: OWL-ViT / OWLv2 (boxes) or SAM3 / CLIPSeg (masks)."),
]
CropModeOpt = Annotated[
    str, typer.Option("--crop-mode", help="largest: the largest box per image; each: one record per box.")
]
CropMarginOpt = Annotated[
    float, typer.Option("--crop-margin", min=0.0, help="Widen the box by this fraction of its size on every side.")
]
CropMaskOpt = Annotated[
    bool, typer.Option("--crop-mask", help="Blank the crop outside the box's mask (when it has one).")
]


def unit_interval(value: float | None) -> float | None:
    """Option callback: a threshold, score or probability must be a number from 0 to 1 (not nan)."""
    if value is not None and not 0.0 <= value <= 1.0:  # min=/max= let nan through
        raise typer.BadParameter(f"{value} is not a number from 0 to 1")
    return value


def positive(value: float | None) -> float | None:
    if value is not None and not 0.0 < value < float("inf"):
        raise typer.BadParameter(f"{value} is not a positive number")
    return value


USER_PATH_ERRORS = (FileNotFoundError, IsADirectoryError, PermissionError)


def user_errors(command):
    """Turn the errors a user can fix into one line and exit status 2; anything else is a bug and
    keeps its traceback (exit status 1)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (UserError, *USER_PATH_ERRORS) as exc:
            typer.echo(f"error: {exc.cli_line() if isinstance(exc, UserError) else one_line(exc)}", err=True)
            raise typer.Exit(EXIT_USAGE) from None

    return wrapper


def report_run(stats: RunStats, strict: bool) -> None:
    """The summary line of a batch command on stderr; with ``--strict``, exit 3 when any item failed."""
    typer.echo(stats.summary(), err=True)
    if strict and stats.failed:
        raise typer.Exit(EXIT_FAILED_IMAGES)


def echo_stderr(message: str) -> None:
    typer.echo(message, err=True)


def embedder_options(
    store, no_cache, batch_size, workers, device, progress, runtime="auto", exact_decode=False
) -> dict:
    """The common options as :class:`~iconograph.engine.embed.Embedder` keywords."""
    return {
        "store": store,
        "use_cache": not no_cache,
        "batch_size": batch_size,
        "workers": workers,
        "device": device,
        "progress": progress,
        "runtime": runtime,
        "exact_decode": exact_decode,
    }


def runner_options(store, no_cache, batch_size, workers, progress) -> dict:
    """The common options as :class:`~iconograph.engine.jobs.ImageJobRunner` keywords (detect, caption)."""
    return {
        "store": store,
        "use_cache": not no_cache,
        "batch_size": batch_size,
        "workers": workers,
        "progress": progress,
    }


def open_store(store: str | None, storage_option: list[str] | None):
    """``--store`` with its ``--storage-option KEY=VALUE``s as a :class:`~iconograph.engine.store.Store`."""
    from iconograph.engine.store import Store
    from iconograph.errors import OptionError

    options = {}
    for text in storage_option or ():
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"--storage-option {text!r} is not KEY=VALUE")
        options[key.strip()] = value
    return Store(store, options)


def engine_options(engine: str | None, ray_address: str | None, actors: int | None) -> dict:
    """``--engine``, ``--ray-address`` and ``--actors`` as keywords of the embedder or job runner."""
    return {"engine": engine, "ray_address": ray_address, "actors": actors}


def crop_kwargs(crop, crop_query, detector, crop_mode, crop_margin, crop_mask) -> dict:
    """The ``--crop*`` options as keywords of classify / embed."""
    return {
        "crop": crop,
        "crop_query": crop_query,
        "detector": detector,
        "crop_mode": crop_mode,
        "crop_margin": crop_margin,
        "crop_mask": crop_mask,
    }
