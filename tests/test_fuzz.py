"""Bad input.

* Property-based fuzzing of every operation in the served ``/openapi.json`` with
  schemathesis (valid and invalid inputs, with a valid Bearer key): no 5xx, and every
  response matches the schema the document promises.
* Explicit hostile bodies -- oversized, a huge image, deeply nested JSON, invalid UTF-8,
  odd multipart -- are refused with a 4xx in the one error shape.

The gateway runs in a thread with its own event loop (schemathesis calls are blocking),
with the in-process scripted vendor so that valid submits succeed.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from scripted_vendor import Scripted, scripted_config

from vidgate.testing import run_gateway

EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}


class ThreadedGateway:
    """A gateway served from a background thread's event loop."""

    def __init__(self, tmp_path: Any) -> None:
        self.tmp_path = tmp_path
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.url = ""
        self.key = ""
        self.task_id = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced by start()
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with run_gateway(scripted_config(), self.tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
            self.url = gw.url
            self.key = await gw.token(name="fuzzer")
            _, task = await gw.post("/v1/videos", self.key, json={"model": "scripted-1", "prompt": "seed"})
            self.task_id = task["id"]
            await gw.wait(self.task_id, self.key)
            self.ready.set()
            await self._stop.wait()

    def start(self) -> ThreadedGateway:
        self.thread.start()
        self.ready.wait(60)
        if self.error is not None:
            raise self.error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(30)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedGateway]:
    gateway = ThreadedGateway(tmp_path_factory.mktemp("fuzz")).start()
    try:
        yield gateway
    finally:
        gateway.stop()


def test_every_operation_fuzzed_has_no_5xx_and_matches_its_schema(served):
    schema = schemathesis.openapi.from_url(served.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    # Every public endpoint is in the document (so every one is fuzzed).
    for expected in (
        "POST /v1/video/generations",
        "GET /v1/video/generations/{task_id}",
        "POST /v1/videos",
        "GET /v1/videos",
        "GET /v1/videos/{video_id}",
        "DELETE /v1/videos/{video_id}",
        "GET /v1/videos/{video_id}/content",
        "POST /v1/videos/{video_id}/remix",
        "GET /v1/models",
    ):
        assert expected in labels, (expected, sorted(labels))
    headers = {"Authorization": f"Bearer {served.key}"}
    calls = {"n": 0, "5xx": 0}
    failures: list[str] = []
    for op in operations:
        for mode, examples in EXAMPLES.items():

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
                print_blob=False,
            )
            def run(case: Any) -> None:
                response = case.call(base_url=served.url, headers=headers, timeout=30)
                calls["n"] += 1
                calls["5xx"] += response.status_code >= 500
                try:
                    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
                except Exception as exc:  # collect, report all at the end
                    failures.append(f"{op.label} [{mode.value}] -> {response.status_code}: {str(exc)[:600]}")  # noqa: B023 (run in this iteration)
                    raise

            try:
                run()
            except Exception:
                pass  # recorded in failures
    print(f"fuzz: {len(operations)} operations, {calls['n']} requests, {calls['5xx']} 5xx")
    assert calls["n"] >= 100
    assert calls["5xx"] == 0
    assert not failures, "\n".join(failures)


# -- explicit hostile bodies ---------------------------------------------------------

GEN = "/v1/video/generations"
PNG_1x1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def assert_refused(status: int, body: Any, allowed: tuple[int, ...] = (400,)) -> None:
    assert status in allowed, (status, body if not isinstance(body, bytes) else body[:300])
    assert isinstance(body, dict) and "error" in body, body  # the one error shape
    assert isinstance(body["error"].get("message"), str)


