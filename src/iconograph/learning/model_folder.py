"""A trained model directory: self-describing, safe to load, movable.

::

    MODEL_DIR/
      iconograph-model.json   backbone (spec, fingerprints, preprocessing), labels, thresholds,
                              head, metrics, split sizes, training settings (written last: a
                              folder without it is an unfinished run)
      head/                   head.json + weights (safetensors; skops for scikit-learn estimators)
      backbone/               fine-tuned models only: the tuned network as a loadable folder
      thresholds.csv          the per-label thresholds (also usable with ``classify --threshold``)
      metrics.json            validation and test metrics
      splits.csv              path,labels,split of every image (``train`` only)
      test_predictions.jsonl  the test split's predictions (``train`` only)

The folder is written as a whole (built beside it, then swapped in): files of an earlier model
there never survive a re-run, while files that are not iconograph's (a report, notes) stay.

A head trained on a backbone's embeddings records the backbone's spec (local folders as absolute
paths) and fingerprint; loading checks the fingerprint so a head is never applied to embeddings
of another model. A fine-tuned model carries its backbone inside and loads from any path.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from iconograph.backends import Backend, load_model
from iconograph.engine.files import atomic_directory, atomic_write_text
from iconograph.engine.runs import RunStats
from iconograph.errors import UserError
from iconograph.learning.heads import Head, load_head

MODEL_FILE = "iconograph-model.json"
SPLITS_FILE = "splits.csv"
TEST_PREDICTIONS = "test_predictions.jsonl"
FORMAT_VERSION = 1
EMBEDDED_BACKBONE = "backbone"
# What a model folder holds; on a re-run these are replaced (``checkpoints/`` is the training's own).
MODEL_ENTRIES = frozenset({MODEL_FILE, "head", EMBEDDED_BACKBONE, "thresholds.csv", "metrics.json", SPLITS_FILE,
                           TEST_PREDICTIONS})


class ModelDirError(UserError):
    """A model directory that cannot be used; one line for the user."""


@dataclass
class TrainedModel:
    head: Head
    backbone: dict  # spec, name, fingerprint, preprocess_fingerprint, data (preprocessing), embedded
    info: dict = field(default_factory=dict)  # metrics, splits, settings
    directory: Path | None = None
    # files saved with the model: name -> a function writing that file at the path it is given
    attachments: dict[str, Callable[[Path], object]] = field(default_factory=dict, repr=False)

    @property
    def labels(self) -> list[str]:
        return self.head.classes_.tolist()

    @property
    def multi_label(self) -> bool:
        return self.head.multi_label_

    def backbone_spec(self) -> str:
        if self.backbone.get("embedded"):
            if self.directory is None:
                raise ModelDirError("a fine-tuned model must be saved before its backbone can be loaded")
            return str(self.directory / EMBEDDED_BACKBONE)
        return self.backbone["spec"]

    def load_backbone(self, device: str | None = None, *, check: bool = True) -> Backend:
        backend = load_model(self.backbone_spec(), device)
        if check and backend.fingerprint != self.backbone["fingerprint"]:
            raise ModelDirError(
                f"this head was trained on embeddings of {self.backbone['spec']} (fingerprint "
                f"{self.backbone['fingerprint']}), but {self.backbone_spec()} now has fingerprint "
                f"{backend.fingerprint}: the weights changed"
            )
        return backend

    def embedder(self, **options):
        from iconograph.engine.embed import Embedder

        device = options.pop("device", None)
        return Embedder(self.load_backbone(device), device=device, **options)

    def predict(self, sources: str | Iterable[str], *, embedder=None, top_k: int | None = None, **embedder_options):
        """Predictions (the ``classify`` JSONL contract) for every image in ``sources``; the crop
        keywords of :func:`iconograph.classify` (``crop``, ``crop_query``, ...) classify boxes."""
        from iconograph.classification.classify import iter_predictions
        from iconograph.engine.crops import pop_crop_options
        from iconograph.reading.sources import read_collection

        crop = pop_crop_options(embedder_options)
        embedder = embedder or self.embedder(**embedder_options)
        return list(iter_predictions(read_collection(sources), HeadClassifier(self.head, top_k), embedder, crop))

    def write_predictions(
        self, sources: str | Iterable[str], out: str | Path | None, *, top_k: int | None = None, **embedder_options
    ) -> RunStats:
        """:meth:`predict` written as it runs to ``out`` (JSONL or CSV by suffix; ``None``: JSONL on
        stdout); returns the run's counts."""
        from iconograph.classification.classify import iter_predictions, write_predictions_run
        from iconograph.engine.crops import pop_crop_options
        from iconograph.reading.sources import read_collection

        crop = pop_crop_options(embedder_options)
        items = read_collection(sources)
        embedder = self.embedder(**embedder_options)
        predictions = iter_predictions(items, HeadClassifier(self.head, top_k), embedder, crop)
        return write_predictions_run(predictions, len(items), embedder, out)

    # ---- files ------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write the model folder as a whole (see the module's docstring)."""
        directory = Path(directory)
        tuned = Path(self.directory) / EMBEDDED_BACKBONE if self.backbone.get("embedded") and self.directory else None
        keep_own = tuned is not None and tuned.resolve() == (directory / EMBEDDED_BACKBONE).resolve()

        def earlier_output(entry: Path) -> bool:  # a fine-tuned backbone already in place stays
            return entry.name in MODEL_ENTRIES and not (keep_own and entry.name == EMBEDDED_BACKBONE)

        with atomic_directory(directory, earlier_output) as tmp:
            self.head.save(tmp / "head")
            if tuned is not None and not keep_own:
                shutil.copytree(tuned, tmp / EMBEDDED_BACKBONE)
            for name, write in self.attachments.items():
                write(tmp / name)
            atomic_write_text(tmp / "thresholds.csv", _thresholds_csv(self.labels, self.head.thresholds_))
            atomic_write_text(tmp / "metrics.json", json.dumps(self.info.get("metrics", {}), indent=1))
            atomic_write_text(tmp / MODEL_FILE, json.dumps(self._description(), indent=1))
        self.directory = directory
        return directory

    def _description(self) -> dict:
        return {
            "format": "iconograph-model",
            "format_version": FORMAT_VERSION,
            "task": "multi-label" if self.multi_label else "single-label",
            "labels": self.labels,
            "thresholds": dict(zip(self.labels, map(float, self.head.thresholds_))),
            "max_labels": self.head.max_labels,
            "head": {"kind": self.head.kind, "path": "head"},
            "backbone": self.backbone,
            **self.info,
        }

    @classmethod
    def load(cls, directory: str | Path) -> TrainedModel:
        directory = Path(directory).expanduser()
        path = directory / MODEL_FILE
        if not path.is_file():
            raise ModelDirError(f"{directory} is not a trained model folder (no {MODEL_FILE}; unfinished training?)")
        description = json.loads(path.read_text())
        if description.get("format_version", 0) > FORMAT_VERSION:
            raise ModelDirError(
                f"{directory} was written by a newer iconograph (format {description['format_version']})"
            )
        head = load_head(directory / description["head"]["path"])
        info = {
            k: v
            for k, v in description.items()
            if k not in ("format", "format_version", "task", "labels", "thresholds", "max_labels", "head", "backbone")
        }
        return cls(head, description["backbone"], info, directory)


