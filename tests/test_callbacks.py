"""Plugin contract v2, callbacks: replies the vendor expects and signature checks
(issue 12 item 8)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from scripted_vendor import Scripted, scripted_config
from structlog.testing import capture_logs

from vidgate import CallbackResult, CallContext, Channel, Submission, VendorJob, verify_standard_webhook
from vidgate.testing import run_gateway, serve_app
from vidgate.webhooks import new_secret, sign

SECRET = new_secret()


class Challenging(Scripted):
    """A MiniMax-like vendor: a URL-verification ``{"challenge": ...}`` must be echoed."""

    name = "challenging"

    def parse_callback(self, body: bytes, headers: Mapping[str, str], channel: Channel) -> CallbackResult | str | None:
        obj = json.loads(body)
        if "challenge" in obj:
            return CallbackResult(reply={"challenge": obj["challenge"]})
        return obj.get("task_id")


class Signing(Scripted):
    """A vendor signing callbacks with Standard Webhooks and the channel's secret."""

    name = "signing"

    async def submit(self, job: VendorJob, ctx: CallContext) -> Submission:
        submitted = await super().submit(job, ctx)
        return Submission(submitted.handle, submitted.vendor_task_id)  # no early-poll hint

    def parse_callback(self, body: bytes, headers: Mapping[str, str], channel: Channel) -> CallbackResult:
        verified = verify_standard_webhook(body, headers, channel.credentials.get("webhook_secret"))
        task_id = json.loads(body)["id"] if verified else None
        return CallbackResult(vendor_task_id=task_id, verified=verified)


def signed_headers(body: str, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(ts),
        "webhook-signature": sign([secret], "msg_1", ts, body),
        "content-type": "application/json",
    }


def test_verify_standard_webhook():
    body = '{"id": "s-1"}'
    assert verify_standard_webhook(body.encode(), signed_headers(body), SECRET)
    # Header names are case-insensitive on the wire.
    assert verify_standard_webhook(body.encode(), {k.title(): v for k, v in signed_headers(body).items()}, SECRET)
    assert not verify_standard_webhook(b'{"id": "s-2"}', signed_headers(body), SECRET)
    assert not verify_standard_webhook(body.encode(), signed_headers(body, new_secret()), SECRET)
    assert not verify_standard_webhook(body.encode(), signed_headers(body, timestamp=int(time.time()) - 3600), SECRET)
    assert not verify_standard_webhook(body.encode(), {}, SECRET)
    assert not verify_standard_webhook(body.encode(), signed_headers(body), None)
    assert not verify_standard_webhook(body.encode(), signed_headers(body), "not base64 !")


async def test_a_challenge_is_answered_with_its_echo(tmp_path):
    config = scripted_config([{"name": "mm", "vendor": "challenging"}])
    async with run_gateway(config, tmp_path, extra_plugins={"challenging": Challenging()}) as gw:
        status, body = await gw.post("/v1/callbacks/mm", json={"challenge": "c-8a1f"})
        assert (status, body) == (200, {"challenge": "c-8a1f"})
        # A plain str answer still works (the older contract): polled, answered ok.
        status, body = await gw.post("/v1/callbacks/mm", json={"task_id": "s-404"})
        assert (status, body) == (200, {"ok": True})


async def _task_and_next_poll(gw: Any, key: str) -> tuple[dict[str, Any], float]:
    status, task = await gw.post("/v1/videos", key, json={"model": "scripted-1", "prompt": "x"})
    assert status == 200, task
    stored = await gw.gateway.store.get_task(task["id"])
    return task, stored.next_poll_at


async def test_a_validly_signed_callback_makes_the_task_due_at_once(tmp_path):
    channel = {
        "name": "g",
        "vendor": "signing",
        "credentials": {"webhook_secret": SECRET},
        "options": {"poll_interval": 600},
    }
    plugin = Signing()
    async with run_gateway(scripted_config([channel]), tmp_path, extra_plugins={"signing": plugin}) as gw:
        key = await gw.token()
        task, next_poll = await _task_and_next_poll(gw, key)
        assert next_poll > time.time() + 500  # not due for ten minutes
        [(_, _)] = plugin.submitted
        vendor_id = (await gw.gateway.store.get_task(task["id"])).vendor_task_id
        body = json.dumps({"id": vendor_id})
        status, answer = await gw.post("/v1/callbacks/g", data=body, headers=signed_headers(body))
        assert (status, answer) == (200, {"ok": True})
        # Due at once: the worker polls it without waiting out the ten minutes.
        done = await gw.wait(task["id"], key, until=("in_progress", "completed"), timeout=10)
    assert done["status"] in ("in_progress", "completed")
    assert plugin.polls.get(vendor_id, 0) >= 1


