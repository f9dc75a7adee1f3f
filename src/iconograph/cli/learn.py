"""Learning from labels: train, predict, split, report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from iconograph.backends import DEFAULT_MODEL
from iconograph.cli.common import (
    EXIT_FAILED_IMAGES,
    BatchOpt,
    DeviceOpt,
    ExactDecodeOpt,
    NoCacheOpt,
    ProgressOpt,
    RuntimeOpt,
    Sources,
    StoreOpt,
    StrictOpt,
    WorkersOpt,
    app,
    fail,
    make_embedder,
    positive,
    unit_interval,
    user_errors,
)

HEAD_CHOICES = ("logistic", "svm", "knn", "mlp", "voting", "finetune")
TruthOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--truth", "-t", help="ImageFolder tree, or CSV/JSONL with path and labels (default: SOURCE's labels)."
    ),
]
MultiLabelOpt = Annotated[
    Optional[bool],
    typer.Option("--multi-label/--single-label", help="Default: multi-label when any image has other than one label."),
]
ValOpt = Annotated[float, typer.Option("--val", min=0.0, max=0.9, help="Validation fraction.")]
TestOpt = Annotated[float, typer.Option("--test", min=0.0, max=0.9, help="Test fraction.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the split (and of fine-tuning).")]


def _echo(message: str) -> None:
    typer.echo(message, err=True)


@app.command()
@user_errors
def train(
    sources: Sources,
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write.")],
    truth: TruthOpt = None,
    head: Annotated[str, typer.Option("--head", help="logistic | svm | knn | mlp | voting | finetune")] = "logistic",
    backbone: Annotated[
        str, typer.Option("--backbone", "-m", help="Hub id, folder, timm:NAME, onnx:FILE, open_clip:ARCH/TAG.")
    ] = DEFAULT_MODEL,
    multi_label: MultiLabelOpt = None,
    min_count: Annotated[
        Optional[int], typer.Option("--min-count", min=1, help="Drop classes with fewer than N images first.")
    ] = None,
    val: ValOpt = 0.1,
    test: TestOpt = 0.1,
    seed: SeedOpt = 0,
    c: Annotated[
        Optional[float],
        typer.Option("--C", callback=positive, help="logistic/svm: fixed C (default: chosen on validation)."),
    ] = None,
    neighbors: Annotated[
        Optional[int], typer.Option("--k", min=1, help="knn: fixed k (default: chosen on validation).")
    ] = None,
    max_labels: Annotated[
        Optional[int], typer.Option("--max-labels", min=1, help="Multi-label: at most this many labels per image.")
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="finetune: epochs.")] = 10,
    lr: Annotated[float, typer.Option("--lr", help="finetune: backbone learning rate (head: 10x).")] = 1e-4,
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="finetune: AdamW weight decay.")] = 0.05,
    warmup_epochs: Annotated[float, typer.Option("--warmup-epochs", help="finetune: linear warm-up.")] = 1.0,
    freeze_blocks: Annotated[
        int, typer.Option("--freeze-blocks", help="finetune: freeze the stem and the first N blocks (0: train all).")
    ] = 0,
    patience: Annotated[int, typer.Option("--patience", min=1, help="finetune: early-stopping patience.")] = 3,
    pos_weight: Annotated[
        bool, typer.Option("--pos-weight", help="finetune, multi-label: weight positives by negatives/positives.")
    ] = False,
    grayscale_prob: Annotated[
        float,
        typer.Option(
            "--grayscale-prob",
            min=0.0,
            max=1.0,
            callback=unit_interval,
            help="finetune: random grayscale (coin photos).",
        ),
    ] = 0.0,
    amp: Annotated[
        Optional[bool], typer.Option("--amp/--no-amp", help="finetune: mixed precision (default: on CUDA).")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="finetune: continue from OUT/checkpoints.")] = False,
    keep_checkpoints: Annotated[
        bool, typer.Option("--keep-checkpoints", help="finetune: keep OUT/checkpoints.")
    ] = False,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write the HTML report of the test split.")] = None,
    batch_size: BatchOpt = 32,
    workers: WorkersOpt = None,
    device: DeviceOpt = None,
    no_cache: NoCacheOpt = False,
    store: StoreOpt = None,
    progress: ProgressOpt = None,
    runtime: RuntimeOpt = "auto",
    exact_decode: ExactDecodeOpt = False,
):
    """Train a head on cached embeddings (or fine-tune the backbone) and save a model folder."""
    from iconograph.engine.store import Store
    from iconograph.learning.finetune import FineTuneConfig
    from iconograph.learning.train import train as train_model

    if head not in HEAD_CHOICES:
        fail(f"--head must be one of {', '.join(HEAD_CHOICES)}")
    params = {}
    if c is not None and head in ("logistic", "svm"):
        params["C"] = c
    if neighbors is not None and head == "knn":
        params["n_neighbors"] = neighbors
    finetune = FineTuneConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        warmup_epochs=warmup_epochs,
        freeze_blocks=freeze_blocks,
        patience=patience,
        pos_weight=pos_weight,
        grayscale_prob=grayscale_prob,
        amp=amp,
        device=device,
        workers=workers,
        seed=seed,
    )
    model = train_model(
        sources,
        truth,
        head=head,
        backbone=backbone,
        out=out,
        multi_label=multi_label,
        min_count=min_count,
        val=val,
        test=test,
        seed=seed,
        max_labels=max_labels,
        head_params=params,
        finetune=finetune,
        resume=resume,
        keep_checkpoints=keep_checkpoints,
        log=_echo,
        store=Store(store) if store else None,
        use_cache=not no_cache,
        batch_size=batch_size,
        workers=workers,
        device=device,
        progress=progress,
        runtime=runtime,
        exact_decode=exact_decode,
    )
    if min_count:
        from iconograph.learning.splits import MinCountRow, format_min_count_table

        rows = [MinCountRow(**row) for row in model.info["min_count"]["table"]]
        _echo(format_min_count_table(rows))
    _print_metrics(model.info["metrics"])
    if report and model.info["metrics"].get("test"):
        from iconograph.evaluation.report import write_full_report
        from iconograph.learning.train import TEST_PREDICTIONS, test_split_truth

        write_full_report(
            out / TEST_PREDICTIONS, test_split_truth(out), report, title=f"{model.head.kind} head, test split"
        )
        _echo(f"report -> {report}")
    _echo(f"model -> {out}")


def _print_metrics(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    splits = [name for name in ("val", "test") if metrics.get(name)]
    if not splits:
        return
    table = Table(title="trained model")
    table.add_column("metric")
    for name in splits:
        table.add_column(name, justify="right")
    names = [k for k, v in metrics[splits[0]].items() if isinstance(v, float)]
    for name in names:
        table.add_row(name, *(f"{metrics[s].get(name, float('nan')):.4f}" for s in splits))
    Console(stderr=True).print(table)


@app.command()
@user_errors
def predict(
    sources: Sources,
    model: Annotated[Path, typer.Option("--model", "-m", help="A model folder written by `iconograph train`.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output file; .jsonl or .csv.")] = None,
    top_k: Annotated[
        Optional[int], typer.Option("--top-k", min=1, help="Single-label: labels per image (default 5).")
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
    """Labels from a trained model for every image: the same JSONL records as `classify`."""
    from iconograph.classification.classify import iter_predictions
    from iconograph.cli.core import summarize, write_or_print
    from iconograph.learning.model_folder import HeadClassifier, TrainedModel
    from iconograph.reading.sources import read_collection

    trained = TrainedModel.load(model)
    items = read_collection(sources)
    embedder = make_embedder(
        trained.load_backbone(device), store, no_cache, batch_size, workers, device, progress, runtime, exact_decode
    )
    failed = write_or_print(iter_predictions(items, HeadClassifier(trained.head, top_k), embedder), out)
    summarize(len(items), failed, embedder, out)
    if strict and failed:
        raise typer.Exit(EXIT_FAILED_IMAGES)


@app.command()
@user_errors
def split(
    truth: Annotated[Path, typer.Argument(help="ImageFolder tree or CSV/JSONL with path and labels.")],
    min_count: Annotated[
        Optional[list[int]], typer.Option("--min-count", min=1, help="Threshold(s) to tabulate; repeat for several.")
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="Write path,labels,split as CSV (for the first threshold).")
    ] = None,
    multi_label: MultiLabelOpt = None,
    val: ValOpt = 0.1,
    test: TestOpt = 0.1,
    seed: SeedOpt = 0,
):
    """Images per split and classes remaining for each --min-count threshold; optionally write the split."""
    from iconograph.learning.splits import drop_rare, format_min_count_table, min_count_table, split_items
    from iconograph.learning.train import labelled_items

    items = labelled_items(truth)
    thresholds = min_count or [1]
    rows = min_count_table(items, thresholds, val=val, test=test, seed=seed, multi_label=multi_label)
    typer.echo(format_min_count_table(rows))
    if out is not None:
        from iconograph.learning.train import write_splits

        write_splits(
            split_items(drop_rare(items, thresholds[0]), val=val, test=test, seed=seed, multi_label=multi_label), out
        )


@app.command()
@user_errors
def report(
    predictions: Annotated[Path, typer.Argument(help="Predictions JSONL or CSV (from classify or predict).")],
    truth: Annotated[Path, typer.Option("--truth", "-t", help="ImageFolder tree, or CSV/JSONL with path and labels.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file; its PNGs go to OUT_files/.")],
    model: Annotated[
        Optional[str],
        typer.Option("--model", "-m", help="Backbone or trained model folder for the embedding map (default: scores)."),
    ] = None,
    map_method: Annotated[
        str, typer.Option("--map", help="auto | umap | tsne | pca (auto: UMAP above 300 images, t-SNE above 30).")
    ] = "auto",
    title: Annotated[str, typer.Option("--title", help="Report title.")] = "iconograph evaluation",
    multi_label: MultiLabelOpt = None,
    batch_size: BatchOpt = 32,
    workers: WorkersOpt = None,
    device: DeviceOpt = None,
    store: StoreOpt = None,
    progress: ProgressOpt = None,
):
    """The evaluation report: one self-contained HTML file plus its PNGs."""
    from iconograph.evaluation.report import write_full_report

    embedder = None
    if model:
        from iconograph.learning.model_folder import TrainedModel, is_model_dir

        spec = TrainedModel.load(model).load_backbone(device) if is_model_dir(model) else model
        embedder = make_embedder(spec, store, False, batch_size, workers, device, progress)
    path = write_full_report(
        predictions, truth, out, embedder=embedder, map_method=map_method, title=title, multi_label=multi_label
    )
    _echo(f"report -> {path}")
