"""Secrets and isolation.

* Vendor credentials and token keys never appear in a response (body or header), a log
  line, an error message or the store; token keys are stored hashed.
* One token can neither see, download, remix nor delete another token's task: it is a
  404, exactly like an id that does not exist.
* Image URLs the gateway fetches cannot reach private, loopback or link-local addresses,
  redirects included.
* The content endpoint serves only media the gateway stored.
"""

from __future__ import annotations

import contextlib
import sqlite3
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

from fault_servers import Fault, FaultyUpstream
from starlette.applications import Starlette
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from vidgate.auth import hash_key
from vidgate.testing import RunningGateway, captured_logs, run_gateway, serve_app
from vidgate_kling.fake import FakeKling
from vidgate_sora.fake import FakeVideosAPI

SORA_KEY = "sk-secret-xyz-5b1e0c"
KLING_AK = "AKsecret-123-ff00"
KLING_SK = "SKsecret-456-ee11"
VENDOR_SECRETS = (SORA_KEY, KLING_AK, KLING_SK)
SORA_BODY = {"model": "sora-2", "prompt": "a fox", "seconds": "4"}


def png(width: int = 4, height: int = 4) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80\x40\x20" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


class Recorder:
    """Calls the gateway and keeps every response (status, headers, body) for the scan."""

    def __init__(self, gw: RunningGateway) -> None:
        self.gw = gw
        self.seen: list[str] = []

    async def __call__(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> tuple[int, Any]:
        headers = dict(kwargs.pop("headers", {}) or {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        async with self.gw.http.request(method, self.gw.url + path, headers=headers, **kwargs) as resp:
            body = await resp.read()
            self.seen.append(f"{method} {path} {resp.status} {dict(resp.headers)!r} {body.decode('latin-1')}")
            try:
                import json

                return resp.status, json.loads(body) if body else None
            except ValueError:
                return resp.status, body


def dump_store(db_path: str) -> str:
    """Every row of every table of the SQLite store, as text."""
    con = sqlite3.connect(db_path)
    try:
        out = []
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            for row in con.execute(f"SELECT * FROM {table}"):  # noqa: S608 - names from the db
                out.append(f"{table}: {row!r}")
        return "\n".join(out)
    finally:
        con.close()


@contextlib.asynccontextmanager
async def vendors() -> AsyncIterator[tuple[FakeVideosAPI, FaultyUpstream, Any, FakeKling, Any]]:
    sora = FakeVideosAPI(api_keys={SORA_KEY})
    faulty = FaultyUpstream(sora.app)
    kling = FakeKling(access_key=KLING_AK, secret_key=KLING_SK, send_callbacks=False)
    async with serve_app(faulty) as sora_served, serve_app(kling.app) as kling_served:
        kling.base_url = kling_served.url
        yield sora, faulty, sora_served, kling, kling_served


def secrets_config(sora_url: str, kling_url: str) -> dict[str, Any]:
    return {
        "plugins": {"enabled": ["sora", "kling"]},
        "network": {"max_retry_after_seconds": 0.2},
        "worker": {"max_backoff_seconds": 0.1},
        "channels": [
            {
                "name": "sora",
                "vendor": "sora",
                "base_url": sora_url + "/v1",
                "credentials": {"api_key": SORA_KEY},
                "options": {"poll_interval": 0.05},
            },
            {
                "name": "kling",
                "vendor": "kling",
                "base_url": kling_url,
                "credentials": {"access_key": KLING_AK, "secret_key": KLING_SK},
                "options": {"poll_interval": 0.05},
            },
        ],
    }


def assert_clean(where: str, text: str, token_keys: list[str]) -> None:
    for secret in (*VENDOR_SECRETS, *token_keys):
        assert secret not in text, f"{secret!r} appears in {where}"


async def test_no_secret_in_responses_logs_or_store_on_success_and_failure(tmp_path):
    async with vendors() as (sora, faulty, sora_served, kling, kling_served):
        with captured_logs() as log_buf:
            async with run_gateway(secrets_config(sora_served.url, kling_served.url), tmp_path) as gw:
                call = Recorder(gw)
                key = await gw.token(name="alice")
                ids = []
                # Completed tasks on both vendors.
                for body in (SORA_BODY, {"model": "kling-v1-6", "prompt": "a fox", "seconds": 5}):
                    status, task = await call("POST", "/v1/video/generations", key, json=body)
                    assert status == 200, task
                    ids.append(task["id"])
                # Vendor-side failures, with the vendors' own messages.
                sora.fail_next("video_generation_failed", "Video generation failed.")
                kling.fail_next_task("Failure to pass the risk control system")
                for body in (SORA_BODY, {"model": "kling-v1-6", "prompt": "a cat", "seconds": 5}):
                    status, task = await call("POST", "/v1/video/generations", key, json=body)
                    assert status == 200, task
                    ids.append(task["id"])
                # Submit-time errors: rejected (400), rate-limited, server error.
                sora.rate_limit(times=3, retry_after=0)
                sora.server_error(times=1)
                kling.fail_creates(1002)  # auth failure at the vendor
                kling.fail_creates(1201)  # bad parameter
                for _ in range(3):
                    await call("POST", "/v1/video/generations", key, json=SORA_BODY)
                for body in ({"model": "kling-v1-6", "prompt": "x", "seconds": 5},) * 2:
                    await call("POST", "/v1/video/generations", key, json=body)
                for task_id in ids:
                    done = await gw.wait(task_id, key)
                    assert done["status"] in ("completed", "failed")
                    for path in (
                        f"/v1/videos/{task_id}",
                        f"/v1/video/generations/{task_id}",
                        f"/v1/videos/{task_id}/content",
                        f"/v1/videos/{task_id}/content?variant=thumbnail",
                    ):
                        await call("GET", path, key)
                for path in ("/v1/videos", "/v1/models", "/openapi.json", "/healthz", "/-/plugins"):
                    await call("GET", path, key)
                # Wrong and missing keys: the error never quotes the key it was given.
                await call("GET", "/v1/videos", key + "x")
                await call("GET", "/v1/videos", None, headers={"Authorization": key})
                statuses = [s.split(" ")[2] for s in call.seen]
                assert "200" in statuses and "401" in statuses
                db_path = str(tmp_path / "data" / "vidgate.db")
                [token_row] = await gw.gateway.store.tokens_named("alice")
        logged = log_buf.getvalue()
        assert "task_completed" in logged and "task_failed" in logged  # the capture works
        assert_clean("an HTTP response", "\n".join(call.seen), [key])
        assert_clean("the logs", logged, [key])
        store_text = dump_store(db_path)
        assert_clean("the store", store_text, [key])
        assert hash_key(key) in store_text  # stored hashed...
        assert token_row.key_hash == hash_key(key) and key not in repr(token_row)  # ...and only hashed
        # The fakes did get the real credentials: the scan above could have found them.
        assert any(r.headers.get("authorization") == f"Bearer {SORA_KEY}" for r in sora.requests)


async def test_vendor_error_that_quotes_the_credential_is_scrubbed(tmp_path):
    async with vendors() as (sora, faulty, sora_served, kling, kling_served):
        with captured_logs() as log_buf:
            async with run_gateway(secrets_config(sora_served.url, kling_served.url), tmp_path) as gw:
                call = Recorder(gw)
                key = await gw.token(name="alice")
                faulty.add("create", Fault("echo_auth", status=400))  # -> 400 to the client
                faulty.add("create", Fault("echo_auth", status=401))  # -> channel unusable
                status, _ = await call("POST", "/v1/video/generations", key, json=SORA_BODY)
                assert status == 400
                status, _ = await call("POST", "/v1/video/generations", key, json=SORA_BODY)
                assert status == 503
                assert len(faulty.injected) == 2
                db_path = str(tmp_path / "data" / "vidgate.db")
        assert_clean("an HTTP response", "\n".join(call.seen), [key])
        assert_clean("the store", dump_store(db_path), [key])
        assert_clean("the logs", log_buf.getvalue(), [key])


async def test_another_tokens_task_is_a_404_for_every_operation(tmp_path):
    async with vendors() as (sora, faulty, sora_served, kling, kling_served):
        async with run_gateway(secrets_config(sora_served.url, kling_served.url), tmp_path) as gw:
            alice = await gw.token(name="alice")
            mallory = await gw.token(name="mallory")
            _, task = await gw.post("/v1/videos", alice, json=SORA_BODY)
            tid = task["id"]
            assert len(tid) >= 40  # 192 random bits: not guessable
            assert (await gw.wait(tid, alice))["status"] == "completed"
            missing = "video_" + "0" * 48

            async def as_mallory(method: str, path: str, **kw: Any) -> tuple[int, Any]:
                return await gw.request(method, path, mallory, **kw)

            for some_id in (tid, missing):
                for method, path, kw in (
                    ("GET", f"/v1/videos/{some_id}", {}),
                    ("GET", f"/v1/video/generations/{some_id}", {}),
                    ("GET", f"/v1/videos/{some_id}/content", {}),
                    ("GET", f"/v1/videos/{some_id}/content?variant=thumbnail", {}),
                    ("HEAD", f"/v1/videos/{some_id}/content", {"raw": True}),
                    ("POST", f"/v1/videos/{some_id}/remix", {"json": {"prompt": "mine now"}}),
                    ("DELETE", f"/v1/videos/{some_id}", {}),
                ):
                    status, body = await as_mallory(method, path, **kw)
                    assert status == 404, (method, path, status, body)
                    if method != "HEAD":
                        # Same answer as for an id that does not exist: nothing to tell apart.
                        assert body["error"]["code"] in ("not_found", "video_not_found"), body
            _, listing = await gw.get("/v1/videos", mallory)
            assert listing["data"] == []
            _, listing = await gw.get(f"/v1/videos?after={tid}", mallory)
            assert tid not in str(listing)
            # Alice still has it, untouched.
            status, data = await gw.get(f"/v1/videos/{tid}/content", alice, raw=True)
            assert status == 200 and data == sora.video_bytes


async def test_content_serves_only_stored_media(tmp_path):
    async with vendors() as (sora, faulty, sora_served, kling, kling_served):
        async with run_gateway(secrets_config(sora_served.url, kling_served.url), tmp_path) as gw:
            key = await gw.token()
            # A file outside media storage that a traversal would reach.
            (tmp_path / "data" / "secret.txt").write_text("do not serve")
            for evil in (
                "..%2F..%2Fetc%2Fpasswd",
                "..%2Fsecret.txt",
                "%2e%2e%2f%2e%2e%2fvidgate.db",
                "..",
                "video_..%2F..%2Fsecret",
                "%00",
                "video_" + "a" * 500,
            ):
                for suffix in ("/content", "/content?variant=thumbnail", ""):
                    status, body = await gw.get(f"/v1/videos/{evil}{suffix}", key, raw=True)
                    assert status == 404, (evil, suffix, status, body[:200])
                    assert b"do not serve" not in body and b"SQLite" not in body


async def ssrf_submit(gw: RunningGateway, key: str, url: str) -> tuple[int, Any]:
    return await gw.post("/v1/video/generations", key, json={**SORA_BODY, "image": url})


async def test_image_urls_to_private_addresses_are_refused(tmp_path):
    # Only literal addresses here: the guard refuses them before any connection is made.
    async with vendors() as (sora, faulty, sora_served, kling, kling_served):
        async with run_gateway(secrets_config(sora_served.url, kling_served.url), tmp_path) as gw:
            key = await gw.token(name="client")
            for url in (
                f"http://127.0.0.1:{sora_served.port}/x.png",
                "http://10.0.0.1/x.png",
                "http://169.254.169.254/latest/meta-data/",
                "http://[::1]/x.png",
                "http://[::ffff:127.0.0.1]/x.png",
                "http://0.0.0.0/x.png",
                "file:///etc/passwd",
                "http://localhost/x.png",
            ):
                status, body = await ssrf_submit(gw, key, url)
                assert status == 400, (url, body)
                assert body["error"]["param"] == "image", body
            assert sora.creates() == []  # nothing reached the vendor
            assert (await gw.gateway.store.token("client")).used == 0


async def test_redirect_from_an_allowed_host_to_a_private_one_is_refused(tmp_path):
    """The first hop (127.0.0.2, allowed by ``network.allow_image_networks``) answers; its
    redirect to loopback (127.0.0.1, ``localhost``, ``[::1]``) is refused at the next hop."""
    image = png()
    hits: list[str] = []

    async def target(request: Any) -> Response:
        hits.append(str(request.url))
        return Response(image, media_type="image/png")

    async def serve(request: Any) -> Response:
        return Response(image, media_type="image/png")

    inner = Starlette(routes=[Route("/img.png", target)])
    async with serve_app(inner) as internal:

        async def redirect(request: Any) -> Response:
            where = request.path_params["where"]
            url = {
                "ip": f"http://127.0.0.1:{internal.port}/img.png",
                "name": f"http://localhost:{internal.port}/img.png",
                "v6": f"http://[::1]:{internal.port}/img.png",
                "meta": "http://169.254.169.254/latest/meta-data/",
            }[where]
            return RedirectResponse(url, status_code=302)

        outer = Starlette(routes=[Route("/ok.png", serve), Route("/to/{where}", redirect)])
        async with (
            serve_app(outer, host="127.0.0.2") as public,
            vendors() as (sora, _, sora_served, kling, kling_served),
        ):
            cfg = secrets_config(sora_served.url, kling_served.url)
            cfg["network"]["allow_image_networks"] = ["127.0.0.2/32"]
            async with run_gateway(cfg, tmp_path) as gw:
                key = await gw.token()
                # Control: the allowed host itself works, so a refusal below is the redirect's.
                status, body = await ssrf_submit(gw, key, f"{public.url}/ok.png")
                assert status == 200, body
                assert sora.creates()[-1].files["input_reference"].data == image
                for where in ("ip", "name", "v6", "meta"):
                    status, body = await ssrf_submit(gw, key, f"{public.url}/to/{where}")
                    assert status == 400, (where, body)
                    assert body["error"]["param"] == "image"
                assert hits == []  # the private target was never reached
                assert len(sora.creates()) == 1


async def test_vendor_failure_message_that_quotes_the_credential_is_scrubbed(tmp_path):
    """The same at poll time: a failed task's error message (from the vendor's video
    object) never carries the channel's key to the client, the store or the logs."""
    async with vendors() as (sora, faulty, sora_served, kling, kling_served):
        with captured_logs() as log_buf:
            async with run_gateway(secrets_config(sora_served.url, kling_served.url), tmp_path) as gw:
                call = Recorder(gw)
                key = await gw.token(name="alice")
                sora.fail_next("invalid_key", f"Generation refused for key {SORA_KEY}")
                status, task = await call("POST", "/v1/video/generations", key, json=SORA_BODY)
                assert status == 200, task
                done = await gw.wait(task["id"], key)
                assert done["status"] == "failed" and done["error"]["code"] == "invalid_key"
                await call("GET", f"/v1/videos/{task['id']}", key)
                await call("GET", f"/v1/video/generations/{task['id']}", key)
                await call("GET", "/v1/videos", key)
                db_path = str(tmp_path / "data" / "vidgate.db")
        assert_clean("an HTTP response", "\n".join(call.seen), [key])
        assert_clean("the store", dump_store(db_path), [key])
        assert_clean("the logs", log_buf.getvalue(), [key])
