"""Review queues (uncertain, suspect labels, duplicate clusters, outliers), queue decisions, and
the "learn" action: a head fitted on the reviews in a background thread."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from iconograph.search.active import last_learned
from iconograph.search.queues import decide, review_queue
from iconograph.service.dependencies import NamedCollection, State, require_token
from iconograph.service.limits import MAX_PAGE, ItemPath, Label, Reviewer

router = APIRouter(tags=["review"], dependencies=[Depends(require_token)])


class QueuePage(BaseModel):
    queue: str
    total: int
    offset: int
    limit: int
    items: list[dict]


@router.get("/api/collections/{name}/queues/{queue}")
def queue(
    collection: NamedCollection,
    queue: Literal["uncertain", "suspect", "duplicates", "outliers"],
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 60,
) -> QueuePage:
    """One page of a review queue; each item has its ``finding`` (margin, suggested label, cluster, reasons)."""
    records = review_queue(collection, queue)
    return QueuePage(queue=queue, total=len(records), offset=offset, limit=limit, items=records[offset : offset + limit])


class DecisionIn(BaseModel):
    path: ItemPath
    decision: Literal["keep", "relabel", "duplicate", "exclude"]
    label: Label | None = Field(None, description="keep: the label to keep (default: the best); relabel: the new label.")
    duplicate_of: ItemPath | None = Field(None, description="duplicate: the image this one duplicates.")
    reviewer: Reviewer = ""


@router.post("/api/collections/{name}/decisions", status_code=201)
def decision(collection: NamedCollection, body: DecisionIn) -> list[dict]:
    """Record a queue decision as review-log entries (what ``export`` reads)."""
    stored = decide(
        collection, body.path, body.decision, label=body.label, duplicate_of=body.duplicate_of, reviewer=body.reviewer
    )
    return [r.to_record() for r in stored]


@router.post("/api/collections/{name}/learn", status_code=202)
def learn(collection: NamedCollection, state: State) -> dict:
    """Start fitting a head on the reviews (in the background); answers at once with the status."""
    return state.learning.start(collection)


@router.get("/api/collections/{name}/learn")
def learn_status(collection: NamedCollection, state: State) -> dict:
    """Whether learning runs, its last error, and the last result (cross-validated accuracy, ...)."""
    return {**state.learning.status(collection.name), "last": last_learned(collection)}
