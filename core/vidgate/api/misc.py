"""Models, health, plugin listing and vendor callbacks."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..worker import poll_now
from .common import gateway, read_body, token


async def models(request: Request) -> Response:
    caller = await token(request)
    gw = gateway(request)
    data = []
    for name in gw.models_for(caller):
        vendors = gw.plugins.models.get(name, {})
        owner = next(iter(vendors), "vidgate")
        data.append({"id": name, "object": "model", "created": 0, "owned_by": owner})
    return JSONResponse({"object": "list", "data": data})


async def healthz(request: Request) -> Response:
    gw = gateway(request)
    try:
        await gw.store.db.fetchone("SELECT 1 AS ok")
    except Exception:
        return JSONResponse({"status": "unavailable", "store": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok"})


async def plugins(request: Request) -> Response:
    await token(request)
    gw = gateway(request)
    return JSONResponse(
        [
            {
                "name": i.name,
                "distribution": i.distribution,
                "version": i.version,
                "vendors": i.vendors,
                "models": i.models,
                "status": i.status,
                "error": i.error,
            }
            for i in gw.plugins.infos
        ]
    )


async def callback(request: Request) -> Response:
    """A vendor says a task changed. Unsigned, so it only makes us poll that task now."""
    gw = gateway(request)
    channel = gw.dispatcher.channels.get(request.path_params["channel"])
    if channel is None:
        return JSONResponse({"ok": False}, status_code=404)
    body = await read_body(request)
    vendor_task_id = gw.plugins.parse_callback(channel.vendor, body, dict(request.headers))
    if vendor_task_id:
        await poll_now(gw, channel.name, vendor_task_id)
    # Always 200: the vendor cannot fix anything we would complain about.
    return JSONResponse({"ok": True})


routes = [
    Route("/v1/models", models, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/-/plugins", plugins, methods=["GET"]),
    Route("/v1/callbacks/{channel}", callback, methods=["POST"]),
]
