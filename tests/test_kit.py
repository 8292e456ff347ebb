"""The plugin kit: helpers, the fake base, and a scaffolded plugin that passes the contract."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import structlog
import structlog.testing
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vidgate import CallContext, Channel, Image
from vidgate.cli import main
from vidgate.errors import (
    ChannelUnusable,
    TaskNotFound,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
)
from vidgate.fakekit import FakeVendor, Recorded, keywords, range_response
from vidgate.testing import serve_app, tiny_mp4
from vidgate.vendorhttp import (
    VendorAPI,
    error_message,
    image_url,
    image_urls,
    join_url,
    parse_json,
    pick,
    request_json,
    require,
    retry_after,
    transport_errors,
)


def test_retry_after_forms():
    assert retry_after({"Retry-After": "3"}) == 3.0
    assert retry_after({"retry-after-ms": "250", "Retry-After": "3"}) == 0.25
    assert retry_after({"Retry-After": "-4"}) == 0.0
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({}) is None and retry_after(None) is None
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= retry_after({"Retry-After": date}, now=now) <= 31


def test_transport_errors_and_json_envelopes():
    with pytest.raises(VendorUnavailable, match=r"^Acme did not answer \(timed out\)$"):
        with transport_errors("Acme"):
            raise TimeoutError
    with pytest.raises(VendorUnavailable, match=r"ClientConnectorError|ClientOSError"):
        with transport_errors("Acme"):
            raise aiohttp.ClientOSError(111, "connect to http://k:secret@host failed")
    with pytest.raises(VendorUnavailable, match=r"malformed reply \(HTTP 502\)") as info:
        parse_json(b"<html>502</html>", "Acme", 502)
    assert info.value.http_status == 502
    assert parse_json(b'{"a": 1}', "Acme", 200) == {"a": 1}
    assert join_url("https://x/api/", "/v1", "videos/") == "https://x/api/v1/videos"


def test_range_response_and_keywords():
    data = tiny_mp4()
    assert data[4:8] == b"ftyp"
    whole = range_response(data, None, "video/mp4")
    assert whole.status_code == 200 and whole.body == data
    part = range_response(data, "bytes=0-9", "video/mp4")
    assert part.status_code == 206 and part.body == data[:10]
    assert part.headers["content-range"] == f"bytes 0-9/{len(data)}"
    assert range_response(data, "bytes=-5", "video/mp4").body == data[-5:]
    assert range_response(data, f"bytes={len(data)}-", "video/mp4").status_code == 416
    assert keywords("a fox [500] [nope] [hold]") == ["500", "hold"]


def test_fake_job_walk_and_injected_faults():
    fake = FakeVendor(polls_to_finish=2)
    job = fake.new_job("x [fail]", seconds=5)
    assert fake.advance(job) == "running" and fake.advance(job) == "failed" and job.error
    held = fake.new_job("y [hold]")
    assert [fake.advance(held) for _ in range(4)] == ["running"] * 4
    fake.release(held)
    assert fake.advance(held) == "succeeded"
    fake.inject("create", "429", times=2)
    assert fake.create_fault("plain").status_code == 429
    assert fake.create_fault("plain").status_code == 429
    assert fake.create_fault("plain") is None
    assert fake.create_fault("[429]").status_code == 429 and fake.create_fault("[429]") is None
    assert fake.secret.encode() in fake.create_fault("[echo-key]").body


def test_new_plugin_refuses_bad_names_and_non_empty_dirs(tmp_path, capsys):
    assert main(["new-plugin", "Bad-Name", "--dir", str(tmp_path / "x")]) == 2
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("")
    assert main(["new-plugin", "acme", "--dir", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err


@pytest.mark.slow
def test_new_plugin_scaffold_passes_its_contract_suite(tmp_path):
    target = tmp_path / "vidgate-acme"
    assert main(["new-plugin", "acme", "--dir", str(target)]) == 0
    assert {p.name for p in target.rglob("*.py")} == {"__init__.py", "plugin.py", "fake.py", "test_contract.py"}
    assert 'acme = "vidgate_acme:plugin"' in (target / "pyproject.toml").read_text()
    env = {**os.environ, "PYTHONPATH": str(target)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "tests"],
        cwd=target,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    tail = proc.stdout[-3000:]
    assert proc.returncode == 0, tail
    # Every case runs (the cancel case too: the scaffold cancels); only batch polling skips.
    assert "10 passed, 1 skipped" in tail and "failed" not in tail, tail
    # A sized request maps to that size (the contract's requests carry none).
    sized = (
        "from vidgate.request import parse_request; from vidgate_acme import plugin; "
        "model = plugin.models[0]; from vidgate import Channel; "
        "job = plugin.map_request(parse_request({'model': 'acme-1', 'prompt': 'p', 'size': '720x1280'}), "
        "model, Channel(name='c', vendor='acme')); print(job.size, job.payload['body']['size'])"
    )
    mapped = subprocess.run([sys.executable, "-c", sized], env=env, capture_output=True, text=True, timeout=60)
    assert mapped.stdout.split() == ["720x1280", "720x1280"], mapped.stderr[-2000:]


def test_contract_catches_a_hook_that_answers_for_every_vendor():
    from vidgate import VendorPlugin, hookimpl
    from vidgate.testing import contract

    class Greedy(VendorPlugin):
        name = "greedy"

        @hookimpl
        def vidgate_validate_channel(self, vendor, channel):
            return []  # forgot the vendor check

    class Polite(VendorPlugin):
        name = "polite"

    class Case(contract.VendorContract):
        plugin = Greedy()

    with pytest.raises(AssertionError, match="vidgate_validate_channel answered"):
        Case().test_other_vendors_answered_none()
    Case.plugin = Polite()
    Case().test_other_vendors_answered_none()


def _batch_case(batched: bool):
    """A tiny vendor with a list endpoint, whose poll_many uses it (or answers nothing)."""
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from vidgate import Model, PollResult, Submission, VendorJob, VendorPlugin
    from vidgate.fakekit import FakeVendor
    from vidgate.testing import contract

    class Fake(FakeVendor):
        def routes(self):
            return [
                Route("/tasks", self.create, methods=["POST"]),
                Route("/tasks", self.list, methods=["GET"]),
                Route("/tasks/{id}", self.get, methods=["GET"]),
            ]

        def item(self, job):
            state = self.advance(job)
            return {"id": job.id, "status": state, "url": self.result_url(job)}

        async def create(self, request):
            rec = await self.record(request)
            job = self.new_job(rec.json["prompt"], seconds=5, size="640x360")
            return JSONResponse({"id": job.id})

        async def get(self, request):
            await self.record(request)
            return JSONResponse(self.item(self.jobs[request.path_params["id"]]))

        async def list(self, request):
            await self.record(request)
            ids = request.query_params["ids"].split(",")
            return JSONResponse({"items": [self.item(self.jobs[i]) for i in ids if i in self.jobs]})

    words = {"queued": "queued", "running": "in_progress", "succeeded": "completed", "failed": "failed"}

    class Batchy(VendorPlugin):
        name = "batchy"
        models = [Model("batchy-1", seconds=(5,), default_seconds=5)]

        def map_request(self, request, model, channel):
            return VendorJob(payload={"prompt": request.prompt}, seconds=5, size="640x360")

        async def submit(self, job, ctx):
            async with ctx.http.post(f"{ctx.channel.base_url}/tasks", json=job.payload) as resp:
                tid = (await resp.json())["id"]
            return Submission(handle={"id": tid}, vendor_task_id=tid)

        def _result(self, item):
            status = words.get(item["status"])
            if status is None:
                return PollResult.unknown(item["status"])
            return PollResult(status=status, result={"url": item["url"]} if status == "completed" else None)

        async def poll(self, handle, ctx):
            async with ctx.http.get(f"{ctx.channel.base_url}/tasks/{handle['id']}") as resp:
                return self._result(await resp.json())

        async def poll_many(self, handles, ctx):
            if not batched:
                return {}  # every task falls back on its own poll
            async with ctx.http.get(f"{ctx.channel.base_url}/tasks", params={"ids": ",".join(handles)}) as resp:
                return {i["id"]: self._result(i) for i in (await resp.json())["items"]}

        async def fetch_result(self, handle, result, variant, ctx):
            return await ctx.download(result["url"]) if variant == "video" else None

    class Case(contract.VendorContract):
        plugin = Batchy()
        fake = Fake
        model = "batchy-1"
        batch_poll_path = "/tasks"

    return Case()


def test_contract_batch_poll_counts_list_calls(tmp_path):
    _batch_case(batched=True).test_batch_poll(tmp_path / "good")
    with pytest.raises(AssertionError, match="no recorded request matched batch_poll_path"):
        _batch_case(batched=False).test_batch_poll(tmp_path / "bad")


# -- vendorhttp: VendorAPI and request_json over real HTTP ------------------------------


def _vendor_app(seen: list[dict[str, str]]) -> Starlette:
    """Answers by path: /ok, /code/N (MiniMax-style base_resp at HTTP 200), /status/N (an
    error envelope at HTTP N), /html/N (a proxy page), /empty, /list."""

    async def handle(request: Request) -> Response:
        seen.append(dict(request.headers))
        kind, _, arg = request.path_params["rest"].removeprefix("api/").partition("/")
        if kind == "ok":
            return JSONResponse({"id": "t-1", "query": dict(request.query_params), "body": await request.json()})
        if kind == "code":
            return JSONResponse({"base_resp": {"status_code": int(arg), "status_msg": "nope"}})
        if kind == "status":
            headers = {"Retry-After": "7"} if arg == "429" else {}
            return JSONResponse({"error": {"message": "refused"}}, status_code=int(arg), headers=headers)
        if kind == "html":
            return Response("<html>busy</html>", status_code=int(arg), media_type="text/html")
        if kind == "empty":
            return Response(status_code=204)
        if kind == "echo":
            return JSONResponse({"error": {"message": f"bad key {request.headers['authorization']}"}}, status_code=400)
        return JSONResponse([1, 2])

    return Starlette(routes=[Route("/{rest:path}", handle, methods=["GET", "POST"])])


@contextlib.asynccontextmanager
async def _ctx(credentials=None):
    seen: list[dict[str, str]] = []
    logs = structlog.testing.CapturingLogger()
    async with serve_app(_vendor_app(seen)) as served, aiohttp.ClientSession() as http:
        channel = Channel(
            name="c", vendor="acme", base_url=served.url + "/api", credentials=credentials or {"api_key": "key-12345"}
        )
        ctx = CallContext(
            channel=channel,
            http=http,
            task_id="video_1",
            log=structlog.wrap_logger(logs, processors=[]),
            workdir=Path("."),
            timeout=aiohttp.ClientTimeout(total=5),
        )
        ctx.state["logs"] = logs
        yield ctx, seen


MINIMAX_LIKE = VendorAPI(
    "Acme",
    code_at="base_resp.status_code",
    message_at=("base_resp.status_msg", "error.message"),
    codes={
        1002: VendorRateLimited,
        1004: ChannelUnusable,
        1026: functools.partial(VendorRejected, param="prompt"),
        2013: VendorRejected,
        1000: VendorUnavailable,
    },
    rate_limit_delay=1.5,
)


async def test_vendor_api_success_auth_header_and_body():
    async with _ctx() as (ctx, seen):
        data = await MINIMAX_LIKE.call(ctx, "POST", "/ok", json={"a": 1}, params={"q": "v"})
        assert data == {"id": "t-1", "query": {"q": "v"}, "body": {"a": 1}}
        assert seen[-1]["authorization"] == "Bearer key-12345"
        assert await MINIMAX_LIKE.call(ctx, "GET", "/empty") == {}
        with pytest.raises(VendorUnavailable, match="answered list, not an object"):
            await MINIMAX_LIKE.call(ctx, "GET", "/list")
        token = VendorAPI("Vidu", auth="Token {api_key}", auth_header="X-Key")
        await token.call(ctx, "POST", "/ok", json={})
        assert seen[-1]["x-key"] == "Token key-12345" and "authorization" not in seen[-1]
    async with _ctx({"other": "x"}) as (ctx, seen):
        with pytest.raises(ChannelUnusable, match="no credentials.api_key"):
            await MINIMAX_LIKE.call(ctx, "GET", "/ok")
        assert seen == []


@pytest.mark.parametrize(
    "path, cls, code, param",
    [
        ("/code/1002", VendorRateLimited, 1002, None),
        ("/code/1004", ChannelUnusable, 1004, None),
        ("/code/1026", VendorRejected, 1026, "prompt"),
        ("/code/2013", VendorRejected, 2013, None),
        ("/code/1000", VendorUnavailable, 1000, None),
        ("/code/1999", VendorUnavailable, 1999, None),  # unknown code at HTTP 200
        ("/status/401", ChannelUnusable, None, None),
        ("/status/429", VendorRateLimited, None, None),
        ("/status/422", VendorRejected, None, None),
        ("/status/503", VendorUnavailable, None, None),
    ],
)
async def test_vendor_api_classifies_codes_then_statuses(path, cls, code, param):
    async with _ctx() as (ctx, _):
        with pytest.raises(cls) as info:
            await MINIMAX_LIKE.call(ctx, "GET", path)
    err = info.value
    assert type(err) is cls and err.vendor_code == code and err.param == param
    assert err.message.startswith("Acme: nope" if code else "Acme: refused")
    assert err.http_status == int(path.rsplit("/", 1)[1]) if not code else err.http_status == 200
    if cls is VendorRateLimited:
        assert err.retry_after == (1.5 if code else 7.0)  # the table's delay only without Retry-After
    if cls is VendorUnavailable:
        # The vendor's own coded answer created nothing; a bare 503 may have been a proxy's.
        assert err.maybe_received is (code is None)


async def test_vendor_api_not_found_and_pages_from_proxies():
    async with _ctx() as (ctx, _):
        with pytest.raises(TaskNotFound):
            await MINIMAX_LIKE.call(ctx, "GET", "/status/404", not_found=TaskNotFound)
        with pytest.raises(VendorRejected):
            await MINIMAX_LIKE.call(ctx, "GET", "/status/404")
        with pytest.raises(VendorUnavailable, match=r"malformed reply \(HTTP 200\)"):
            await MINIMAX_LIKE.call(ctx, "GET", "/html/200")
        with pytest.raises(VendorUnavailable, match=r"malformed reply \(HTTP 400\)"):
            await MINIMAX_LIKE.call(ctx, "GET", "/html/400")  # not the vendor's own refusal
        with pytest.raises(VendorUnavailable, match="answered HTTP 502"):
            await MINIMAX_LIKE.call(ctx, "GET", "/html/502")
        with pytest.raises(VendorRejected, match="key-12345"):  # the core scrubs what reaches clients
            await MINIMAX_LIKE.call(ctx, "GET", "/echo")
        logged = ctx.state["logs"].calls[-1]
        assert logged.method_name == "warning" and logged.kwargs["http_status"] == 400
        assert "key-12345" not in str(logged) and "[redacted]" in logged.kwargs["message"]


async def test_request_json_returns_the_reply_and_guards_transport():
    async with _ctx() as (ctx, _):
        status, data, wait = await request_json(ctx, "GET", ctx.channel.base_url + "/status/429", vendor="Acme")
        assert (status, data, wait) == (429, {"error": {"message": "refused"}}, 7.0)
        reply = await request_json(ctx, "GET", ctx.channel.base_url + "/html/502", vendor="Acme")
        assert reply.status == 502 and reply.data is None
        with pytest.raises(VendorUnavailable, match="Acme did not answer") as info:
            await request_json(ctx, "GET", "http://127.0.0.1:9/nothing", vendor="Acme")
        assert info.value.maybe_received is False  # never connected


async def test_json_readers_and_image_urls():
    body = {"a": {"b": [{"c": "deep"}]}, "n": 0, "id": 42, "detail": [{"msg": "x"}, {"msg": "y"}]}
    assert pick(body, "a.b.0.c") == "deep" and pick(body, "a.b.1.c") is None and pick(body, "a.x", 5) == 5
    assert pick(body, "n") == 0 and pick("text", "a") is None
    assert require(body, "id", "Acme") == "42" and require(body, "a.b.0.c", "Acme") == "deep"
    with pytest.raises(VendorUnavailable, match="Acme answered without task_id"):
        require(body, "task_id", "Acme")
    assert error_message(body, "error.message", "detail") == "x; y"
    assert error_message({"error": "plain"}, "error.message", "error") == "plain"
    assert error_message({"error": {"message": " "}}, "error.message") is None
    inline = Image(data=b"\x89PNG", mime_type="image/png")
    assert image_url(Image(url="https://x/a.png")) == "https://x/a.png"
    assert image_url(inline) == "data:image/png;base64,iVBORw=="
    assert await image_urls([inline, Image(url="https://x/b.png")]) == [image_url(inline), "https://x/b.png"]


# -- fakekit: answers that record themselves, refusals by keyword, deliveries -------


class _CodedFake(FakeVendor):
    codes = {"rate_limit": 1002, "balance": 1008, "rejected": 2013, "server": 1000, "auth": 1004}
    prompt_refusals = {"no-credit": ("balance", "insufficient balance", 200)}

    def routes(self):
        return [Route("/create", self.create, methods=["POST"]), Route("/hook", self.hook, methods=["POST"])]

    def error(self, kind, message, status):
        body = {"base_resp": {"status_code": self.codes.get(kind, 1000), "status_msg": message}}
        return JSONResponse(body, status_code=status if status >= 500 else 200)

    async def create(self, request):
        rec = await self.record(request)
        if refusal := self.check_auth(rec, f"Bearer {self.secret}") or self.create_fault(rec.json["prompt"], rec):
            return refusal
        job = self.new_job(rec.json["prompt"])
        return self.respond(rec, {"task_id": job.id}, code=0)

    async def hook(self, request):
        return JSONResponse({"challenge": (await request.json())["challenge"]})


async def test_fake_answers_record_status_code_answer_and_fault():
    fake = _CodedFake()
    async with fake.serve(), aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {fake.secret}"}
        for prompt, headers in [("ok", auth), ("x [no-credit]", auth), ("y [429]", auth), ("y [429]", auth), ("z", {})]:
            async with http.post(f"{fake.url}/create", json={"prompt": prompt}, headers=headers) as resp:
                assert resp.status == 200
        ok, broke, limited, retried, denied = fake.requests
        assert (ok.status, ok.code, ok.answer, ok.fault) == (200, 0, {"task_id": "job_000001"}, None)
        assert (broke.code, broke.fault, pick(broke.answer, "base_resp.status_msg")) == (
            1008,
            "no-credit",
            "insufficient balance",
        )
        assert (limited.code, limited.fault, retried.fault, retried.code) == (1002, "429", None, 0)
        assert (denied.status, denied.code, denied.fault) == (200, 1004, None)
        assert [j.prompt for j in fake.jobs.values()] == ["ok", "y [429]"]


class _VendorCodedFake(FakeVendor):
    # Kinds may be the vendor's own codes; error() takes a param.
    codes = {"auth": "Unauthorized"}

    def code_for(self, kind):
        return self.codes.get(kind, kind)

    def error(self, kind, message, status, *, param=None):
        return JSONResponse({"code": self.code_for(kind), "message": message, "param": param}, status_code=status)


def test_reject_records_code_for_and_passes_fields_to_error():
    fake = _VendorCodedFake()
    rec = Recorded("POST", "/x", {})
    resp = fake.reject(rec, "TaskNotFound", "no such task", 404, param="id")
    assert (resp.status_code, rec.status, rec.code) == (404, 404, "TaskNotFound")
    assert rec.answer == {"code": "TaskNotFound", "message": "no such task", "param": "id"}
    denied = Recorded("GET", "/x", {})
    assert fake.check_auth(denied, "Bearer k") is not None and (denied.status, denied.code) == (401, "Unauthorized")

    class Own:  # a fake's own record type gets the status only
        status = None

    own = Own()
    assert fake.reject(own, "BadRequest", "no").status_code == 400 and own.status == 400


async def test_fake_deliveries_carry_the_reply_and_run_then():
    fake = _CodedFake()
    seen = []
    async with fake.serve():
        fake.send_callback(f"{fake.url}/hook", {"challenge": "c-1"}, then=seen.append)
        fake.send_callback("http://127.0.0.1:9/gone", {"x": 1}, then=seen.append, timeout=1)
        for _ in range(200):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.01)
    delivered = {d.url.rsplit("/", 1)[1]: d for d in fake.deliveries}
    assert (delivered["hook"].status, delivered["hook"].reply) == (200, {"challenge": "c-1"})
    assert (delivered["gone"].status, delivered["gone"].reply) == (None, None)
    assert sorted(seen, key=lambda d: d.url) == sorted(fake.deliveries, key=lambda d: d.url)
    assert len(fake.callbacks_sent) == 2
