"""From labelled images to a trained model directory.

Data path: images + truth -> drop rare classes -> stratified split -> embeddings (cached) ->
head fitted on train, hyper-parameters and thresholds chosen on val -> predictions and metrics
on test -> :class:`~iconograph.learning.model_folder.TrainedModel` saved to ``out``.

``head="finetune"`` trains the backbone's image tower instead (see :mod:`iconograph.learning.finetune`);
the tuned backbone is saved inside the model directory and everything after training (val
embeddings for thresholds, test predictions) goes through the same embedding path ``predict``
uses.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from iconograph.backends import DEFAULT_MODEL, Backend, load_model
from iconograph.engine.crops import pop_crop_options
from iconograph.engine.embed import Embedder
from iconograph.errors import DataError, OptionError
from iconograph.learning.heads import Head, make_head
from iconograph.learning.model_folder import (
    SPLITS_FILE,
    TEST_PREDICTIONS,
    HeadClassifier,
    TrainedModel,
    describe_backbone,
)
from iconograph.learning.splits import (
    MinCountRow,
    Split,
    drop_rare,
    format_min_count_table,
    is_multi_label_items,
    min_count_table,
    split_items,
)
from iconograph.reading.sources import Item, SourceError, path_key, read_collection

FINETUNE = "finetune"
HEAD_CHOICES = ("logistic", "svm", "knn", "mlp", "voting", FINETUNE)  # "linear" only holds fine-tuned weights


def labelled_items(sources: str | os.PathLike | Iterable, truth: str | os.PathLike | None = None) -> list[Item]:
    """The images of ``sources`` with their labels in ``truth``, matched by path.

    Without ``truth``, SOURCE is the truth: an ImageFolder tree (label = folder name) or a
    labelled CSV/JSONL. Either way each image appears once, so no image can land in two splits.
    """
    from iconograph.evaluation.metrics import read_truth

    if truth is None:
        try:
            items = read_truth(sources)
        except SourceError as exc:
            raise SourceError(f"{exc}; give the labels with --truth") from None
    else:
        by_key = {path_key(t.path): t for t in read_truth(truth) if t.labels}
        images: dict[str, Item] = {}
        for item in read_collection(sources):
            images.setdefault(path_key(item.path), item)  # an image named twice in SOURCE is one image
        items = [
            Item(item.path, by_key[key].labels, {**by_key[key].meta, **item.meta})
            for key, item in images.items()
            if key in by_key
        ]
    items = [item for item in items if item.labels]
    if not items:
        raise DataError("no image in SOURCE has a label in TRUTH (images and truth are matched by path)")
    return items


def prepare_split(
    items: Sequence[Item],
    *,
    min_count: int | None = None,
    val: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    multi_label: bool | None = None,
) -> tuple[Split, list[MinCountRow]]:
    """Drop classes rarer than ``min_count``, then split; also the table row(s) that describe it."""
    multi_label = is_multi_label_items(items) if multi_label is None else multi_label
    thresholds = [1] + ([min_count] if min_count and min_count > 1 else [])
    table = min_count_table(items, thresholds, val=val, test=test, seed=seed, multi_label=multi_label)
    kept = drop_rare(items, min_count) if min_count else list(items)
    split = split_items(kept, val=val, test=test, seed=seed, multi_label=multi_label)
    if len({label for item in split.train for label in item.labels}) < 2:
        raise DataError("fewer than two classes left to train on (lower --min-count?)")
    return split, table


def train(
    sources,
    truth=None,
    *,
    head: str | Head = "logistic",
    backbone: str | Backend = DEFAULT_MODEL,
    out: str | os.PathLike | None = None,
    multi_label: bool | None = None,
    min_count: int | None = None,
    val: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    max_labels: int | None = None,
    head_params: dict | None = None,
    finetune=None,
    resume: bool = False,
    keep_checkpoints: bool = False,
    report: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
    engine: str | None = None,
    ray_address: str | None = None,
    processes: int | None = None,
    **embedder_options,
) -> TrainedModel | None:
    """Train a head (or fine-tune) on labelled images and save the model directory to ``out``.

    ```python
    model = ig.train("coins/", "truth.csv", head="logistic", backbone="./my-clip", multi_label=True, out="m/")
    model.info["metrics"]["test"]["f1_samples"]
    ```

    ``head="finetune"`` launched by ``torchrun --nproc-per-node N`` trains data-parallel (see
    :mod:`iconograph.learning.finetune.distributed`); rank 0 writes ``out`` and returns the model,
    the other processes return None. ``engine="ray"`` runs the same data-parallel fine-tuning in
    ``processes`` Ray Train workers (default: one per GPU, else 2) of the cluster at
    ``ray_address`` (see :mod:`iconograph.learning.finetune.ray_train`); ``out`` must be reachable
    from every worker.

    ``report``: write the HTML report of the test split there (needs ``out``). ``log`` gets the
    progress lines, and with ``min_count`` the table of classes kept.
    """
    if isinstance(head, str) and head not in HEAD_CHOICES:
        raise OptionError(f"--head must be one of {', '.join(HEAD_CHOICES)}")
    if report is not None and out is None:
        raise OptionError("--report needs --out: the report is made from the model folder's test predictions")
    if resume:
        check_resumable(head, out)
    if engine not in (None, "local", "ray"):
        raise OptionError(f"--engine must be local or ray, not {engine!r}")
    if processes is not None and engine != "ray":
        raise OptionError("--processes applies with --engine ray (under torchrun: --nproc-per-node)")
    if engine == "ray":
        arguments = {
            "sources": sources,
            "truth": truth,
            "head": head,
            "backbone": backbone,
            "out": out,
            "multi_label": multi_label,
            "min_count": min_count,
            "val": val,
            "test": test,
            "seed": seed,
            "max_labels": max_labels,
            "finetune": finetune,
            "resume": resume,
            "keep_checkpoints": keep_checkpoints,
            "report": report,
            **embedder_options,
        }
        return _train_on_ray(arguments, ray_address, processes, log)
    from iconograph.learning.finetune.distributed import current_ranks

    log = log if log and current_ranks().main else (lambda message: None)  # rank 0 reports
    model = _fit(
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
        head_params=head_params,
        finetune=finetune,
        resume=resume,
        keep_checkpoints=keep_checkpoints,
        log=log,
        **embedder_options,
    )
    if model is None:  # a data-parallel process other than rank 0, which writes the model folder
        return None
    if min_count:
        log(format_min_count_table([MinCountRow(**row) for row in model.info["min_count"]["table"]]))
    if report is not None and model.info["metrics"].get("test"):
        from iconograph.evaluation.report import write_full_report

        title = f"{model.head.kind} head, test split"
        write_full_report(Path(out) / TEST_PREDICTIONS, test_split_truth(out), report, title=title)
        log(f"report -> {report}")
    return model


def _train_on_ray(arguments: dict, address: str | None, processes: int | None, log) -> TrainedModel:
    """``train(**arguments)`` in every Ray Train worker; the model folder rank 0 wrote."""
    from iconograph.learning.finetune import FineTuneConfig
    from iconograph.learning.finetune.ray_train import train_on_ray

    if arguments["head"] != FINETUNE:
        raise OptionError("--engine ray applies to --head finetune only (the other heads train in one process)")
    if not isinstance(arguments["backbone"], str):
        raise OptionError("--engine ray loads the backbone in every worker: give it as a name or folder")
    if arguments["out"] is None:
        raise OptionError("fine-tuning needs --out: the tuned backbone is saved in the model folder")
    config = arguments["finetune"] or FineTuneConfig()
    device = config.device or arguments.get("device")
    train_on_ray(arguments, address=address, processes=processes, batch_size=config.batch_size, device=device, log=log)
    return TrainedModel.load(arguments["out"])


def check_resumable(head, out) -> None:
    """``resume`` continues a fine-tuning run from its last checkpoint; anything else is said, not
    silently retrained from scratch."""
    from iconograph.learning.finetune.trainer import CHECKPOINT
    from iconograph.learning.model_folder import is_model_dir

    kind = head if isinstance(head, str) else head.kind
    if kind != FINETUNE:
        raise OptionError(f"--resume continues a fine-tuning run (--head finetune); a {kind} head trains in one go")
    if out is None:
        raise OptionError("--resume needs --out: the model folder whose checkpoints/ to continue from")
    if (Path(out) / "checkpoints" / CHECKPOINT).is_file():
        return
    if is_model_dir(out):
        raise OptionError(
            f"{out} holds a finished model and no checkpoint to resume (checkpoints are kept only with "
            "--keep-checkpoints); train again without --resume"
        )
    raise OptionError(f"nothing to resume: {Path(out) / 'checkpoints'} has no {CHECKPOINT}; start without --resume")


def _fit(
    sources,
    truth,
    *,
    head,
    backbone,
    out,
    multi_label,
    min_count,
    val,
    test,
    seed,
    max_labels,
    head_params,
    finetune,
    resume,
    keep_checkpoints,
    log: Callable[[str], None],
    **embedder_options,
) -> TrainedModel:
    crop = pop_crop_options(embedder_options)
    if crop is not None and crop.mode != "largest":
        raise OptionError("train crops each image to its largest box (--crop-mode each is for classify and predict)")
    items = labelled_items(sources, truth)
    multi_label = is_multi_label_items(items) if multi_label is None else multi_label
    split, table = prepare_split(items, min_count=min_count, val=val, test=test, seed=seed, multi_label=multi_label)
    log(f"split: {len(split.train)} train, {len(split.val)} val, {len(split.test)} test images")
    backend = load_model(backbone, embedder_options.get("device"))
    kind = head if isinstance(head, str) else head.kind
    if kind == FINETUNE:
        if crop is not None:
            raise OptionError("fine-tuning reads whole images; --crop works with the heads")
        if out is None:
            raise OptionError("fine-tuning needs --out: the tuned backbone is saved in the model folder")
        return _finetune(
            backend,
            split,
            multi_label,
            max_labels,
            finetune,
            Path(out),
            resume,
            keep_checkpoints,
            log,
            embedder_options,
            context={"min_count": min_count, "table": table, "seed": seed, "val": val, "test": test},
        )
    embedder = Embedder(backend, **embedder_options)
    train_x, train_y = _embed(embedder, split.train, log, crop)
    val_x, val_y = _embed(embedder, split.val, log, crop)
    model_head = (
        make_head(head, multi_label=multi_label, max_labels=max_labels, **(head_params or {}))
        if isinstance(head, str)
        else head
    )
    log(f"fitting the {model_head.kind} head on {len(train_x)} embeddings ({train_x.shape[1]}-d)")
    model_head.fit(train_x, train_y, eval_set=(val_x, val_y) if len(val_y) else None)
    if len(val_y):
        model_head.calibrate(val_x, val_y)
    extra = {"crop": _describe_crop(crop)} if crop is not None else {}
    info = _info(model_head, split, table, min_count, seed, val, test, extra=extra)
    model = TrainedModel(model_head, describe_backbone(backend), info)
    _evaluate_splits(model, embedder, split, multi_label, out, crop)
    if out is not None:
        model.save(out)
    return model


def _embed(embedder: Embedder, items: Sequence[Item], log, crop=None) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Embeddings of the items (of each item's largest box, with ``crop``) and their labels."""
    if not items:
        return np.zeros((0, 0), np.float32), []
    paths = [item.path for item in items]
    if crop is None:
        result = embedder.embed_images(paths)
    else:
        from iconograph.engine.crops import iter_crop_embeddings
        from iconograph.engine.embed import ImageEmbeddings

        result = ImageEmbeddings.concatenate(list(iter_crop_embeddings(embedder, paths, crop)))
    ok = result.ok
    if not ok.all():
        log(f"{int((~ok).sum())} unreadable images{' or images without a box' if crop else ''} left out")
    return result.vectors[ok], [item.labels for item, good in zip(items, ok) if good]


