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

import csv
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from iconograph.backends import Scoring
from iconograph.results import LabelScore

TEMPLATE_SETS = ("default", "openai", "photo", "none")
DEFAULT_TOP_K = 5


class LabelError(ValueError):
    """Unusable labels, templates or thresholds; the message is one line for the user."""


def load_templates(templates: str | Sequence[str] | None = "default") -> list[str]:
    """A built-in set (``default``, ``openai``, ``photo``, ``none``), a file (one per line), or a list."""
    if templates is None:
        templates = "default"
    if isinstance(templates, str):
        if templates in TEMPLATE_SETS:
            text = resources.files("iconograph").joinpath(f"templates/{templates}.txt").read_text()
        elif Path(templates).is_file():
            text = Path(templates).read_text(encoding="utf-8")
        else:
            raise LabelError(
                f"templates '{templates}' is neither a built-in set ({', '.join(TEMPLATE_SETS)}) nor a file"
            )
        templates = [line.rstrip("\n") for line in text.splitlines() if line.strip() and not line.startswith("#")]
    templates = list(templates)
    bad = [t for t in templates if "{}" not in t]
    if not templates or bad:
        raise LabelError(
            f"every template needs a '{{}}' for the label; got {bad[0]!r}" if bad else "no templates given"
        )
    return templates


def read_labels_file(path: str | Path) -> list[str]:
    """One label per line (blank lines and ``#`` comments skipped)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def parse_label_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def read_thresholds(path: str | Path) -> dict[str, float]:
    """Per-label thresholds: a JSON object ``{label: t}`` or a CSV with ``label,threshold`` rows."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text())
        data = data.get("thresholds", data)
        return {str(k): float(v) for k, v in data.items()}
    rows = [row for row in csv.reader(path.read_text(encoding="utf-8").splitlines()) if row and row[0].strip()]
    if rows and rows[0][0].strip().lower() == "label":
        rows = rows[1:]
    try:
        return {row[0].strip(): float(row[1]) for row in rows}
    except (IndexError, ValueError):
        raise LabelError(f"{path}: thresholds CSV rows must be 'label,threshold'") from None


def normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def ensemble_text_embeddings(text_vectors: np.ndarray, n_labels: int, n_templates: int) -> np.ndarray:
    """(labels * templates, d) rows, label-major -> (labels, d) normalised ensemble means."""
    per_template = normalize(text_vectors.reshape(n_labels, n_templates, -1))
    return normalize(per_template.mean(axis=1))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free


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
        labels = list(dict.fromkeys(str(label).strip() for label in labels if str(label).strip()))
        if not labels:
            raise LabelError("no labels given")
        self.labels = labels
        self.templates = load_templates(templates)
        self.multi_label = multi_label
        self.threshold = threshold
        self.top_k = top_k
        self.neutral = neutral
        unknown = set(threshold) - set(labels) if isinstance(threshold, Mapping) else set()
        if unknown:
            raise LabelError(f"thresholds given for labels that are not classified: {', '.join(sorted(unknown))}")
        if isinstance(threshold, Mapping):  # labels without their own threshold keep 0.5
            self._thresholds = np.array([float(threshold.get(label, 0.5)) for label in labels])
        else:
            self._thresholds = np.full(len(labels), float(threshold))

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
        cosine = normalize(np.asarray(image_vectors, np.float64)) @ self.label_embeddings_.astype(np.float64).T
        scale = self.scoring_.logit_scale
        if not self.multi_label:
            return _softmax(scale * cosine)
        if self.scoring_.sigmoid:
            return _sigmoid(scale * cosine + self.scoring_.logit_bias)
        neutral = normalize(np.asarray(image_vectors, np.float64)) @ self.neutral_embedding_.astype(np.float64)
        return _sigmoid(scale * (cosine - neutral[:, None]))

    def decide(self, scores: np.ndarray) -> tuple[LabelScore, ...]:
        """One image's scores to its sorted labels: top-k, or those at/above their threshold."""
        order = np.argsort(-scores, kind="stable")
        if self.multi_label:
            keep = [i for i in order if scores[i] >= self._thresholds[i]]
            keep = keep[: self.top_k] if self.top_k else keep
        else:
            keep = order[: self.top_k or DEFAULT_TOP_K]
        return tuple(LabelScore(self.labels[i], float(scores[i])) for i in keep)

    def predict(self, image_vectors: np.ndarray) -> list[tuple[LabelScore, ...]]:
        return [self.decide(row) for row in self.predict_proba(image_vectors)]
