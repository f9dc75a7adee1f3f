"""Security headers on every response of the service, whatever produced it.

The policy allows only the service's own scripts, styles and images (and ``data:``/``blob:``
images): no inline script anywhere, the /docs page included (its Swagger UI start-up script is
a static file, ``static/docs-init.js``), so a name or label that slipped into the HTML could not
run. Pages may not be framed (clickjacking), and responses are never content-sniffed, so a file
served as ``image/png`` stays an image.
"""

from __future__ import annotations

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
_RAW_HEADERS = [(name.encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]


class SecurityHeaders:
    """ASGI middleware: add :data:`SECURITY_HEADERS` to every HTTP response (replacing any set)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                names = {name for name, _ in _RAW_HEADERS}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": headers + _RAW_HEADERS}
            await send(message)

        await self.app(scope, receive, send_with_headers)
