"""``iconograph compare``: template sets and models on one labelled collection (a thin shell over
:func:`iconograph.evaluation.compare.compare`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperCommand

from iconograph.backends import DEFAULT_MODEL
from iconograph.cli.common import (
    BatchOpt,
    DeviceOpt,
    NoCacheOpt,
    ProgressOpt,
    RuntimeOpt,
    Sources,
    StoreOpt,
    WorkersOpt,
    app,
    embedder_options,
    report_run,
    user_errors,
)

MULTI_VALUE = ("--templates", "--model", "-m", "--shots")


def spread_multi_values(args: list[str], options: tuple[str, ...] = MULTI_VALUE) -> list[str]:
    """``--templates a b c`` -> ``--templates a --templates b --templates c``: the values run to the
    next argument that starts with ``-`` (``--`` ends them and is dropped)."""
    out: list[str] = []
    current, taken = None, False
    for arg in args:
        if current is not None and not arg.startswith("-"):
            out += [current, arg]
            taken = True
            continue
        if current is not None and not taken:
            out.append(current)  # an option with no value: let the parser say so
        if current is not None and arg == "--":
            current = None
            continue
        current, taken = (arg if arg in options else None), False
        if current is None:
            out.append(arg)
    if current is not None and not taken:
        out.append(current)
    return out


class MultiValueCommand(TyperCommand):
    """A command whose :data:`MULTI_VALUE` options take several values after one flag."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        return super().parse_args(ctx, spread_multi_values(list(args)))


@app.command(cls=MultiValueCommand)
@user_errors
def compare(
    sources: Sources,
    truth: Annotated[
        Path, typer.Option("--truth", "-t", help="ImageFolder tree, or CSV/JSONL with path and labels (';'-separated).")
    ],
    labels: Annotated[
        Optional[str], typer.Option("--labels", "-l", help='Comma-separated labels: "zeus,eagle,patera".')
    ] = None,
    labels_file: Annotated[Optional[Path], typer.Option("--labels-file", help="One label per line.")] = None,
    templates: Annotated[
        Optional[list[str]],
        typer.Option(
            "--templates",
            help="Template sets to compare: built-in names (default, openai, photo, none, imagenet, cifar10, cifar100, coins, "
            "artworks, products), files, or one inline template containing '{}'. Several after one --templates.",
        ),
    ] = None,
    model: Annotated[
        Optional[list[str]], typer.Option("--model", "-m", help="Models to compare (several after one --model).")
    ] = None,
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
    ensemble: Annotated[
        bool, typer.Option("--ensemble", help="Add the ensemble of all given template sets (each template once).")
    ] = False,
    sort: Annotated[
        Optional[str], typer.Option("--sort", help="Metric to sort by (default accuracy; mAP for multi-label truth).")
    ] = None,
    head: Annotated[
        Optional[str],
        typer.Option(
            "--head", help="Add a few-shot probe per model: a head on the cached embeddings (logistic, svm, knn, ...)."
        ),
    ] = None,
    shots: Annotated[
        Optional[list[int]],
        typer.Option(
            "--shots", help="Labelled images per class for the probe (several after one --shots; default 1 2 4 8 16)."
        ),
    ] = None,
    test_size: Annotated[
        float, typer.Option("--test-size", help="Probe: fraction of the labelled images held out to score on.")
    ] = 0.5,
    seed: Annotated[int, typer.Option("--seed", help="Probe: seed of the held-out split and the k-shot draws.")] = 0,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write every row (all metrics) as JSON.")] = None,
    csv_out: Annotated[Optional[Path], typer.Option("--csv", help="Write the table as CSV (or TSV by suffix).")] = None,
    report: Annotated[
        Optional[Path], typer.Option("--report", help="Write an HTML page with table and charts.")
    ] = None,
    batch_size: BatchOpt = 32,
    workers: WorkersOpt = None,
    device: DeviceOpt = None,
    no_cache: NoCacheOpt = False,
    store: StoreOpt = None,
    progress: ProgressOpt = None,
    runtime: RuntimeOpt = "auto",
):
    """Compare template sets and models on a labelled collection: one row per (model, template set),
    and with --head/--shots one per (model, k) for a few-shot probe scored on a held-out split."""
    from iconograph.classification.classify import parse_threshold
    from iconograph.evaluation.compare import compare as run_compare
    from iconograph.evaluation.compare import print_table

    result = run_compare(
        sources,
        truth,
        labels,
        labels_file=labels_file,
        templates=templates or ["default"],
        models=model or [DEFAULT_MODEL],
        ensemble=ensemble,
        multi_label=multi_label,
        threshold=parse_threshold(threshold),
        top_k=top_k,
        neutral=neutral,
        sort=sort,
        head=head,
        shots=shots,
        test_size=test_size,
        seed=seed,
        **embedder_options(store, no_cache, batch_size, workers, device, progress, runtime),
    )
    if json_out:
        result.write_json(json_out)
    if csv_out:
        result.write_csv(csv_out)
    if report:
        result.write_report(report)
    print_table(result)
    written = ", ".join(str(p) for p in (json_out, csv_out, report) if p)
    report_run(result.run_stats(written or None), strict=False)
