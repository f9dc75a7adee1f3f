"""Zero-shot classification and tagging from label names, with prompt templates and ensembles.

Label embeddings follow the CLIP paper: each label is written into every template, the text
embeddings are L2-normalised, averaged, and the mean is normalised again.

Scores:

* single-label: softmax over labels of ``logit_scale * cos(image, label)`` (what CLIP does);
* multi-label, sigmoid models (SigLIP): ``sigmoid(logit_scale * cos + logit_bias)``, the model's
  own per-pair probability;
* multi-label, softmax models (CLIP): each label competes only with a neutral prompt
  (default ``"object"``, through the same templates):
  ``sigmoid(logit_scale * (cos(image, label) - cos(image, neutral)))`` — the two-way softmax of
  "label" against "neutral". Scores do not compete across labels, so an image can carry many.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from iconograph.backends import Scoring
from iconograph.classification.decisions import (
    DEFAULT_THRESHOLD,
    check_threshold,
    decide,
    l2_normalize,
    sigmoid,
    softmax,
)
from iconograph.classification.results import LabelScore
from iconograph.errors import UserError
from iconograph.reading.sources import clean_label
from iconograph.reading.textfiles import read_csv, read_json, read_lines

TEMPLATE_SETS = (
    "default", "openai", "photo", "none", "imagenet", "cifar10", "cifar100", "coins", "artworks", "products"
)  # fmt: skip
# CLIP's 80 ImageNet templates are the openai set; its CIFAR-100 templates are its 18 CIFAR-10 ones
TEMPLATE_FILES = {"imagenet": "openai", "cifar100": "cifar10"}


class LabelError(UserError):
    """Unusable labels, templates or thresholds; the message is one line for the user."""


def load_templates(templates: str | Sequence[str] | None = "default") -> list[str]:
    """A built-in set (:data:`TEMPLATE_SETS`), a file (one per line, ``#`` comments), or a list."""
    if templates is None:
        templates = "default"
    if isinstance(templates, str):
        if templates in TEMPLATE_SETS:
            text = (
                resources.files("iconograph.classification")
                .joinpath(f"templates/{TEMPLATE_FILES.get(templates, templates)}.txt")
                .read_text(encoding="utf-8")
            )
            lines = text.splitlines()
        elif Path(templates).is_file():
            lines = [line for _, line in read_lines(templates)]
        else:
            raise LabelError(
                f"templates '{templates}' is neither a built-in set ({', '.join(TEMPLATE_SETS)}) nor a file"
            )
        templates = [line for line in lines if line.strip() and not line.startswith("#")]
    templates = list(templates)
    bad = [t for t in templates if "{}" not in t]
    if not templates or bad:
        raise LabelError(
            f"every template needs a '{{}}' for the label; got {bad[0]!r}" if bad else "no templates given"
        )
    return templates


def read_labels_file(path: str | Path) -> list[str]:
    """One label per line (blank lines and ``#`` comments skipped), each checked by :func:`clean_label`."""
    labels = []
    for number, line in read_lines(path):
        if line.strip() and not line.lstrip().startswith("#"):
            try:
                labels.append(clean_label(line))
            except ValueError as exc:
                raise LabelError(f"{path}: line {number}: {exc}") from None
    return labels


def parse_label_list(text: str) -> list[str]:
    try:
        return [label for label in map(clean_label, text.split(",")) if label]
    except ValueError as exc:
        raise LabelError(str(exc)) from None


def read_thresholds(path: str | Path) -> dict[str, float]:
    """Per-label thresholds in [0, 1]: a JSON object ``{label: t}`` or a CSV with ``label,threshold`` rows.

    The CSV's header row (``label,threshold``) is optional; a label given twice is an error.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        data = read_json(path)
        data = data.get("thresholds", data) if isinstance(data, dict) else data
        if not isinstance(data, dict):
            raise LabelError(f"{path}: a thresholds JSON file must be an object {{label: threshold}}")
        rows = [(f"label {label!r}", [label, value]) for label, value in data.items()]
    else:
        rows = [(f"line {number}", row) for number, row in read_csv(path, header=False)]
        if rows and [cell.strip().lower() for cell in rows[0][1]] == ["label", "threshold"]:
            rows = rows[1:]
    thresholds: dict[str, float] = {}
    for where, row in rows:
        try:
            if len(row) != 2:
                raise ValueError(f"{len(row)} fields where 'label,threshold' was expected")
            label = clean_label(row[0])
            if not label or label in thresholds:
                raise ValueError(f"label {label!r} is {'given twice' if label else 'empty'}")
            thresholds[label] = check_threshold(row[1].strip() if isinstance(row[1], str) else row[1])
        except ValueError as exc:
            raise LabelError(f"{path}: {where}: {exc}") from None
    return thresholds


def ensemble_text_embeddings(text_vectors: np.ndarray, n_labels: int, n_templates: int) -> np.ndarray:
    """(labels * templates, d) rows, label-major -> (labels, d) normalised ensemble means."""
    per_template = l2_normalize(text_vectors.reshape(n_labels, n_templates, -1))
    return l2_normalize(per_template.mean(axis=1))


class ZeroShotClassifier:
    """Scores images against label names. Needs no fit: :meth:`prepare` embeds the prompts.

    >>> clf = ZeroShotClassifier(["zeus", "eagle"], multi_label=True).prepare(embedder)
    >>> clf.predict(image_vectors)  # [[LabelScore("eagle", 0.81)], ...]
    """

    def __init__(
        self,
        labels: Sequence[str],
        *,
        templates: str | Sequence[str] | None = "default",
        multi_label: bool = False,
        threshold: float | Mapping[str, float] = 0.5,
        top_k: int | None = None,
        neutral: str = "object",
    ):
        try:
            labels = list(dict.fromkeys(label for label in map(clean_label, map(str, labels)) if label))
            thresholds = (
                {str(k): check_threshold(v) for k, v in threshold.items()}
                if isinstance(threshold, Mapping)
                else check_threshold(threshold)
            )
        except ValueError as exc:
            raise LabelError(str(exc)) from None
        if not labels:
            raise LabelError("no labels given")
        if top_k is not None and top_k < 1:
            raise LabelError(f"top_k must be at least 1, not {top_k}")
        self.labels = labels
        self.templates = load_templates(templates)
        self.multi_label = multi_label
        self.threshold = threshold
        self.top_k = top_k
        self.neutral = neutral
        unknown = set(thresholds) - set(labels) if isinstance(thresholds, Mapping) else set()
        if unknown:
            raise LabelError(f"thresholds given for labels that are not classified: {', '.join(sorted(unknown))}")
        if isinstance(thresholds, Mapping):  # labels without their own threshold keep the default
            self._thresholds = np.array([thresholds.get(label, DEFAULT_THRESHOLD) for label in labels])
        else:
            self._thresholds = np.full(len(labels), thresholds)

    def prepare(self, embedder) -> ZeroShotClassifier:
        """Embed every label in every template (cached) and read the model's scoring."""
        self.scoring_: Scoring = embedder.scoring()
        self.label_embeddings_ = self._embed_prompts(embedder, self.labels)
        needs_neutral = self.multi_label and not self.scoring_.sigmoid
        self.neutral_embedding_ = self._embed_prompts(embedder, [self.neutral])[0] if needs_neutral else None
        return self

    def _embed_prompts(self, embedder, names: Sequence[str]) -> np.ndarray:
        prompts = [template.format(name) for name in names for template in self.templates]
        return ensemble_text_embeddings(embedder.embed_texts(prompts), len(names), len(self.templates))

    def predict_proba(self, image_vectors: np.ndarray) -> np.ndarray:
        """(n, labels) scores for raw (unnormalised) image embeddings."""
        images = l2_normalize(np.asarray(image_vectors, np.float64))
        cosine = images @ self.label_embeddings_.astype(np.float64).T
        scale = self.scoring_.logit_scale
        if not self.multi_label:
            return softmax(scale * cosine)
        if self.scoring_.sigmoid:
            return sigmoid(scale * cosine + self.scoring_.logit_bias)
        neutral = images @ self.neutral_embedding_.astype(np.float64)
        return sigmoid(scale * (cosine - neutral[:, None]))

    def decide(self, scores: np.ndarray) -> tuple[LabelScore, ...]:
        """One image's scores to its labels, best first (see :meth:`decide_rows`)."""
        return self.decide_rows(np.asarray(scores)[None])[0]

    def decide_rows(self, scores: np.ndarray) -> list[tuple[LabelScore, ...]]:
        """(n, labels) scores to label tuples: the top-k, or (multi-label) those at/above their
        threshold, at most ``top_k`` of them."""
        return decide(
            scores,
            self.labels,
            multi_label=self.multi_label,
            thresholds=self._thresholds,
            max_labels=self.top_k,
            top_k=self.top_k,
        )

    def predict(self, image_vectors: np.ndarray) -> list[tuple[LabelScore, ...]]:
        return self.decide_rows(self.predict_proba(image_vectors))
