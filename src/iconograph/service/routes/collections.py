"""The collections: list them, describe one, page through its items, look at one item."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from iconograph.search import list_collections
from iconograph.service.dependencies import NamedCollection, State, require_token
from iconograph.service.limits import MAX_PAGE, LabelFilter, PathQuery, ScoreQuery

router = APIRouter(tags=["collections"], dependencies=[Depends(require_token)])


class ItemsPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[dict]


@router.get("/api/collections")
def collections_list(state: State) -> list[dict]:
    return [state.collection(name).stats() for name in list_collections(state.store)]


@router.get("/api/collections/{name}")
def collection_info(collection: NamedCollection) -> dict:
    return {**collection.stats(), "labels": collection.label_names()}


@router.get("/api/collections/{name}/items")
def items(
    collection: NamedCollection,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 60,
    label: LabelFilter = None,
    min_score: ScoreQuery = None,
    max_score: ScoreQuery = None,
    reviewed: bool | None = None,
) -> ItemsPage:
    """One page of the collection with predictions and review state (sorted by path)."""
    views = collection.items(label=label or None, min_score=min_score, max_score=max_score, reviewed=reviewed)
    page = [v.to_record() for v in views[offset : offset + limit]]
    return ItemsPage(total=len(views), offset=offset, limit=limit, items=page)


@router.get("/api/collections/{name}/item")
def item(collection: NamedCollection, path: PathQuery) -> dict:
    from iconograph.search.regions import public_regions

    view = collection.item(path)
    return {
        **view.to_record(),
        "history": [r.to_record() for r in collection.reviews.for_path(view.path)],
        "regions": public_regions(collection.regions.of(view.path)),
    }
