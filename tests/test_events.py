"""The task event stream (Server-Sent Events) and ``Prefer: wait``, over HTTP on the
embedded local vendor."""

from __future__ import annotations

import json
import time

import aiohttp

from vidgate.client import sse_events
from vidgate.testing import run_gateway

BODY = {"model": "local-v1", "prompt": "an event stream", "seconds": 4, "size": "640x360"}
FAST_KEEPALIVE = {"server": {"events_keepalive_seconds": 0.2}}


async def read_stream(gw, path, key, headers=None):
    events, raw = [], b""
    async with gw.http.get(gw.url + path, headers={"Authorization": f"Bearer {key}", **(headers or {})}) as resp:
        assert resp.status == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        async for line in resp.content:
            raw += line
            if line.startswith(b"id:"):
                events.append({"id": int(line.split(b":", 1)[1])})
            elif line.startswith(b"event:"):
                events[-1]["event"] = line.split(b":", 1)[1].strip().decode()
            elif line.startswith(b"data:"):
                events[-1]["data"] = json.loads(line.split(b":", 1)[1])
    return events, raw


async def test_stream_sends_progress_and_ends_with_completed_then_resumes(tmp_path):
    async with run_gateway(FAST_KEEPALIVE, tmp_path) as gw:
        key = await gw.token()
        status, task = await gw.post("/v1/video/generations", key, json=BODY)
        assert status == 200
        events, raw = await read_stream(gw, f"/v1/videos/{task['id']}/events", key)
        kinds = [e["event"] for e in events]
        assert kinds[-1] == "video.completed" and kinds.count("video.completed") == 1
        assert "video.progress" in kinds
        assert events[-1]["data"]["status"] == "completed" and events[-1]["data"]["url"]
        ids = [e["id"] for e in events]
        assert ids == sorted(set(ids))  # strictly growing
        progress = [e["data"]["progress"] for e in events]
        assert progress == sorted(progress)
        assert b": ping" in raw  # the keep-alive comment (every 0.2 s here)
        # Reconnecting after the second event gets only what came after it.
        resumed, _ = await read_stream(
            gw, f"/v1/video/generations/{task['id']}/events", key, {"Last-Event-ID": str(ids[1])}
        )
        assert [e["id"] for e in resumed] == [ids[-1]] or [e["id"] for e in resumed][-1] == ids[-1]
        assert all(e["id"] > ids[1] for e in resumed) and resumed[-1]["event"] == "video.completed"
        # From the last id there is nothing new: the stream closes with no event at all.
        again, _ = await read_stream(gw, f"/v1/videos/{task['id']}/events", key, {"Last-Event-ID": str(ids[-1])})
        assert again == []


async def test_stream_is_owned_like_every_endpoint(tmp_path):
    async with run_gateway(None, tmp_path) as gw:
        mine, other = await gw.token("a"), await gw.token("b")
        _, task = await gw.post("/v1/video/generations", mine, json=BODY)
        for path in (f"/v1/videos/{task['id']}/events", f"/v1/video/generations/{task['id']}/events"):
            status, body = await gw.get(path, other)
            assert status == 404 and body["error"]["code"] == "not_found"
            status, _ = await gw.get(path)
            assert status == 401


async def test_prefer_wait_answers_completed_in_one_request(tmp_path):
    async with run_gateway(None, tmp_path) as gw:
        key = await gw.token()
        for path in ("/v1/video/generations", "/v1/videos"):
            async with gw.http.post(
                gw.url + path, json=BODY, headers={"Authorization": f"Bearer {key}", "Prefer": "wait=30"}
            ) as resp:
                task = await resp.json()
                assert resp.status == 200, task
                assert resp.headers["Preference-Applied"] == "wait=30"
            assert task["status"] == "completed" and task["progress"] == 100


async def test_prefer_wait_1_answers_the_task_as_it_is_after_a_second(tmp_path):
    async with run_gateway(None, tmp_path) as gw:
        key = await gw.token()
        started = time.monotonic()
        async with gw.http.post(
            gw.url + "/v1/videos", json={**BODY, "seconds": 8}, headers={"Authorization": f"Bearer {key}", "Prefer": "wait=1"}
        ) as resp:
            task = await resp.json()
            assert resp.headers["Preference-Applied"] == "wait=1"
        assert time.monotonic() - started >= 1.0
        assert task["status"] in ("queued", "in_progress")
        # Without Prefer the answer is immediate and carries no Preference-Applied.
        async with gw.http.post(gw.url + "/v1/videos", json=BODY, headers={"Authorization": f"Bearer {key}"}) as resp:
            assert "Preference-Applied" not in resp.headers
            assert (await resp.json())["status"] in ("queued", "in_progress")
        # A client that leaves while waiting loses nothing: the task goes on.
        try:
            async with gw.http.post(
                gw.url + "/v1/video/generations", json=BODY,
                headers={"Authorization": f"Bearer {key}", "Prefer": "wait"},
                timeout=aiohttp.ClientTimeout(total=0.5),
            ) as resp:
                await resp.read()
        except TimeoutError:
            pass
        status, listing = await gw.get("/v1/videos?order=asc", key)
        assert len(listing["data"]) == 3
        done = await gw.wait(listing["data"][2]["id"], key)
        assert done["status"] == "completed"


async def test_sse_reader_of_the_cli_client():
    reader = aiohttp.StreamReader(protocol=_Proto(), limit=2**16)
    reader.feed_data(b": ping\r\nid: 1\r\nevent: video.queued\r\ndata: {\"a\": 1}\r\n\r\nevent: x\ndata: 2\n\n")
    reader.feed_eof()
    assert [e async for e in sse_events(reader)] == [("video.queued", '{"a": 1}'), ("x", "2")]


class _Proto:
    _reading_paused = False

    def pause_reading(self, **_):
        pass

    def resume_reading(self, **_):
        pass