def _info(head: Head, split: Split, table, min_count, seed, val, test, extra: dict) -> dict:
    from iconograph._version import __version__

    return {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "iconograph_version": __version__,
        "splits": split.sizes,
        "min_count": {"applied": min_count, "table": [row.__dict__ for row in table]},
        "training": {
            "head": head.kind,
            "params": head.get_params(),
            "fitted": head._fitted_description(),
            "seed": seed,
            "val_fraction": val,
            "test_fraction": test,
            **extra,
        },
        "metrics": {},
    }


def write_splits(split: Split, path: Path) -> None:
    """path,labels,split for every image (absolute paths): the exact split, and a truth file for evaluate."""
    import csv

    from iconograph.engine.files import atomic_open
    from iconograph.reading.sources import LABEL_SEPARATOR

    with atomic_open(path, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "labels", "split"])
        for item, name in split.assignments():
            writer.writerow([str(Path(item.path).resolve()), LABEL_SEPARATOR.join(item.labels), name])


def split_truth(
    truth,
    min_count: Sequence[int] = (1,),
    *,
    out: str | os.PathLike | None = None,
    multi_label: bool | None = None,
    val: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
) -> list[MinCountRow]:
    """Images per split and classes left for each ``min_count`` threshold (``iconograph split``);
    with ``out``, the split for the first threshold is written as ``path,labels,split`` CSV."""
    items = labelled_items(truth)
    rows = min_count_table(items, min_count, val=val, test=test, seed=seed, multi_label=multi_label)
    if out is not None:
        kept = drop_rare(items, min_count[0])
        write_splits(split_items(kept, val=val, test=test, seed=seed, multi_label=multi_label), out)
    return rows


