"""The review app's outermost layer: security headers on every response, bounded bodies,
and no stack trace or header-less 500 ever reaching a client.

A pure ASGI middleware (not Starlette's BaseHTTPMiddleware), so it also wraps the
responses of errors the routes never anticipated.
"""

from __future__ import annotations

import json
import logging

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024


class BodyTooLarge(Exception):
    pass


def _json_response(status: int, message: str, headers: list[tuple[bytes, bytes]]):
    body = json.dumps({"error": message}).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class Guard:
    def __init__(self, app, headers: dict[str, str], max_body: int = MAX_BODY_BYTES):
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        self.max_body = max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                names = {k for k, _ in self.headers}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": kept + self.headers}
            await send(message)

        async def reply(status: int, text: str) -> None:
            for message in _json_response(status, text, self.headers):
                await send(message)

        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return await reply(413, f"the request body is larger than {self.max_body} bytes")
        received = 0

        async def bounded_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, bounded_receive, send_with_headers)
        except BodyTooLarge:
            if not started:
                await reply(413, f"the request body is larger than {self.max_body} bytes")
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await reply(500, "internal error (logged on the server)")
