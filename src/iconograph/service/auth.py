"""Access token and upload limit for the service.

Every endpoint except ``/health`` needs the token, as ``Authorization: Bearer TOKEN`` (API
clients) or as the ``iconograph_token`` cookie (the web page: opening ``/?token=TOKEN`` once sets
it, HttpOnly and SameSite=Strict, so other sites can neither read it nor send it along).
Tokens are compared in constant time.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from starlette.responses import JSONResponse

from iconograph.errors import OptionError

COOKIE = "iconograph_token"


def load_or_create_token(path: str | os.PathLike | None) -> str:
    """The token in ``path`` (first line), or a new random one written there with mode 600."""
    if path is None:
        return secrets.token_urlsafe(32)
    path = Path(path)
    if path.exists():
        token = path.read_text(encoding="utf-8").strip()
        if len(token) < 16:
            raise OptionError(f"{path}: the token must be at least 16 characters")
        return token
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def token_matches(given: str | None, expected: str) -> bool:
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())


def request_token(headers, cookies) -> str | None:
    scheme, _, value = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    return cookies.get(COOKIE)


class UploadLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413 before the app reads them.

    A declared Content-Length over the limit is refused at once; a chunked body is counted as it
    streams and refused as soon as it passes the limit.
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(scope, receive, send)
        seen = 0
        overflowed = False
        answered = False

        async def counting_receive():
            nonlocal seen, overflowed
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    overflowed = True
                    raise _TooLarge
            return message

        async def guarded_send(message):
            # The app may turn the interrupted read into its own error (FastAPI answers 400 for
            # a body it could not parse); whatever it answers, the client gets the 413.
            nonlocal answered
            if overflowed:
                if not answered:
                    answered = True
                    await self._refuse(scope, receive, send)
                return
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            if not answered:
                answered = True
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope, receive, send):
        limit_mb = self.max_bytes / (1024 * 1024)
        response = JSONResponse({"detail": f"upload larger than the limit of {limit_mb:g} MB"}, status_code=413)
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass
