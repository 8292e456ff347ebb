"""The web console (``GET /console``, ``GET /console/operator``) and the read-only
operator API behind its operator page (``GET /v1/operator/overview``).

The pages are static files shipped in the package (``vidgate/console/``): they hold no key
and no data. They sign in with a key kept in the browser's ``sessionStorage`` and call the
ordinary API with it as a Bearer header, so the page itself needs no authentication.
Every console response carries a strict Content-Security-Policy: scripts, styles, fetches
and media from this origin only (media also from ``blob:``, which is how a fetched video
is played), nothing inline, and no framing.
"""

from __future__ import annotations

import hmac
import time
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..auth import hash_key
from ..billing import from_micro
from ..errors import forbidden, not_found
from .common import gateway

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # Small files that change with the installed version: revalidate, never serve stale.
    "Cache-Control": "no-cache",
}
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
RECENT_FAILURES = 20


def _load_assets() -> dict[str, tuple[bytes, str]]:
    """Every console file by name, read once: the set is fixed, so a request can never
    name a path outside it."""
    assets: dict[str, tuple[bytes, str]] = {}
    for entry in resources.files("vidgate").joinpath("console").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _TYPES:
            assets[entry.name] = (entry.read_bytes(), _TYPES[suffix])
    return assets


_ASSETS = _load_assets()


def _asset(name: str) -> Response:
    found = _ASSETS.get(name)
    if found is None:
        raise not_found(f"No console file {name[:80]!r}.", None)
    body, media_type = found
    return Response(body, media_type=media_type, headers=HEADERS)


async def console_page(request: Request) -> Response:
    return _asset("index.html")


async def operator_page(request: Request) -> Response:
    return _asset("operator.html")


async def static(request: Request) -> Response:
    return _asset(request.path_params["name"])


def _operator_key_hashes(request: Request) -> list[str]:
    return [hash_key(k.strip()) for k in gateway(request).config.server.operator_keys]


async def operator(request: Request) -> str:
    """Who the caller is if it may read the operator API: a ``[server] operator_keys`` key
    or a token created with ``--operator``; else a 401 or 403."""
    gw = gateway(request)
    header = request.headers.get("authorization") or ""
    scheme, _, key = header.partition(" ")
    if scheme.lower() == "bearer" and key.strip():
        presented = hash_key(key.strip())
        # Compare against every configured key so the time taken says nothing about which.
        matched = False
        for expected in _operator_key_hashes(request):
            matched |= hmac.compare_digest(presented, expected)
        if matched:
            return "[server] operator_keys"
    token = await gw.authenticate(header or None)
    if not token.operator:
        raise forbidden(
            "This API key is not an operator key (set [server] operator_keys, or create one with"
            " 'vidgate tokens create --operator').",
            None,
            "not_operator",
        )
    return token.name


async def overview(request: Request) -> Response:
    """Channels with their breaker state and work in flight, tasks by status, recent
    failures with their attempts, and usage per token: everything the operator page shows."""
    who = await operator(request)
    gw = gateway(request)
    store = gw.store
    channels = []
    for status in await gw.dispatcher.status():
        channel = gw.dispatcher.channels[str(status["name"])]
        channels.append(
            {
                **status,
                "in_flight": await store.count_active(channel.name),
                "max_concurrent": channel.max_concurrent,
                "rate_per_minute": channel.rate_per_minute,
            }
        )
    by_status: dict[str, int] = {}
    for row in await store.task_counts():
        by_status[row["status"]] = by_status.get(row["status"], 0) + int(row["n"])
    failed = await store.db.fetchall(
        "SELECT t.id, t.model, t.channel, t.error_code, t.error_message, t.created_at, t.updated_at,"
        " k.name AS token FROM tasks t LEFT JOIN tokens k ON k.id = t.token_id"
        " WHERE t.status = ? ORDER BY t.updated_at DESC LIMIT ?",
        "failed",
        RECENT_FAILURES,
    )
    failures: list[dict[str, Any]] = []
    for row in failed:
        attempts = await store.attempts(row["id"])
        failures.append(
            {
                **row,
                "attempts": [
                    {"channel": a.channel, "outcome": a.outcome, "detail": a.detail, "at": a.at} for a in attempts
                ],
            }
        )
    usage = [
        {**r, **{k: from_micro(r[k]) for k in ("charged", "settled", "refunded", "net")}} for r in await store.usage()
    ]
    return JSONResponse(
        {
            "object": "operator.overview",
            "generated_at": time.time(),
            "operator": who,
            "channels": channels,
            "tasks_by_status": by_status,
            "recent_failures": failures,
            "usage": usage,
        },
        headers={"Cache-Control": "no-store"},
    )


routes = [
    Route("/console", console_page, methods=["GET"]),
    Route("/console/operator", operator_page, methods=["GET"]),
    Route("/console/static/{name}", static, methods=["GET"]),
    Route("/v1/operator/overview", overview, methods=["GET"]),
]
