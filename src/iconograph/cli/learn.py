"""Learning from labels: train, predict, split, report."""

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
    NoCacheOpt,
    ProgressOpt,
    RayAddressOpt,
    RuntimeOpt,
    Sources,
    StoreOpt,
    StrictOpt,
    WorkersOpt,
    app,
    crop_kwargs,
    echo_stderr,
    embedder_options,
    engine_options,
    positive,
    report_run,
    unit_interval,
    user_errors,
)

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
TrainEngineOpt = Annotated[
    Optional[str],
    typer.Option("--engine", help="finetune: local (this process, or torchrun's) or ray (Ray Train workers)."),
]
ProcessesOpt = Annotated[
    Optional[int],
    typer.Option("--processes", min=1, help="finetune, --engine ray: workers (default: one per GPU, else 2)."),
]


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
    crop: CropOpt = None,
    crop_query: CropQueryOpt = None,
    detector: CropDetectorOpt = None,
    crop_margin: CropMarginOpt = 0.05,
    crop_mask: CropMaskOpt = False,
    engine: TrainEngineOpt = None,
    ray_address: RayAddressOpt = None,
    processes: ProcessesOpt = None,
):
    """Train a head on cached embeddings (or fine-tune the backbone) and save a model folder."""
    from iconograph.learning.finetune import FineTuneConfig
    from iconograph.learning.train import train as train_model

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
        report=report,
        log=echo_stderr,
        engine=engine,
        ray_address=ray_address,
        processes=processes,
        **embedder_options(store, no_cache, batch_size, workers, device, progress, runtime, exact_decode),
        **crop_kwargs(crop, crop_query, detector, "largest", crop_margin, crop_mask),
    )
    if model is None:  # under torchrun, a process other than rank 0: rank 0 reports and writes
        return
    _print_metrics(model.info["metrics"])
    echo_stderr(f"model -> {out}")


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
    crop: CropOpt = None,
    crop_query: CropQueryOpt = None,
    detector: CropDetectorOpt = None,
    crop_mode: CropModeOpt = "largest",
    crop_margin: CropMarginOpt = 0.05,
    crop_mask: CropMaskOpt = False,
    engine: EngineOpt = None,
    ray_address: RayAddressOpt = None,
    actors: ActorsOpt = None,
):
    """Labels from a trained model for every image: the same JSONL records as `classify`."""
    from iconograph.learning.model_folder import run_predict

    options = embedder_options(store, no_cache, batch_size, workers, device, progress, runtime, exact_decode)
    options.update(crop_kwargs(crop, crop_query, detector, crop_mode, crop_margin, crop_mask))
    options.update(engine_options(engine, ray_address, actors))
    report_run(run_predict(model, sources, out=out, top_k=top_k, **options), strict)


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
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split.")] = 0,
):
    """Images per split and classes remaining for each --min-count threshold; optionally write the split."""
    from iconograph.learning.splits import format_min_count_table
    from iconograph.learning.train import split_truth

    rows = split_truth(truth, min_count or [1], out=out, multi_label=multi_label, val=val, test=test, seed=seed)
    typer.echo(format_min_count_table(rows))


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
    from iconograph.evaluation.run import report_files

    path = report_files(
        predictions,
        truth,
        out,
        model=model,
        map_method=map_method,
        title=title,
        multi_label=multi_label,
        batch_size=batch_size,
        workers=workers,
        device=device,
        store=store,
        progress=progress,
    )
    echo_stderr(f"report -> {path}")
