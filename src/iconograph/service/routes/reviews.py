"""Review decisions: record one, list them all."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from iconograph.search import Action, Review
from iconograph.service.dependencies import NamedCollection, require_token
from iconograph.service.limits import ItemPath, Label, Reviewer

router = APIRouter(tags=["review"], dependencies=[Depends(require_token)])


class ReviewIn(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)  # JSON's NaN/Infinity literals are refused

    path: ItemPath = Field(description="The image's path as listed by the collection (or relative to its folders).")
    label: Label
    action: Action
    box: tuple[float, float, float, float] | None = Field(
        None, description="Optional [x1, y1, x2, y2] in image pixels."
    )
    reviewer: Reviewer = ""


@router.post("/api/collections/{name}/reviews", status_code=201)
def review(collection: NamedCollection, body: ReviewIn) -> dict:
    """Record one decision; it is committed to the store before this returns."""
    stored = collection.review(Review(body.path, body.label, body.action, body.box, body.reviewer))
    return stored.to_record()


@router.get("/api/collections/{name}/reviews")
def reviews(collection: NamedCollection) -> list[dict]:
    return [r.to_record() for r in collection.reviews.all()]
