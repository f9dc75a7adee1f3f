"""The files of a collection's items: the image itself, a thumbnail (checked by
:mod:`iconograph.service.servable`), and the overlay of its attached masks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response

from iconograph.service.dependencies import NamedCollection, State, require_token
from iconograph.service.limits import MAX_THUMB, MIN_THUMB, PathQuery
from iconograph.service.servable import servable_image, thumbnail_of

router = APIRouter(tags=["files"], dependencies=[Depends(require_token)])
CACHE_HOUR = {"Cache-Control": "private, max-age=3600"}


@router.get("/api/collections/{name}/thumb")
def thumb(
    collection: NamedCollection,
    state: State,
    path: PathQuery,
    size: Annotated[int, Query(ge=MIN_THUMB, le=MAX_THUMB)] = 256,
):
    """A JPEG thumbnail of an indexed image."""
    data = thumbnail_of(servable_image(collection, path), size, state.store.root / "thumbs")
    return Response(data, media_type="image/jpeg", headers=CACHE_HOUR)


@router.get("/api/collections/{name}/image")
def image(collection: NamedCollection, path: PathQuery):
    """The file of an indexed image, typed by the image format it holds (never by its name)."""
    found = servable_image(collection, path)
    return Response(found.data, media_type=found.media_type, headers=CACHE_HOUR)


@router.get("/api/collections/{name}/overlay")
def overlay(collection: NamedCollection, path: PathQuery):
    """The masks attached to an image (``index --regions``) as a transparent PNG of its size."""
    from iconograph.search.regions import overlay_png

    data = overlay_png(collection.regions.of(collection.key(path)))
    if data is None:
        raise HTTPException(404, "no masks attached to this image")
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, no-cache"})
