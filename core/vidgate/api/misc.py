"""Models, health, plugin listing and vendor callbacks."""

from __future__ import annotations

from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..vendor import DERIVE_OPERATIONS, Model
from ..wire import ModelCapabilities, ModelInfo, ModelList, to_json
from ..worker import poll_now
from .common import gateway, read_body, token

log = structlog.get_logger("vidgate.api")


async def models(request: Request) -> Response:
    caller = await token(request)
    gw = gateway(request)
    data = []
    for name in gw.models_for(caller):
        vendors = gw.plugins.models.get(name, {})
        owner = next(iter(vendors), "vidgate")
        channels = gw.dispatcher.serving(name, caller.group)
        served = [m for ch in channels if (m := gw.plugins.model(name, ch.vendor, ch.name))]
        data.append(ModelInfo(id=name, object="model", created=0, owned_by=owner, **model_facts(served)))
    return JSONResponse(to_json(ModelList(object="list", data=data)))


# What GET /v1/models says a model can do: its kinds of input, and the derived tasks
# (vidgate.DERIVE_OPERATIONS) it can make from an earlier task.
CAPABILITIES = ("text_to_video", "image_to_video", *DERIVE_OPERATIONS)


def _capable(model: Model, capability: str) -> bool:
    return model.can(capability) if capability in DERIVE_OPERATIONS else bool(getattr(model, capability))


def model_facts(models: list[Model]) -> dict[str, Any]:
    """What a client may ask of a model, from the Model of every vendor serving it to this
    caller: a capability is true when at least one of them has it (dispatch picks that
    vendor's channel), and ``seconds`` lists the durations they all accept (empty: any)."""
    caps = {cap: any(_capable(m, cap) for m in models) for cap in CAPABILITIES}
    seconds: set[int] | None = None
    for m in models:
        if m.seconds:
            seconds = set(m.seconds) if seconds is None else seconds & set(m.seconds)
    defaults = [m.default_seconds for m in models if m.default_seconds is not None]
    return {
        "capabilities": ModelCapabilities(**caps),
        "seconds": sorted(seconds or ()),
        "default_seconds": defaults[0] if defaults else None,
        "description": next((m.description for m in models if m.description), ""),
    }


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
    """A vendor says a task changed: it only makes us poll that task now (signed or not).

    Answers: the plugin's ``reply`` (or ``{"ok": true}``) with 200; 400 when the plugin
    cannot read it; 401 when its signature does not verify (ignored: polling stays the
    fallback); 404 for an unknown channel; 413 over ``max_callback_bytes``. Never 500.
    """
    gw = gateway(request)
    channel = gw.dispatcher.channels.get(request.path_params["channel"])
    if channel is None:
        # Answered before reading a byte of the body, which then closes the connection.
        return JSONResponse({"ok": False}, status_code=404, headers={"connection": "close"})
    body = await read_body(request, gw.config.server.max_callback_bytes)
    try:
        ctx = gw.context("", channel)  # outside any task: a callback names only the vendor's
        found = await gw.plugins.parse_callback(channel, body, dict(request.headers), ctx)
        reply = None if found is None or found.reply is None else JSONResponse(dict(found.reply))
    except Exception as exc:  # plugin code on unauthenticated input: a hint lost, never a 500
        log.warning("callback_unparseable", channel=channel.name, error=type(exc).__name__)
        return JSONResponse({"ok": False}, status_code=400)
    if found is None:
        log.info("callback_unparseable", channel=channel.name)
        return JSONResponse({"ok": False}, status_code=400)
    if found.verified is False:
        # Forged, replayed or signed with another secret: it must not even make a task due.
        log.warning("callback_unverified", channel=channel.name)
        return JSONResponse({"ok": False, "error": "signature verification failed"}, status_code=401)
    if found.vendor_task_id is not None:
        await poll_now(gw, channel.name, found.vendor_task_id)
    return reply or JSONResponse({"ok": True})


routes = [
    Route("/v1/models", models, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/-/plugins", plugins, methods=["GET"]),
    Route("/v1/callbacks/{channel}", callback, methods=["POST"]),
]
