"""The task event stream (Server-Sent Events) and ``Prefer: wait``, over HTTP on the
embedded local vendor."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from vidgate.client import sse_events
from vidgate.testing import force_task_state, run_gateway

BODY = {"model": "local-v1", "prompt": "an event stream", "seconds": 4, "size": "640x360"}
FAST_KEEPALIVE = {"server": {"events_keepalive_seconds": 0.2}}


async def read_stream(gw, path, key, headers=None, on_event=None, events=None):
    """The events of a stream, read to its end, and its raw bytes; ``on_event`` (an
    asyncio.Event) is set at every event read, and ``events`` is filled as they come."""
    events, raw = [] if events is None else events, b""
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
                if on_event is not None:
                    on_event.set()
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
            gw.url + "/v1/videos",
            json={**BODY, "seconds": 8},
            headers={"Authorization": f"Bearer {key}", "Prefer": "wait=1"},
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
                gw.url + "/v1/video/generations",
                json=BODY,
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


async def test_streams_of_several_tasks_and_two_streams_of_one(tmp_path):
    async with run_gateway(None, tmp_path) as gw:
        key = await gw.token()
        _, a = await gw.post("/v1/video/generations", key, json=BODY)
        _, b = await gw.post("/v1/video/generations", key, json={**BODY, "seconds": 2})
        a1, a2, b1 = await asyncio.wait_for(
            asyncio.gather(
                read_stream(gw, f"/v1/videos/{a['id']}/events", key),
                read_stream(gw, f"/v1/video/generations/{a['id']}/events", key),
                read_stream(gw, f"/v1/videos/{b['id']}/events", key),
            ),
            60,
        )
        for events, task in ((a1[0], a), (a2[0], a), (b1[0], b)):
            assert {e["data"]["id"] for e in events} == {task["id"]}  # never another task's change
            assert events[-1]["event"] == "video.completed"
        # Both streams of one task saw every change, the same events in the same order.
        assert [(e["id"], e["event"], e["data"]["progress"]) for e in a1[0]] == [
            (e["id"], e["event"], e["data"]["progress"]) for e in a2[0]
        ]
        assert len(a1[0]) >= 3


async def test_a_change_right_after_the_stream_reads_the_task_is_not_missed(tmp_path):
    # A change that commits between the stream's read of the task and its wait for the
    # next change must wake it: here the re-read timer (30 s) would come too late.
    async with run_gateway({"server": {"events_poll_seconds": 30}}, tmp_path, run_worker=False) as gw:
        key = await gw.token()
        _, task = await gw.post("/v1/video/generations", key, json=BODY)
        store = gw.gateway.store
        read = store.get_task
        changed = []

        async def read_then_change(task_id):
            row = await read(task_id)
            if not changed:
                changed.append(await force_task_state(store, task_id, status="in_progress", progress=10))
            return row

        store.get_task = read_then_change
        arrived, live = asyncio.Event(), []
        stream = asyncio.create_task(
            read_stream(gw, f"/v1/videos/{task['id']}/events", key, on_event=arrived, events=live)
        )

        async def until_events(n):
            while len([e for e in live if "data" in e]) < n:
                arrived.clear()
                await arrived.wait()

        await asyncio.wait_for(until_events(2), 10)
        await store.fail(task["id"], code="x", message="stop")
        events, _ = await asyncio.wait_for(stream, 10)
        assert [e["event"] for e in events] == ["video.queued", "video.in_progress", "video.failed"]


async def _create(gw, key, prefer, body=BODY, path="/v1/videos"):
    async with gw.http.post(
        gw.url + path,
        json=body,
        headers={"Authorization": f"Bearer {key}", "Prefer": prefer},
        timeout=aiohttp.ClientTimeout(total=20),  # well below the 60 s a held answer could take
    ) as resp:
        return resp.status, resp.headers.get("Preference-Applied"), await resp.json()


async def test_prefer_wait_edge_cases(tmp_path):
    async with run_gateway(None, tmp_path) as gw:
        key = await gw.token()
        slow = {**BODY, "seconds": 12, "size": "1280x720"}
        # wait=0 answers at once, and says it applied the wait.
        status, applied, task = await _create(gw, key, "wait=0", slow)
        assert status == 200 and applied == "wait=0" and task["status"] in ("queued", "in_progress")
        # More than 60 s is held for 60 at most, and the answer says so.
        status, applied, task = await _create(gw, key, "wait=999")
        assert status == 200 and applied == "wait=60" and task["status"] == "completed"
        # Among other preferences, and quoted (RFC 7240 allows both).
        status, applied, task = await _create(gw, key, 'respond-async, wait="30"; x=1', path="/v1/video/generations")
        assert status == 200 and applied == "wait=30" and task["status"] == "completed"
        # A wait that does not parse is ignored: an immediate answer, no Preference-Applied.
        for prefer in ("wait=abc", "wait=-1", "wait=1.5", "wait=\u0661", "wait=9999999", "wai t=5", "=5", ",,;"):
            status, applied, task = await _create(gw, key, prefer, slow)
            assert status == 200 and applied is None, prefer
            assert task["status"] in ("queued", "in_progress"), prefer
        # A request that fails validation is answered 400 at once, whatever it prefers.
        for path in ("/v1/videos", "/v1/video/generations"):
            status, applied, body = await _create(gw, key, "wait=60", {"model": "local-v1"}, path)
            assert status == 400 and body["error"]["param"] == "prompt" and applied is None
            status, applied, body = await _create(gw, key, "wait=60", {**BODY, "seconds": "x"}, path)
            assert status == 400 and body["error"]["param"] == "seconds"


async def test_sse_reader_of_the_cli_client():
    reader = aiohttp.StreamReader(protocol=_Proto(), limit=2**16)
    reader.feed_data(b': ping\r\nid: 1\r\nevent: video.queued\r\ndata: {"a": 1}\r\n\r\nevent: x\ndata: 2\n\n')
    reader.feed_eof()
    assert [e async for e in sse_events(reader)] == [("video.queued", '{"a": 1}'), ("x", "2")]


class _Proto:
    _reading_paused = False

    def pause_reading(self, **_):
        pass

    def resume_reading(self, **_):
        pass