def test_split_truth(model_dir: str | os.PathLike) -> list[Item]:
    """The test images of a model folder, with their truth labels."""
    return [item for item in read_collection(Path(model_dir) / SPLITS_FILE) if item.meta.get("split") == "test"]


def _describe_crop(crop) -> dict:
    """How the training images were cropped (recorded in the model folder; predict needs the same)."""
    return {
        "boxes": None if crop.boxes is None else str(crop.boxes),
        "query": crop.query,
        "detector": crop.detector,
        "margin": crop.margin,
        "mask": crop.mask,
    }


def _evaluate_splits(model: TrainedModel, embedder: Embedder, split: Split, multi_label: bool, out, crop=None) -> None:
    """Validation and test metrics through the prediction path; test predictions kept beside the model."""
    from iconograph.classification.classify import iter_predictions
    from iconograph.classification.results import write_predictions
    from iconograph.evaluation.metrics import evaluate

    model.attachments[SPLITS_FILE] = lambda path: write_splits(split, path)

    for name, items in (("val", split.val), ("test", split.test)):
        if not items:
            continue
        predictions = list(iter_predictions(items, HeadClassifier(model.head), embedder, crop))
        truth = {item.path: item.labels for item in items}
        model.info["metrics"][name] = evaluate(predictions, truth, multi_label=multi_label)
        if name == "test":
            model.attachments[TEST_PREDICTIONS] = lambda path, kept=predictions: write_predictions(kept, path)


