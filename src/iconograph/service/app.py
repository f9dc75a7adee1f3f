"""The FastAPI service: classify uploads, search collections, browse and review them, the web page.

A thin shell over :mod:`iconograph.search` and :mod:`iconograph.classification.zeroshot`. Endpoints are plain
(sync) functions, so FastAPI runs them in its thread pool; model inference is serialised per
model (one forward pass at a time keeps torch from oversubscribing the cores), and review writes
are serialised per collection by :class:`iconograph.search.ReviewLog`.
"""

from __future__ import annotations

import html
import threading
from collections import OrderedDict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from iconograph.engine.store import Store
from iconograph.reading.decode import DecodeError, content_hash, image_media_type
from iconograph.search import (
    Action,
    CollectionError,
    NotInCollection,
    PathRefused,
    Review,
    ReviewError,
    SearchCollection,
    list_collections,
)
from iconograph.service.auth import COOKIE, UploadLimit, request_token, token_matches
from iconograph.service.headers import SecurityHeaders
from iconograph.service.limits import (
    MAX_PAGE,
    MAX_THUMB,
    MIN_THUMB,
    ItemPath,
    KForm,
    KQuery,
    Label,
    LabelFilter,
    LabelFilterForm,
    LabelsForm,
    PathQuery,
    Reviewer,
    ScoreQuery,
    SearchMode,
    SearchText,
    ThresholdForm,
    TopKForm,
)

STATIC_FILES = {
    "app.js": "text/javascript",
    "style.css": "text/css",
    "index.html": "text/html",
    "docs-init.js": "text/javascript",
}


@dataclass
class ServiceConfig:
    token: str
    store: Any = None  # Store, a folder, or None for the default store
    model: str | None = None  # for /api/classify when no collection is named
    max_upload_bytes: int = 20 * 1024 * 1024
    device: str | None = None


class Models:
    """Embedders loaded on first use, one per model spec, each with its own inference lock."""

    def __init__(self, store: Store, device: str | None):
        self.store = store
        self.device = device
        self._embedders: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._classifiers: OrderedDict[tuple, Any] = OrderedDict()
        self._texts: OrderedDict[tuple, np.ndarray] = OrderedDict()  # recent query texts, in memory
        self._uploads: OrderedDict[tuple, np.ndarray] = OrderedDict()  # recent uploads by content hash
        self._guard = threading.Lock()

    def embedder(self, spec: str):
        from iconograph.backends import ModelNotFoundError
        from iconograph.engine.embed import Embedder

        with self._guard:
            if spec not in self._embedders:
                try:
                    self._embedders[spec] = Embedder(
                        spec, store=self.store, workers=0, device=self.device, progress=False
                    )
                except ModelNotFoundError as exc:
                    raise HTTPException(503, f"model unavailable: {exc}") from None
                self._locks[spec] = threading.Lock()
            return self._embedders[spec], self._locks[spec]

    def embed_text(self, spec: str, text: str) -> np.ndarray:
        key = (spec, text)
        with self._guard:
            if key in self._texts:
                self._texts.move_to_end(key)
                return self._texts[key]
        embedder, lock = self.embedder(spec)
        with lock:
            vector = embedder.embed_texts([text])[0]
        with self._guard:
            self._texts[key] = vector
            while len(self._texts) > 4096:
                self._texts.popitem(last=False)
        return vector

    def embed_upload(self, spec: str, data: bytes) -> np.ndarray:
        """One uploaded image's embedding, through the same cache as indexing (by content hash)."""
        embedder, lock = self.embedder(spec)
        digest = content_hash(data)
        with self._guard:
            if (spec, digest) in self._uploads:
                return self._uploads[(spec, digest)]
        try:
            with lock:
                vector = embedder.embed_bytes(data)
        except DecodeError as exc:
            raise HTTPException(422, f"cannot read the uploaded image: {exc}") from None
        with self._guard:
            self._uploads[(spec, digest)] = vector
            while len(self._uploads) > 1024:
                self._uploads.popitem(last=False)
        return vector

    def classifier(
        self, spec: str, labels: tuple[str, ...], templates: str, multi_label: bool, threshold: float, top_k: int | None
    ):
        from iconograph.classification.zeroshot import ZeroShotClassifier

        key = (spec, labels, templates, multi_label, threshold, top_k)
        with self._guard:
            if key in self._classifiers:
                self._classifiers.move_to_end(key)
                return self._classifiers[key]
        embedder, lock = self.embedder(spec)
        with lock:
            classifier = ZeroShotClassifier(
                list(labels), templates=templates, multi_label=multi_label, threshold=threshold, top_k=top_k
            ).prepare(embedder)
        with self._guard:
            self._classifiers[key] = classifier
            while len(self._classifiers) > 64:
                self._classifiers.popitem(last=False)
        return classifier