def is_model_dir(path: str | Path) -> bool:
    return (Path(path) / MODEL_FILE).is_file()


def portable_spec(backend: Backend) -> str:
    """The backend's spec with local files made absolute, so it resolves from any working directory."""
    spec = backend.spec
    prefix, sep, body = spec.partition(":")
    known = sep and prefix in ("hf", "timm", "onnx", "open_clip")
    head, body = (f"{prefix}:", body) if known else ("", spec)
    if Path(body).expanduser().exists():
        return head + str(Path(body).expanduser().resolve())
    checkpoint = getattr(backend, "checkpoint", None)
    if checkpoint:
        return f"{head}{body.partition('/')[0]}/{Path(checkpoint).resolve()}"
    return spec


def describe_backbone(backend: Backend, *, embedded: bool = False) -> dict:
    """What a model directory records about the backbone its head was trained on."""
    return {
        "spec": EMBEDDED_BACKBONE if embedded else portable_spec(backend),
        "name": backend.name,
        "fingerprint": backend.fingerprint,
        "preprocess_fingerprint": backend.preprocess_fingerprint,
        "cache_key": backend.cache_key,
        "preprocessing": _preprocessing(backend),
        "embedded": embedded,
    }


def _preprocessing(backend: Backend) -> dict | None:
    """A readable account of the pixel pipeline (the fingerprint is what is checked)."""
    data = getattr(backend, "data_config", None)
    if data:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}
    if backend.name == "transformers":
        return json.loads(backend.image_processor.to_json_string())
    return None


class HeadClassifier:
    """A head as :func:`~iconograph.classification.classify.iter_predictions` wants a classifier: ``predict`` gives
    label tuples (:meth:`Head.decide`), single-label ones ``top_k`` long."""

    def __init__(self, head: Head, top_k: int | None = None):
        self.head, self.top_k = head, top_k

    def predict(self, vectors):
        return self.head.decide(vectors, top_k=self.top_k)


def run_predict(
    model: str | Path,
    sources: str | Iterable[str],
    *,
    out: str | Path | None = None,
    top_k: int | None = None,
    **embedder_options,
) -> RunStats:
    """Labels from the model folder ``model`` for every image (``iconograph predict``): see
    :meth:`TrainedModel.write_predictions`."""
    return TrainedModel.load(model).write_predictions(sources, out, top_k=top_k, **embedder_options)


def _thresholds_csv(labels, thresholds) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["label", "threshold"])
    writer.writerows((label, f"{float(t):.6g}") for label, t in zip(labels, thresholds))
    return buffer.getvalue()
