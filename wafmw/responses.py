"""The answers the WAF gives instead of the app: short, and without rule details by default."""

from __future__ import annotations

import json
import secrets
from typing import Any

from starlette.types import Send

from .request import RequestView

_REASONS = {
    403: ("forbidden", "Forbidden", "The request was blocked by the web application firewall."),
    413: ("payload_too_large", "Payload Too Large", "The request body is larger than allowed."),
    429: ("too_many_requests", "Too Many Requests", "Too many requests. Try again later."),
    503: ("unavailable", "Service Unavailable", "The request could not be checked. Try again."),
}
_SAFE_ID = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def request_id(view: RequestView) -> str:
    """The client's X-Request-ID when it is short and plain, else a fresh random id."""
    given = view.header("x-request-id")
    if given and len(given) <= 64 and set(given) <= _SAFE_ID:
        return given
    return secrets.token_hex(8)


def wants_json(view: RequestView) -> bool:
    accept = view.header("accept") or ""
    return "json" in accept and "text/html" not in accept


async def send_denial(
    send: Send,
    view: RequestView,
    status: int,
    rid: str,
    extra_headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    code, title, text = _REASONS.get(status, _REASONS[403])
    if view.scope.get("type") == "websocket":
        # Closing before accept makes the server refuse the handshake (403 over HTTP).
        await send({"type": "websocket.close", "code": 1008, "reason": code})
        return
    if wants_json(view):
        body = json.dumps({"error": code, "status": status, "request_id": rid}).encode()
        content_type = b"application/json"
    else:
        body = (
            f"<!doctype html><html><head><title>{status} {title}</title></head>"
            f"<body><h1>{status} {title}</h1><p>{text}</p>"
            f"<p>Request id: <code>{rid}</code></p></body></html>"
        ).encode()
        content_type = b"text/html; charset=utf-8"
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-request-id", rid.encode()),
        *extra_headers,
    ]
    if status == 413:
        headers.append((b"connection", b"close"))
    start: dict[str, Any] = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body})
