"""A tiny raw-ASGI driver for tests: full control over scope, body chunks and what the app saw."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote


@dataclass
class Result:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def http_scope(
    target: str = "/",
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    client: tuple[str, int] = ("127.0.0.1", 40000),
) -> dict[str, Any]:
    raw_path, _, query = target.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode(),
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or [("host", "t")])],
        "client": client,
        "server": ("t", 80),
    }


def post_scope(target: str, body: bytes, content_type: str | None = None) -> dict[str, Any]:
    """A POST with a correct Content-Length and, when given, a Content-Type."""
    headers = [("host", "t")]
    if content_type is not None:
        headers.append(("content-type", content_type))
    headers.append(("content-length", str(len(body))))
    return http_scope(target, method="POST", headers=headers)


async def call(app: Any, scope: dict[str, Any], chunks: list[bytes] | None = None) -> Result:
    """Send the body in the given chunks; return what the client received."""
    chunks = chunks or [b""]
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    result = Result()

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            result.status = message["status"]
            result.headers = {k.decode(): v.decode() for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            result.body += message.get("body", b"")

    await app(scope, receive, send)
    return result


class EchoApp:
    """Raw ASGI app that records the exact body it received and echoes it back."""

    def __init__(self) -> None:
        self.calls = 0
        self.received: bytes | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.calls += 1
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.received = body
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