def _finetune(
    backend, split, multi_label, max_labels, config, out: Path, resume, keep_checkpoints, log, options, context
):
    import shutil

    from iconograph.learning.finetune import FineTuneConfig, FineTuner
    from iconograph.learning.heads import LinearHead
    from iconograph.learning.model_folder import EMBEDDED_BACKBONE

    config = config or FineTuneConfig(
        device=options.get("device"), workers=options.get("workers"), seed=context["seed"]
    )
    classes = sorted({label for item in split.train for label in item.labels})
    tuner = FineTuner(backend, classes, multi_label, config)
    checkpoints = out / "checkpoints"
    result = tuner.fit(
        split.train, split.val, checkpoint_dir=checkpoints, resume=resume, log=log, progress=options.get("progress")
    )
    if not tuner.ranks.main:
        return None
    tuner.save_backbone(out / EMBEDDED_BACKBONE)
    coef, intercept = tuner.classifier_weights()
    head = LinearHead.from_weights(coef, intercept, classes, multi_label=multi_label, max_labels=max_labels)
    tuned = load_model(str(out / EMBEDDED_BACKBONE), options.get("device"))
    embedder = Embedder(tuned, **options)
    if split.val:
        val_x, val_y = _embed(embedder, split.val, log)
        head.calibrate(val_x, val_y)
    from dataclasses import asdict

    extra = {"finetune": {**asdict(config), "result": result.to_dict(), "source_backbone": describe_backbone(backend)}}
    info = _info(
        head, split, context["table"], context["min_count"], context["seed"], context["val"], context["test"], extra
    )
    model = TrainedModel(head, describe_backbone(tuned, embedded=True), info, out)
    _evaluate_splits(model, embedder, split, multi_label, out)
    model.save(out)
    if not keep_checkpoints:
        shutil.rmtree(checkpoints, ignore_errors=True)
    return model
