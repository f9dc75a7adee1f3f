"""The FastAPI service: classify uploads, search collections, browse and review them, the web page.

A thin shell over :mod:`iconograph.search` and :mod:`iconograph.classification.zeroshot`.
Endpoints are plain (sync) functions, so FastAPI runs them in its thread pool; model inference
is serialised per model (:mod:`iconograph.service.models`), and review writes are serialised
per collection by :class:`iconograph.search.ReviewLog`. The endpoints live in
:mod:`iconograph.service.routes`, one router per area; what they share is a
:class:`~iconograph.service.state.ServiceState` on ``app.state.service``.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from iconograph.backends import ModelNotFoundError
from iconograph.classification.zeroshot import LabelError
from iconograph.errors import DataError
from iconograph.reading.decode import DecodeError
from iconograph.search import CollectionError, NotInCollection, PathRefused, ReviewError
from iconograph.service.auth import UploadLimit
from iconograph.service.headers import SecurityHeaders
from iconograph.service.routes import classify, collections, files, pages, queues, reviews, search
from iconograph.service.state import ServiceConfig, ServiceState

__all__ = ["ServiceConfig", "create_app"]

# The answer to each library error, by its type (the most specific class listed wins); the message is
# the error's own one line. A DecodeError reaching here is an upload's: /image and /thumb turn
# their own into 415 (iconograph.service.servable).
ERROR_ANSWERS: dict[type[Exception], tuple[int, str]] = {
    PathRefused: (403, "{}"),
    NotInCollection: (404, "{}"),
    CollectionError: (400, "{}"),
    ReviewError: (422, "{}"),
    LabelError: (422, "{}"),
    DecodeError: (422, "cannot read the uploaded image: {}"),
    ModelNotFoundError: (503, "model unavailable: {}"),
    DataError: (422, "{}"),
}


class _App(FastAPI):
    def build_middleware_stack(self):
        # Outside Starlette's ServerErrorMiddleware, which answers a 500 past every middleware
        # added with add_middleware: so that answer gets the security headers too.
        return SecurityHeaders(super().build_middleware_stack())


def create_app(config: ServiceConfig) -> FastAPI:
    app = _App(
        title="iconograph",
        description="Classify images, search collections, and review labels. "
        "Authenticate with `Authorization: Bearer TOKEN` (every endpoint but /health).",
        version=_version(),
        docs_url=None,  # the docs and the schema are served by routes.pages, behind the token
        redoc_url=None,
        openapi_url=None,
    )
    app.state.service = ServiceState.from_config(config)
    app.add_middleware(UploadLimit, max_bytes=config.max_upload_bytes)
    for error_type in ERROR_ANSWERS:
        app.add_exception_handler(error_type, _library_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.include_router(pages.open_router)
    for module in (pages, classify, collections, search, reviews, queues, files):
        app.include_router(module.router)
    return app


async def _library_error(request: Request, exc: Exception) -> JSONResponse:
    status, detail = next(ERROR_ANSWERS[kind] for kind in type(exc).__mro__ if kind in ERROR_ANSWERS)
    return JSONResponse({"detail": detail.format(exc)}, status_code=status)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's own answer echoes each refused input: a NaN cannot be written as JSON (a 500
    # instead of the 422), and a megabyte label would come back whole. Say where and why only.
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


def _version() -> str:
    from iconograph import __version__

    return __version__