class ReviewIn(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)  # JSON's NaN/Infinity literals are refused

    path: ItemPath = Field(description="The image's path as listed by the collection (or relative to its folders).")
    label: Label
    action: Action
    box: tuple[float, float, float, float] | None = Field(
        None, description="Optional [x1, y1, x2, y2] in image pixels."
    )
    reviewer: Reviewer = ""


def create_app(config: ServiceConfig) -> FastAPI:
    store = config.store if isinstance(config.store, Store) else Store(config.store)
    models = Models(store, config.device)
    collections: dict[str, SearchCollection] = {}
    collections_guard = threading.Lock()

    def require_token(request: Request) -> None:
        if not token_matches(request_token(request.headers, request.cookies), config.token):
            raise HTTPException(401, "missing or wrong token", headers={"WWW-Authenticate": "Bearer"})

    def collection(name: str) -> SearchCollection:
        with collections_guard:
            if name not in collections:
                found = SearchCollection(name, store) if name in list_collections(store) else None
                if found is None or not found.exists:
                    raise HTTPException(404, f"no collection named {name!r}")
                collections[name] = found
            return collections[name]

    app = FastAPI(
        title="iconograph",
        description="Classify images, search collections, and review labels. "
        "Authenticate with `Authorization: Bearer TOKEN` (every endpoint but /health).",
        version=_version(),
        docs_url=None,  # the docs and the schema are served below, behind the token
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(UploadLimit, max_bytes=config.max_upload_bytes)
    app.add_middleware(SecurityHeaders)  # added last: outermost, so the 413 gets the headers too
    auth = [Depends(require_token)]

    @app.exception_handler(CollectionError)
    async def collection_error(request: Request, exc: CollectionError):
        status = 403 if isinstance(exc, PathRefused) else 404 if isinstance(exc, NotInCollection) else 400
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        # FastAPI's own answer echoes each refused input: a NaN cannot be written as JSON (a 500
        # instead of the 422), and a megabyte label would come back whole. Say where and why only.
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(ReviewError)
    async def review_error(request: Request, exc: ReviewError):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    # ---- health, page ------------------------------------------------------------------------

    @app.get("/health", tags=["service"])
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    def page(request: Request, token: str | None = None):
        if token is not None:
            if not token_matches(token, config.token):
                return HTMLResponse(_login_page("That token is not right."), status_code=401)
            response = RedirectResponse("/", status_code=303)
            # Secure over TLS (uvicorn reports https behind a proxy too, with --proxy-headers)
            secure = request.url.scheme == "https"
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure)
            return response
        if not token_matches(request_token(request.headers, request.cookies), config.token):
            return HTMLResponse(_login_page(), status_code=401)
        return HTMLResponse(_static("index.html"))

    @app.get("/static/{name}", include_in_schema=False, dependencies=auth)
    def static(name: str):
        if name not in STATIC_FILES:
            raise HTTPException(404, "not found")
        return Response(_static(name), media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"})

    @app.get("/openapi.json", include_in_schema=False, dependencies=auth)
    def openapi_schema() -> dict:
        return app.openapi()

    @app.get("/docs", include_in_schema=False, dependencies=auth)
    def docs():
        # Our own page rather than FastAPI's get_swagger_ui_html, whose inline start-up script
        # the security policy would block: static/docs-init.js does the same from a file.
        return HTMLResponse(_static("docs.html"))

    @app.get("/static/docs/{name}", include_in_schema=False, dependencies=auth)
    def docs_assets(name: str):
        # Swagger UI's files come from the fastapi-offline wheel: the machine may be offline,
        # and FastAPI's default /docs page loads them from a CDN.
        import fastapi_offline

        types = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon.png": "image/png"}
        if name not in types:
            raise HTTPException(404, "not found")
        data = (Path(fastapi_offline.__file__).parent / "static" / name).read_bytes()
        return Response(data, media_type=types[name], headers={"Cache-Control": "private, max-age=86400"})

    # ---- classify ------------------------------------------------------------------------------

    @app.post("/api/classify", tags=["classify"], dependencies=auth)
    def classify(
        file: Annotated[UploadFile, File(description="The image.")],
        labels: LabelsForm,
        multi_label: Annotated[bool, Form()] = False,
        threshold: ThresholdForm = 0.5,
        top_k: TopKForm = None,
        templates: Annotated[str, Form(description="default | openai | photo | none")] = "default",
        collection_name: Annotated[
            str | None, Form(alias="collection", description="Use this collection's model.")
        ] = None,
    ) -> dict:
        """Zero-shot labels for one uploaded image (the classify JSONL record)."""
        from iconograph.classification.zeroshot import TEMPLATE_SETS, LabelError, parse_label_list

        if templates not in TEMPLATE_SETS:
            raise HTTPException(422, f"templates must be one of {', '.join(TEMPLATE_SETS)}")
        names = tuple(parse_label_list(labels))
        spec = collection(collection_name).model_spec if collection_name else config.model
        data = file.file.read()
        try:
            classifier = models.classifier(spec, names, templates, multi_label, threshold, top_k)
        except LabelError as exc:
            raise HTTPException(422, str(exc)) from None
        vector = models.embed_upload(spec, data)
        decided = classifier.predict(vector[None])[0]
        return {
            "path": file.filename or "upload",
            "labels": [{"label": ls.label, "score": ls.score} for ls in decided],
            "error": None,
        }

    # ---- collections ---------------------------------------------------------------------------

    @app.get("/api/collections", tags=["collections"], dependencies=auth)
    def collections_list() -> list[dict]:
        return [collection(name).stats() for name in list_collections(store)]

    @app.get("/api/collections/{name}", tags=["collections"], dependencies=auth)
    def collection_info(name: str) -> dict:
        target = collection(name)
        return {**target.stats(), "labels": target.label_names()}

    @app.get("/api/collections/{name}/items", tags=["collections"], dependencies=auth)
    def items(
        name: str,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 60,
        label: LabelFilter = None,
        min_score: ScoreQuery = None,
        max_score: ScoreQuery = None,
        reviewed: bool | None = None,
    ) -> dict:
        """One page of the collection with predictions and review state (sorted by path)."""
        views = collection(name).items(label=label or None, min_score=min_score, max_score=max_score, reviewed=reviewed)
        return {
            "total": len(views),
            "offset": offset,
            "limit": limit,
            "items": [v.to_record() for v in views[offset : offset + limit]],
        }

    @app.get("/api/collections/{name}/item", tags=["collections"], dependencies=auth)
    def item(name: str, path: PathQuery) -> dict:
        target = collection(name)
        view = target.item(path)
        return {**view.to_record(), "history": [r.to_record() for r in target.reviews.for_path(view.path)]}

    # ---- search ---------------------------------------------------------------------------------

    def hits_response(target: SearchCollection, hits, mode: str) -> dict:
        views = target.views(hits)
        return {
            "mode": mode,
            "index": target.vectors.state().describe(),
            "hits": [{**v.to_record(), "score": h.score, "rank": i} for i, (h, v) in enumerate(zip(hits, views), 1)],
        }

    @app.get("/api/collections/{name}/search", tags=["search"], dependencies=auth)
    def search_text(
        name: str,
        q: SearchText,
        k: KQuery = 20,
        label: LabelFilter = None,
        mode: SearchMode = "auto",
    ) -> dict:
        """Images nearest to a text (cosine similarity of the collection's model embeddings)."""
        target = collection(name)
        if not q.strip():
            raise HTTPException(422, "the search text is empty")
        vector = models.embed_text(target.model_spec, q)
        hits, used = target.search_vector(vector, k, _filters(label), mode)
        return hits_response(target, hits, used)

    @app.post("/api/collections/{name}/search/image", tags=["search"], dependencies=auth)
    def search_image(
        name: str,
        file: Annotated[UploadFile, File()],
        k: KForm = 20,
        label: LabelFilterForm = None,
    ) -> dict:
        """Images nearest to an uploaded image."""
        target = collection(name)
        vector = models.embed_upload(target.model_spec, file.file.read())
        hits, used = target.search_vector(vector, k, _filters(label))
        return hits_response(target, hits, used)

    @app.get("/api/collections/{name}/similar", tags=["search"], dependencies=auth)
    def similar(name: str, path: PathQuery, k: KQuery = 20, label: LabelFilter = None) -> dict:
        """More like this: images nearest to an indexed image (its stored vector)."""
        target = collection(name)
        hits, used = target.similar(path, k, _filters(label))
        return hits_response(target, hits, used)

    # ---- review ---------------------------------------------------------------------------------

    @app.post("/api/collections/{name}/reviews", tags=["review"], dependencies=auth, status_code=201)
    def review(name: str, body: ReviewIn) -> dict:
        """Record one decision; it is committed to the store before this returns."""
        box = tuple(body.box) if body.box is not None else None
        stored = collection(name).review(Review(body.path, body.label, body.action, box, body.reviewer))
        return stored.to_record()

    @app.get("/api/collections/{name}/reviews", tags=["review"], dependencies=auth)
    def reviews(name: str) -> list[dict]:
        return [r.to_record() for r in collection(name).reviews.all()]

    # ---- files ----------------------------------------------------------------------------------

    @app.get("/api/collections/{name}/thumb", tags=["files"], dependencies=auth)
    def thumb(name: str, path: PathQuery, size: Annotated[int, Query(ge=MIN_THUMB, le=MAX_THUMB)] = 256):
        """A JPEG thumbnail of an indexed image."""
        from iconograph.search.thumbs import thumbnail

        real = _resolve(collection(name), path)
        try:
            data = thumbnail(real, size, store.root / "thumbs")
        except DecodeError as exc:
            raise HTTPException(415, f"{path}: {exc}") from None
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/collections/{name}/image", tags=["files"], dependencies=auth)
    def image(name: str, path: PathQuery):
        """The file of an indexed image, typed by the image format it holds (never by its name)."""
        real = _resolve(collection(name), path)
        data = real.read_bytes()
        media = image_media_type(data)
        if media is None:
            raise HTTPException(415, f"{path}: not an image")
        return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=3600"})

    return app


def _resolve(target: SearchCollection, path: str):
    try:
        return target.resolve(path)
    except FileNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None


def _filters(label: str | None) -> list[str]:
    return [f"label={label}"] if label else []


def _static(name: str) -> str:
    return resources.files("iconograph.service").joinpath("static", name).read_text(encoding="utf-8")


def _version() -> str:
    from iconograph import __version__

    return __version__


def _login_page(message: str = "") -> str:
    # No inline style: the security policy allows only the service's own (token-protected) files.
    note = f"<p class='error'>{html.escape(message)}</p>" if message else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>iconograph: sign in</title></head>
<body>
<h1>iconograph</h1>{note}
<p>This page needs the service's access token (printed by <code>iconograph serve</code>, or in its token file).</p>
<form method="get" action="/"><input name="token" type="password" size="48" autofocus>
<button type="submit">Open</button></form></body></html>"""