async def test_a_forged_callback_is_ignored_with_401(tmp_path):
    channel = {
        "name": "g",
        "vendor": "signing",
        "credentials": {"webhook_secret": SECRET},
        "options": {"poll_interval": 600},
    }
    plugin = Signing()
    async with run_gateway(scripted_config([channel]), tmp_path, extra_plugins={"signing": plugin}) as gw:
        key = await gw.token()
        task, next_poll = await _task_and_next_poll(gw, key)
        vendor_id = (await gw.gateway.store.get_task(task["id"])).vendor_task_id
        body = json.dumps({"id": vendor_id})
        forged = [
            signed_headers(body, new_secret()),  # another secret
            {**signed_headers(body), "webhook-signature": "v1,AAAA"},
            {"content-type": "application/json"},  # unsigned
        ]
        with capture_logs() as logs:
            for headers in forged:
                status, answer = await gw.post("/v1/callbacks/g", data=body, headers=headers)
                assert status == 401, answer
                assert answer["ok"] is False
        stored = await gw.gateway.store.get_task(task["id"])
        assert stored.next_poll_at == next_poll  # never made due
        assert plugin.polls.get(vendor_id, 0) == 0
    assert [e["event"] for e in logs].count("callback_unverified") == 3
    assert SECRET not in json.dumps(logs, default=str)


class KeyServer(Signing):
    """A vendor whose callback check needs I/O (``read_callback``): it fetches the
    secret from a key URL in the channel's options through ``ctx.download``."""

    name = "keyserver"

    def __init__(self) -> None:
        super().__init__()
        self.contexts: list[tuple[str, str]] = []

    async def read_callback(self, body: bytes, headers: Mapping[str, str], ctx: CallContext) -> CallbackResult:
        self.contexts.append((ctx.channel.name, ctx.task_id))
        source = await ctx.download(ctx.channel.options["key_url"])
        secret = b"".join([chunk async for chunk in source.chunks]).decode()
        if secret == "boom":
            raise RuntimeError("the key server is broken")
        verified = verify_standard_webhook(body, headers, secret)
        return CallbackResult(vendor_task_id=json.loads(body)["id"] if verified else None, verified=verified)


async def test_an_async_read_callback_is_awaited_with_the_channels_context(tmp_path):
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    served = {"secret": SECRET}

    async def key(request: Any) -> PlainTextResponse:
        return PlainTextResponse(served["secret"])

    plugin = KeyServer()
    async with serve_app(Starlette(routes=[Route("/key", key)])) as keys:
        channel = {"name": "k", "vendor": "keyserver", "options": {"poll_interval": 600, "key_url": f"{keys.url}/key"}}
        async with run_gateway(scripted_config([channel]), tmp_path, extra_plugins={"keyserver": plugin}) as gw:
            token = await gw.token()
            task, _ = await _task_and_next_poll(gw, token)
            vendor_id = (await gw.gateway.store.get_task(task["id"])).vendor_task_id
            body = json.dumps({"id": vendor_id})
            status, answer = await gw.post("/v1/callbacks/k", data=body, headers=signed_headers(body, new_secret()))
            assert status == 401, answer
            served["secret"] = "boom"  # the plugin raising: a hint lost, answered 400, never 500
            status, answer = await gw.post("/v1/callbacks/k", data=body, headers=signed_headers(body))
            assert status == 400, answer
            assert plugin.polls.get(vendor_id, 0) == 0
            served["secret"] = SECRET
            status, answer = await gw.post("/v1/callbacks/k", data=body, headers=signed_headers(body))
            assert (status, answer) == (200, {"ok": True})
            done = await gw.wait(task["id"], token, until=("in_progress", "completed"), timeout=10)
    assert done["status"] in ("in_progress", "completed")
    assert plugin.contexts == [("k", "")] * 3  # the channel's context, outside any task
