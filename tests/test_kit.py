"""The plugin kit: helpers, the fake base, and a scaffolded plugin that passes the contract."""

from __future__ import annotations

import email.utils
import os
import subprocess
import sys
import time

import aiohttp
import pytest

from vidgate.cli import main
from vidgate.errors import VendorUnavailable
from vidgate.fakekit import FakeVendor, keywords, range_response
from vidgate.testing import tiny_mp4
from vidgate.vendorhttp import join_url, parse_json, retry_after, transport_errors


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
