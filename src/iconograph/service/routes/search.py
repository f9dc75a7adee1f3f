"""Search a collection: by text, by an uploaded image, by one of its images."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, UploadFile
from pydantic import BaseModel

from iconograph.search import SearchCollection, SearchHit
from iconograph.service.dependencies import NamedCollection, State, require_token
from iconograph.service.limits import KForm, KQuery, LabelFilter, LabelFilterForm, PathQuery, SearchMode, SearchText

router = APIRouter(tags=["search"], dependencies=[Depends(require_token)])


class Hits(BaseModel):
    mode: str
    index: str
    hits: list[dict]


@router.get("/api/collections/{name}/search")
def search_text(
    collection: NamedCollection,
    state: State,
    q: SearchText,
    k: KQuery = 20,
    label: LabelFilter = None,
    mode: SearchMode = "auto",
) -> Hits:
    """Images nearest to a text (cosine similarity of the collection's model embeddings)."""
    vector = state.models.embed_text(collection.model_spec, q)
    return hits_of(collection, *collection.search_vector(vector, k, label_filters(label), mode))


@router.post("/api/collections/{name}/search/image")
def search_image(
    collection: NamedCollection,
    state: State,
    file: Annotated[UploadFile, File()],
    k: KForm = 20,
    label: LabelFilterForm = None,
) -> Hits:
    """Images nearest to an uploaded image."""
    vector = state.models.embed_upload(collection.model_spec, file.file.read())
    return hits_of(collection, *collection.search_vector(vector, k, label_filters(label)))


@router.get("/api/collections/{name}/similar")
def similar(collection: NamedCollection, path: PathQuery, k: KQuery = 20, label: LabelFilter = None) -> Hits:
    """More like this: images nearest to an indexed image (its stored vector)."""
    return hits_of(collection, *collection.similar(path, k, label_filters(label)))


def hits_of(collection: SearchCollection, hits: list[SearchHit], mode: str) -> Hits:
    views = collection.views(hits)
    return Hits(
        mode=mode,
        index=collection.vectors.state().describe(),
        hits=[{**v.to_record(), "score": h.score, "rank": i} for i, (h, v) in enumerate(zip(hits, views), 1)],
    )


def label_filters(label: str | None) -> list[str]:
    return [f"label={label}"] if label else []