async def test_oversized_body_is_413(tmp_path):
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token()
        limit = gw.gateway.config.server.max_body_bytes
        big = b'{"model": "scripted-1", "prompt": "' + b"a" * (limit + 1024) + b'"}'
        status, body = await gw.post(GEN, key, data=big, headers={"Content-Type": "application/json"})
        assert_refused(status, body, (413,))
        # Also when the client does not announce the length (chunked upload).

        async def chunks():
            for _ in range(limit // (1 << 20) + 2):
                yield b"a" * (1 << 20)

        status, body = await gw.post(GEN, key, data=chunks(), headers={"Content-Type": "application/json"})
        assert_refused(status, body, (413,))
        # And the gateway still serves.
        status, _ = await gw.post(GEN, key, json={"model": "scripted-1", "prompt": "ok"})
        assert status == 200


async def test_huge_image_is_refused(tmp_path):
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token(name="client")
        raw = PNG_1x1 + b"\x00" * (20 * 1024 * 1024 + 1)
        data_url = "data:image/png;base64," + base64.b64encode(raw).decode()
        status, body = await gw.post(GEN, key, json={"model": "scripted-1", "prompt": "p", "image": data_url})
        assert_refused(status, body, (400, 413))
        form = {"model": "scripted-1", "prompt": "p"}
        import aiohttp

        data = aiohttp.FormData(form)
        data.add_field("input_reference", raw, filename="big.png", content_type="image/png")
        status, body = await gw.post("/v1/videos", key, data=data)
        assert_refused(status, body, (400, 413))
        assert (await gw.gateway.store.token("client")).used == 0


async def test_deep_json_invalid_utf8_and_junk_are_400(tmp_path):
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token()
        json_headers = {"Content-Type": "application/json"}
        deep = "[" * 100_000 + "]" * 100_000
        bodies = [
            deep.encode(),
            b'{"model": "scripted-1", "prompt": "p", "metadata": '
            + ('{"a":' * 5000 + "1" + "}" * 5000).encode()
            + b"}",
            b'{"model": "scripted-1", "prompt": "\xff\xfe\xfa"}',
            b'\xef\xbb\xbf{"model": "scripted-1", "prompt": "\xc3\x28"}',
            b'{"model": "scripted-1", "prompt": "p"',
            b"",
            b"null",
            b'"just a string"',
            b'{"model": "scripted-1", "prompt": "p", "seconds": 1e999}',
            b'{"model": "scripted-1", "prompt": "p", "seconds": NaN}',
            b'{"model": ["scripted-1"], "prompt": {"x": 1}}',
            b'{"model": "scripted-1", "prompt": "p\x00"}',
        ]
        for path in (GEN, "/v1/videos"):
            for body in bodies:
                status, answer = await gw.post(path, key, data=body, headers=json_headers)
                assert status == 400, (path, body[:80], status, answer)
                assert_refused(status, answer)
        # Remix takes JSON too.
        _, task = await gw.post(GEN, key, json={"model": "scripted-1", "prompt": "p"})
        await gw.wait(task["id"], key)
        for body in (b for b in bodies if b"seconds" not in b):  # remix reads only the prompt
            status, answer = await gw.post(f"/v1/videos/{task['id']}/remix", key, data=body, headers=json_headers)
            assert status == 400, (body[:80], status, answer)
            assert_refused(status, answer)


async def test_odd_multipart_is_400(tmp_path):
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token(name="client")
        b = "XyZzY"

        def part(name: str, value: bytes, filename: str | None = None, ctype: str | None = None) -> bytes:
            disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
            head = f"--{b}\r\nContent-Disposition: {disp}\r\n" + (f"Content-Type: {ctype}\r\n" if ctype else "")
            return head.encode() + b"\r\n" + value + b"\r\n"

        fields = part("model", b"scripted-1") + part("prompt", b"a fox")
        end = f"--{b}--\r\n".encode()
        ok_type = {"Content-Type": f"multipart/form-data; boundary={b}"}
        cases = [
            ("missing boundary", fields + end, {"Content-Type": "multipart/form-data"}),
            ("wrong boundary", fields + end, {"Content-Type": "multipart/form-data; boundary=other"}),
            ("truncated", fields[: len(fields) // 2], ok_type),
            ("no closing boundary", fields + b"--" + b.encode(), ok_type),
            ("garbage", b"\x00\xff" * 200, ok_type),
            ("part without name", f"--{b}\r\nContent-Disposition: form-data\r\n\r\nx\r\n".encode() + end, ok_type),
            ("0-byte file", fields + part("input_reference", b"", "empty.png", "image/png") + end, ok_type),
            (
                "non-image file",
                fields + part("input_reference", b"%PDF-1.4 not an image", "doc.png", "image/png") + end,
                ok_type,
            ),
            ("text as image", fields + part("input_reference", b"hello", "a.txt", "text/plain") + end, ok_type),
            ("header without CRLF", f'--{b}\r\nContent-Disposition: form-data; name="prompt"'.encode(), ok_type),
            ("huge field name", fields + part("n" * 100_000, b"x") + end, ok_type),
        ]
        for name, body, headers in cases:
            status, answer = await gw.post("/v1/videos", key, data=body, headers=headers)
            assert status in (400, 413), (name, status, answer)
            assert isinstance(answer, dict) and "error" in answer, (name, answer)
        # Control: the same framing with sane parts is accepted.
        status, answer = await gw.post("/v1/videos", key, data=fields + end, headers=ok_type)
        assert status == 200, answer


async def test_lone_surrogate_in_json_is_400_not_500(tmp_path):
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token()
        for path in (GEN, "/v1/videos"):
            for body in (
                b'{"model": "scripted-1", "prompt": "\\ud800"}',
                b'{"model": "scripted-1", "prompt": "p", "metadata": {"k": "\\udfff"}}',
            ):
                status, answer = await gw.post(path, key, data=body, headers={"Content-Type": "application/json"})
                assert_refused(status, answer)


async def test_invalid_utf8_in_a_multipart_text_field_is_400(tmp_path):
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token()
        b = "XyZzY"
        body = (
            (
                f'--{b}\r\nContent-Disposition: form-data; name="model"\r\n\r\nscripted-1\r\n'
                f'--{b}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\n'
            ).encode()
            + b"a fox \xff\xfe\r\n"
            + f"--{b}--\r\n".encode()
        )
        status, answer = await gw.post(
            "/v1/videos", key, data=body, headers={"Content-Type": f"multipart/form-data; boundary={b}"}
        )
        assert_refused(status, answer)
