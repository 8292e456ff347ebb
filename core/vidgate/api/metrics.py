"""``GET /metrics``: Prometheus text exposition, computed from the store on each scrape.

Counts come from the store, so every replica reports the same cluster-wide task and
attempt figures; breaker states are this process's own view unless replicas share them through
``[coordination] redis_url``.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ..errors import not_found
from .common import gateway


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def metrics(request: Request) -> Response:
    gw = gateway(request)
    if not gw.config.server.metrics:
        raise not_found("Metrics are disabled; set [server] metrics = true.")
    lines = [
        "# HELP vidgate_tasks Tasks in the store by model, channel and status.",
        "# TYPE vidgate_tasks gauge",
    ]
    for row in await gw.store.task_counts():
        lines.append(
            f'vidgate_tasks{{model="{_label(row["model"])}",channel="{_label(row["channel"])}",'
            f'status="{_label(row["status"])}"}} {row["n"]}'
        )
    lines += [
        "# HELP vidgate_vendor_attempts_total Vendor submit attempts by channel and outcome.",
        "# TYPE vidgate_vendor_attempts_total counter",
    ]
    for row in await gw.store.attempt_counts():
        lines.append(
            f'vidgate_vendor_attempts_total{{channel="{_label(row["channel"])}",'
            f'outcome="{_label(row["outcome"])}"}} {row["n"]}'
        )
    states = await gw.dispatcher.status()
    lines += [
        "# HELP vidgate_channel_open 1 while a channel's breaker is not closed (open or half-open), i.e. out of"
        " normal rotation (this process, or every replica sharing [coordination] redis_url).",
        "# TYPE vidgate_channel_open gauge",
    ]
    for status in states:
        lines.append(f'vidgate_channel_open{{channel="{_label(status["name"])}"}} {int(status["state"] != "closed")}')
    lines += [
        "# HELP vidgate_channel_breaker_state 1 for the state a channel's breaker is in: closed, open (cooling"
        " down) or half_open (one probe may pass) (this process).",
        "# TYPE vidgate_channel_breaker_state gauge",
    ]
    for status in states:
        for state in ("closed", "open", "half-open"):
            lines.append(
                f'vidgate_channel_breaker_state{{channel="{_label(status["name"])}",state="{state.replace("-", "_")}"}}'
                f" {int(status['state'] == state)}"
            )
    lines += [
        "# HELP vidgate_channel_probing 1 while a half-open probe request is in flight on the channel (this process).",
        "# TYPE vidgate_channel_probing gauge",
    ]
    for status in states:
        lines.append(f'vidgate_channel_probing{{channel="{_label(status["name"])}"}} {int(bool(status["probing"]))}')
    lines += [
        "# HELP vidgate_channel_model_retired 1 for a model this process stopped routing to a channel because"
        " the channel's vendor answered that it retired the model (until restart).",
        "# TYPE vidgate_channel_model_retired gauge",
    ]
    for channel, model in sorted(gw.dispatcher.retired):
        lines.append(f'vidgate_channel_model_retired{{channel="{_label(channel)}",model="{_label(model)}"}} 1')
    lines += [
        "# HELP vidgate_scrape_timestamp_seconds When these figures were read.",
        "# TYPE vidgate_scrape_timestamp_seconds gauge",
        f"vidgate_scrape_timestamp_seconds {time.time():.3f}",
    ]
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


routes = [Route("/metrics", metrics, methods=["GET"])]
