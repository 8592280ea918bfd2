"""An app for the multi-worker tests: uvicorn imports it in each worker process.

The rule file comes from WAFMW_TEST_RULES, so every worker loads the same rules.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from wafmw import WAFMiddleware


async def login(request: Request) -> PlainTextResponse:
    await request.body()
    return PlainTextResponse(f"ok from {os.getpid()}")


app = WAFMiddleware(
    Starlette(routes=[Route("/login", login, methods=["GET", "POST"])]),
    rules=os.environ["WAFMW_TEST_RULES"],
)
