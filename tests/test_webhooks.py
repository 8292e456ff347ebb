"""Signed webhooks over HTTP: a real receiver on 127.0.0.1, the local vendor, the outbox."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time

import aiohttp
import openai
import pytest
import standardwebhooks
from processes import GatewayProcess
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from vidgate.testing import run_gateway, serve_app
from vidgate.webhooks import webhook_secret

FAST = {"webhooks": {"allow_networks": ["127.0.0.0/8"], "retry_schedule": [0, 0.1, 0.1, 0.1]}}


def on(store_url: str, config: dict | None = None) -> dict:
    """``config`` on the parametrised store (SQLite in tmp_path, or a fresh PostgreSQL)."""
    config = dict(config or FAST)
    if store_url.startswith("postgresql"):
        config["store"] = {"url": store_url}
    return config


BODY = {"model": "local-v1", "prompt": "a webhook test", "seconds": 1, "size": "128x72"}


class Receiver:
    """Records every delivery (and when it came, in ``times``); answers each event with the
    scripted statuses (a status, or a status and headers), then 200."""

    def __init__(self, statuses: list[int | tuple[int, dict[str, str]]] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.left: dict[str, list[int | tuple[int, dict[str, str]]]] = {}
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.times: list[float] = []
        self.arrived = asyncio.Event()

    async def hook(self, request: Request) -> Response:
        self.times.append(time.time())
        self.received.append((dict(request.headers), await request.body()))
        self.arrived.set()
        left = self.left.setdefault(request.headers["webhook-id"], list(self.statuses))
        answer = left.pop(0) if left else 200
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        return Response(status_code=status, headers=headers)

    def types(self) -> list[str]:
        return [json.loads(body)["type"] for _, body in self.received]

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def wait_for(self, n: int, timeout: float = 30) -> None:
        async def until() -> None:
            while len(self.received) < n:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(until(), timeout)


async def _until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_in_progress_then_completed_verified_by_both_libraries(tmp_path, store_url):
    receiver = Receiver()
    async with serve_app(receiver.app()) as rx, run_gateway(on(store_url), tmp_path) as gw:
        key = await gw.token("hooks")
        status, task = await gw.post("/v1/video/generations", key, json={**BODY, "webhook_url": rx.url + "/hook"})
        assert status == 200, task
        await gw.wait(task["id"], key)
        await receiver.wait_for(2)
        token = await gw.gateway.store.token("hooks")
        secret = await webhook_secret(gw.gateway.store, token)
        assert secret.startswith("whsec_")
        client = openai.OpenAI(api_key="unused", webhook_secret=secret)
        types = []
        for headers, body in receiver.received:
            event = standardwebhooks.Webhook(secret).verify(body, headers)
            client.webhooks.verify_signature(body, headers)
            assert headers["webhook-id"] == event["id"] and event["id"].startswith("evt_")
            assert event["object"] == "event" and isinstance(event["created_at"], int)
            assert event["data"]["id"] == task["id"]
            types.append(event["type"])
        assert types == ["video.in_progress", "video.completed"]
        assert json.loads(receiver.received[1][1])["data"]["status"] == "completed"


async def test_rotation_signs_with_old_and_new_secret(tmp_path, store_url):
    receiver = Receiver()
    async with serve_app(receiver.app()) as rx, run_gateway(on(store_url), tmp_path) as gw:
        key = await gw.token("hooks")
        store = gw.gateway.store
        old = await webhook_secret(store, await store.token("hooks"))
        new = await webhook_secret(store, await store.token("hooks"), rotate=True)
        assert old != new
        status, task = await gw.post("/v1/videos", key, json={**BODY, "webhook_url": rx.url + "/hook"})
        assert status == 200
        await receiver.wait_for(1)
        headers, body = receiver.received[0]
        assert len(headers["webhook-signature"].split(" ")) == 2
        for secret in (old, new):
            standardwebhooks.Webhook(secret).verify(body, headers)


async def test_retries_keep_the_event_id(tmp_path, store_url):
    receiver = Receiver([500, 500])
    async with serve_app(receiver.app()) as rx, run_gateway(on(store_url), tmp_path) as gw:
        key = await gw.token("hooks")
        status, task = await gw.post("/v1/video/generations", key, json={**BODY, "webhook_url": rx.url + "/hook"})
        await gw.wait(task["id"], key)
        await receiver.wait_for(6)
        ids = [h["webhook-id"] for h, _ in receiver.received]
        assert len(set(ids)) == 2  # in_progress and completed, each answered 500, 500, then 200
        for event_id in set(ids):
            assert ids.count(event_id) == 3
            assert len({b for h, b in receiver.received if h["webhook-id"] == event_id}) == 1  # byte for byte
        store = gw.gateway.store

        async def recorded() -> bool:  # the receiver answers before the gateway records it
            return {e.state for e in await store.list_webhook_events()} == {"delivered"}

        await _until(recorded)
        assert [e.attempts for e in await store.list_webhook_events()] == [3, 3]


async def test_410_stops_deliveries_to_that_url(tmp_path, store_url):
    receiver = Receiver([410, 410])
    async with serve_app(receiver.app()) as rx, run_gateway(on(store_url), tmp_path) as gw:
        key = await gw.token("hooks")
        status, task = await gw.post("/v1/video/generations", key, json={**BODY, "webhook_url": rx.url + "/hook"})
        await gw.wait(task["id"], key)
        await receiver.wait_for(1)
        events = gw.gateway.store.list_webhook_events

        async def stopped() -> bool:  # the completed event is stopped without being sent
            return len(found := await events()) == 2 and all(e.state == "gone" for e in found)

        await _until(stopped)
        assert len(receiver.received) == 1
        events = await gw.gateway.store.list_webhook_events()
        assert sorted(e.state for e in events) == ["gone", "gone"]


async def test_429_retry_after_delays_the_next_attempt(tmp_path, store_url):
    receiver = Receiver([(429, {"Retry-After": "2"})])
    async with serve_app(receiver.app()) as rx, run_gateway(on(store_url), tmp_path) as gw:
        key = await gw.token("hooks")
        _, task = await gw.post("/v1/video/generations", key, json={**BODY, "webhook_url": rx.url + "/hook"})
        await receiver.wait_for(2)
        (first, _), (second, _) = receiver.received[:2]
        assert first["webhook-id"] == second["webhook-id"]
        # The schedule alone would retry after 0.1 s (jittered); the receiver asked for 2 s.
        assert receiver.times[1] - receiver.times[0] >= 1.95
        await gw.wait(task["id"], key)
        await receiver.wait_for(4)
        assert receiver.types() == ["video.in_progress"] * 2 + ["video.completed"] * 2


@pytest.mark.parametrize("retry_after", ["999999999", "Fri, 31 Dec 2100 23:59:59 GMT"])
async def test_429_retry_after_is_capped_at_24_hours(tmp_path, retry_after):
    receiver = Receiver([(429, {"Retry-After": retry_after})])
    async with serve_app(receiver.app()) as rx, run_gateway(FAST, tmp_path) as gw:
        key = await gw.token("hooks")
        await gw.post("/v1/video/generations", key, json={**BODY, "webhook_url": rx.url + "/hook"})
        store = gw.gateway.store

        async def attempted() -> bool:
            return any(e.attempts == 1 for e in await store.list_webhook_events())

        await _until(attempted)
        [event] = [e for e in await store.list_webhook_events() if e.attempts == 1]
        assert event.state == "pending" and event.last_status == 429
        delay = event.next_attempt_at - receiver.times[0]
        assert 24 * 3600 <= delay <= 24 * 3600 + 30
        assert len(receiver.received) == 1


async def test_cancel_delivers_video_cancelled_and_the_stream_ends_with_it(tmp_path, store_url):
    from test_events import read_stream

    receiver = Receiver()
    long = {"model": "local-v1", "prompt": "long", "seconds": 12, "size": "1280x720"}
    async with serve_app(receiver.app()) as rx, run_gateway(on(store_url), tmp_path) as gw:
        key = await gw.token("hooks")
        _, task = await gw.post("/v1/videos", key, json={**long, "webhook_url": rx.url + "/hook"})
        await gw.wait(task["id"], key, until=("in_progress",))
        connected = asyncio.Event()
        stream = asyncio.create_task(read_stream(gw, f"/v1/videos/{task['id']}/events", key, on_event=connected))
        await asyncio.wait_for(connected.wait(), 30)  # the stream is live before the cancel
        status, cancelled = await gw.post(f"/v1/videos/{task['id']}/cancel", key)
        assert status == 200 and cancelled["status"] == "cancelled"
        events, _ = await asyncio.wait_for(stream, 30)
        assert events[0]["event"] == "video.in_progress"
        assert events[-1]["event"] == "video.cancelled" and events[-1]["data"]["status"] == "cancelled"
        assert [e["event"] for e in events].count("video.cancelled") == 1
        await receiver.wait_for(2)
        assert receiver.types() == ["video.in_progress", "video.cancelled"]
        body = json.loads(receiver.received[1][1])
        assert body["data"]["id"] == task["id"] and body["data"]["status"] == "cancelled"


async def test_a_submit_no_channel_takes_announces_nothing(tmp_path):
    import collections

    from scripted_vendor import Scripted, scripted_config

    from vidgate import VendorUnavailable

    receiver = Receiver()
    vendor = Scripted()
    vendor.submit_errors["only"] = collections.deque([VendorUnavailable("down")])
    config = scripted_config([{"name": "only", "vendor": "scripted"}], webhooks=FAST["webhooks"])
    async with serve_app(receiver.app()) as rx, run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token("hooks")
        hooked = {"model": "scripted-1", "prompt": "a fox", "webhook_url": rx.url + "/hook"}
        status, answer = await gw.post("/v1/video/generations", key, json=hooked)
        assert status == 503 and answer["error"]["code"] == "no_channel_available"
        # The client never saw that task: no event for it is written, so none is sent.
        assert await gw.gateway.store.list_webhook_events() == []
        # A task that runs is announced: its events arrive, and nothing came before them.
        status, task = await gw.post("/v1/video/generations", key, json=hooked)
        assert status == 200, task
        await gw.wait(task["id"], key)
        await receiver.wait_for(2)
        assert receiver.types() == ["video.in_progress", "video.completed"]
        assert {json.loads(b)["data"]["id"] for _, b in receiver.received} == {task["id"]}
        assert {e.task_id for e in await gw.gateway.store.list_webhook_events()} == {task["id"]}


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/", "http://10.0.0.1/hook", "ftp://example.com/", "http://[::1]/", "not a url"]
)
async def test_bad_webhook_url_is_a_400_naming_it(tmp_path, url):
    async with run_gateway(None, tmp_path) as gw:
        key = await gw.token()
        for path in ("/v1/video/generations", "/v1/videos"):
            status, body = await gw.post(path, key, json={**BODY, "webhook_url": url})
            assert status == 400, body
            assert body["error"]["param"] == "webhook_url"
        form = aiohttp.FormData({"model": "local-v1", "prompt": "x", "webhook_url": url})
        status, body = await gw.post("/v1/videos", key, data=form)
        assert status == 400 and body["error"]["param"] == "webhook_url"
        status, listing = await gw.get("/v1/videos", key)
        assert listing["data"] == []


async def test_token_default_webhook_and_multipart_field(tmp_path):
    receiver = Receiver()
    async with serve_app(receiver.app()) as rx, run_gateway(FAST, tmp_path) as gw:
        key = await gw.token("hooks")
        token = await gw.gateway.store.token("hooks")
        await gw.gateway.store.set_token_webhook(token.id, rx.url + "/hook")
        status, task = await gw.post("/v1/video/generations", key, json=BODY)
        assert status == 200
        await gw.wait(task["id"], key)
        await receiver.wait_for(2)
        writer = aiohttp.MultipartWriter("form-data")
        for name, value in {
            "model": "local-v1",
            "prompt": "m",
            "seconds": "1",
            "webhook_url": rx.url + "/hook?m=1",
        }.items():
            writer.append(value).set_content_disposition("form-data", name=name)
        status, task2 = await gw.post("/v1/videos", key, data=writer)
        assert status == 200, task2
        stored = await gw.gateway.store.get_task(task2["id"])
        assert stored.webhook_url == rx.url + "/hook?m=1"


def _config(tmp_path, rx_url: str):
    path = tmp_path / "vidgate.toml"
    path.write_text(
        textwrap.dedent(f"""
        [server]
        data_dir = "{tmp_path / "data"}"
        [store]
        url = "sqlite:///{tmp_path / "data" / "vidgate.db"}"
        [media]
        path = "{tmp_path / "data" / "media"}"
        [worker]
        lease_seconds = 1.5
        tick_seconds = 0.1
        [webhooks]
        allow_networks = ["127.0.0.0/8"]
        lease_seconds = 2.0
        timeout_seconds = 1.0
        retry_schedule = [0, 0.2, 0.2]
        [plugins]
        enabled = ["local"]
        [[channels]]
        name = "local"
        vendor = "local"
    """)
    )
    return path


@pytest.mark.slow
async def test_kill_9_before_delivery_still_delivers_after_restart(tmp_path):
    from processes import create_token

    receiver = Receiver()
    async with serve_app(receiver.app()) as rx:
        config = _config(tmp_path, rx.url)
        key = create_token(config, "hooks")
        gateway = GatewayProcess(tmp_path, config)
        await asyncio.to_thread(gateway.start, VIDGATE_FAILPOINTS="webhook.before_delivery")
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(
                    gateway.url + "/v1/video/generations",
                    json={**BODY, "webhook_url": rx.url + "/hook"},
                    headers={"Authorization": f"Bearer {key}"},
                ) as r:
                    assert r.status == 200
                    task = await r.json()
                assert await asyncio.to_thread(gateway.wait_dead) != 0  # died before sending
                assert receiver.received == []
                await asyncio.to_thread(gateway.start)
                await receiver.wait_for(2, timeout=60)
        finally:
            await asyncio.to_thread(gateway.stop)
    types = [json.loads(b)["type"] for _, b in receiver.received]
    assert types == ["video.in_progress", "video.completed"]
    assert all(json.loads(b)["data"]["id"] == task["id"] for _, b in receiver.received)
