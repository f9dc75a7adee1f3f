"""Health, the web page and its sign-in, static files, the API docs and schema."""

from __future__ import annotations

import html
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from iconograph.service.auth import COOKIE, request_token, token_matches
from iconograph.service.dependencies import State, require_token

STATIC_FILES = {
    "app.js": "text/javascript",
    "style.css": "text/css",
    "index.html": "text/html",
    "docs-init.js": "text/javascript",
}
DOCS_FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon.png": "image/png"}

open_router = APIRouter()  # the page checks the token itself: without it, it shows the sign-in form
router = APIRouter(include_in_schema=False, dependencies=[Depends(require_token)])


@open_router.get("/health", tags=["service"])
def health() -> dict:
    return {"status": "ok"}


@open_router.get("/", include_in_schema=False)
def page(request: Request, state: State, token: str | None = None):
    if token is not None:
        if not token_matches(token, state.config.token):
            return HTMLResponse(login_page("That token is not right."), status_code=401)
        response = RedirectResponse("/", status_code=303)
        # Secure over TLS (uvicorn reports https behind a proxy too, with --proxy-headers)
        secure = request.url.scheme == "https"
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure)
        return response
    if not token_matches(request_token(request.headers, request.cookies), state.config.token):
        return HTMLResponse(login_page(), status_code=401)
    return HTMLResponse(static_text("index.html"))


@router.get("/static/{name}")
def static(name: str):
    if name not in STATIC_FILES:
        raise HTTPException(404, "not found")
    return Response(static_text(name), media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"})


@router.get("/openapi.json")
def openapi_schema(request: Request) -> dict:
    return request.app.openapi()


@router.get("/docs")
def docs():
    # Our own page rather than FastAPI's get_swagger_ui_html, whose inline start-up script
    # the security policy would block: static/docs-init.js does the same from a file.
    return HTMLResponse(static_text("docs.html"))


@router.get("/static/docs/{name}")
def docs_assets(name: str):
    # Swagger UI's files come from the fastapi-offline wheel: the machine may be offline,
    # and FastAPI's default /docs page loads them from a CDN.
    import fastapi_offline

    if name not in DOCS_FILES:
        raise HTTPException(404, "not found")
    data = (Path(fastapi_offline.__file__).parent / "static" / name).read_bytes()
    return Response(data, media_type=DOCS_FILES[name], headers={"Cache-Control": "private, max-age=86400"})


def static_text(name: str) -> str:
    return resources.files("iconograph.service").joinpath("static", name).read_text(encoding="utf-8")


def login_page(message: str = "") -> str:
    # No inline style: the security policy allows only the service's own (token-protected) files.
    note = f"<p class='error'>{html.escape(message)}</p>" if message else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>iconograph: sign in</title></head>
<body>
<h1>iconograph</h1>{note}
<p>This page needs the service's access token (printed by <code>iconograph serve</code>, or in its token file).</p>
<form method="get" action="/"><input name="token" type="password" size="48" autofocus>
<button type="submit">Open</button></form></body></html>"""
