"""Zero-shot labels for one uploaded image."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile
from pydantic import BaseModel

from iconograph.classification.zeroshot import parse_label_list
from iconograph.service.dependencies import State, require_token
from iconograph.service.limits import LabelsForm, TemplatesForm, ThresholdForm, TopKForm

router = APIRouter(tags=["classify"], dependencies=[Depends(require_token)])


class ScoredLabel(BaseModel):
    label: str
    score: float


class Classified(BaseModel):
    """The classify JSONL record."""

    path: str
    labels: list[ScoredLabel]
    error: str | None = None


@router.post("/api/classify")
def classify(
    state: State,
    file: Annotated[UploadFile, File(description="The image.")],
    labels: LabelsForm,
    multi_label: Annotated[bool, Form()] = False,
    threshold: ThresholdForm = 0.5,
    top_k: TopKForm = None,
    templates: TemplatesForm = "default",
    collection_name: Annotated[str | None, Form(alias="collection", description="Use this collection's model.")] = None,
) -> Classified:
    """Zero-shot labels for one uploaded image (the classify JSONL record)."""
    spec = state.collection(collection_name).model_spec if collection_name else state.config.model
    data = file.file.read()
    names = tuple(parse_label_list(labels))
    classifier = state.models.classifier(spec, names, templates, multi_label, threshold, top_k)
    decided = classifier.predict(state.models.embed_upload(spec, data)[None])[0]
    return Classified(
        path=file.filename or "upload", labels=[ScoredLabel(label=ls.label, score=ls.score) for ls in decided]
    )
