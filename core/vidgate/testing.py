"""A test kit for vidgate and its plugins (installed with ``vidgate[testing]``).

Everything here runs real servers on 127.0.0.1 inside the test's event loop:

* :func:`serve_app` serves any ASGI app (a fake vendor, say) on a free port.
* :func:`run_gateway` starts a whole gateway (store, worker, plugins) from a config dict
  or TOML text, with its data under a temporary directory, and yields a
  :class:`RunningGateway` that can mint tokens, call the API and wait for tasks.

Example, in a plugin's tests::

    async def test_text_to_video(tmp_path):
        async with serve_app(make_fake_acme()) as fake:
            config = {"plugins": {"enabled": ["acme"]},
                      "channels": [{"name": "a", "vendor": "acme", "base_url": fake.url,
                                    "credentials": {"api_key": "k"}}]}
            async with run_gateway(config, tmp_path) as gw:
                key = await gw.token()
                status, task = await gw.post("/v1/video/generations", key,
                                             json={"model": "acme-1", "prompt": "a fox"})
                done = await gw.wait(task["id"], key)
                assert done["status"] == "completed"

The kit's other parts: :mod:`vidgate.contract` (``from vidgate.testing import contract``),
the contract suite every plugin runs; :mod:`vidgate.fakekit`, the base of fake vendor
servers; :func:`captured_logs`, :func:`dump_store` and :func:`tiny_png` for assertions.

The module is also a pytest plugin (entry point ``pytest11``) providing the fixture
``vidgate_gateway``, a factory with the same arguments as :func:`run_gateway` whose
``tmp_path`` is filled in, and a collection at the end of each test module, so that an
unclosed session or socket fails the module that leaked it, not a later one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import io
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

__all__ = [
    "RunningGateway",
    "ServedApp",
    "captured_logs",
    "dump_store",
    "force_task_state",
    "run_gateway",
    "serve_app",
    "tiny_mp4",
    "tiny_png",
]


def __getattr__(name: str) -> Any:
    # ``from vidgate.testing import contract``: loaded on demand, since it imports this module.
    if name in ("contract", "fakekit"):
        import importlib

        return importlib.import_module(f"vidgate.{name}")
    raise AttributeError(name)


@functools.cache
def tiny_png(width: int = 64, height: int = 64) -> bytes:
    """A small valid PNG (solid red), for image-to-video requests."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@contextlib.contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Everything the gateway logs inside the block, rendered exactly as ``vidgate serve``
    renders it (JSON, debug level) plus every stdlib log record, in one text buffer."""
    import logging
    import sys

    import structlog

    from . import logs

    buf = io.StringIO()
    real_stderr = sys.stderr
    sys.stderr = buf
    try:
        logs.configure(level="debug", json=True)
    finally:
        sys.stderr = real_stderr
    handler = logging.StreamHandler(buf)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buf
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        structlog.reset_defaults()


async def force_task_state(store: Any, task_id: str, **columns: Any) -> bool:
    """Tests only: write task ``columns`` directly, bypassing the lifecycle's transitions,
    to stage what only a crash leaves behind (a submit whose answer was lost, a row from
    an older version). Watchers are told of the change as for any other write."""
    changed: bool = await store._update(task_id, columns, unfinished=False)
    return changed


def dump_store(db_path: str | Path) -> str:
    """The whole SQLite store as SQL text, to search for what must not be stored."""
    import sqlite3

    conn = sqlite3.connect(db_path)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


@functools.cache
def tiny_mp4(width: int = 64, height: int = 64, frames: int = 8) -> bytes:
    """A small, valid H.264 MP4 (grey frames growing lighter), made once per size.

    For fake vendors: the gateway decodes results (to make thumbnails), so fakes should
    serve a real video rather than arbitrary bytes.
    """
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame(width, height, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([(i * 30) % 256]) * plane.buffer_size)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


@attrs.define
class ServedApp:
    """An ASGI app served on 127.0.0.1; ``url`` has no trailing slash."""

    url: str
    port: int
    app: Any


@contextlib.asynccontextmanager
async def serve_app(app: Any, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[ServedApp]:
    """Serve ``app`` with uvicorn in this event loop until the block exits."""
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # Leave signal handling to the test runner.
            yield

    server = _Server(uvicorn.Config(app, host=host, port=port, lifespan="on", log_config=None, access_log=False))
    runner = asyncio.create_task(server.serve())
    while not server.started:
        if runner.done():
            runner.result()  # raises the start-up error
            raise RuntimeError("server exited during start-up")
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield ServedApp(url=f"http://{host}:{bound}", port=bound, app=app)
    finally:
        server.should_exit = True
        await runner


@attrs.define
class RunningGateway:
    """A gateway under test. ``gateway`` is the live :class:`vidgate.gateway.Gateway`.

    ``transcript`` holds every response the helpers received (``"METHOD path status body"``),
    for assertions about what a client can see.
    """

    url: str
    gateway: Any
    http: Any  # aiohttp.ClientSession used by the helpers
    transcript: list[str] = attrs.field(factory=list)

    async def token(
        self,
        name: str | None = None,
        group: str = "default",
        quota: float | None = None,
        models: list[str] | None = None,
    ) -> str:
        """Create a token and return its key (``quota`` in price units; None = unlimited).
        Token names are unique: without ``name`` the first is ``test``, then ``test-2``..."""
        from .billing import to_micro

        if name is None:
            for n in itertools.count(1):
                candidate = "test" if n == 1 else f"test-{n}"
                if not await self.gateway.store.tokens_named(candidate):
                    name = candidate
                    break
        assert name is not None

        key: str
        _, key = await self.gateway.create_token(name, group, None if quota is None else to_micro(quota), models)
        return key

    async def request(
        self, method: str, path: str, key: str | None = None, *, raw: bool = False, **kwargs: Any
    ) -> tuple[int, Any]:
        """Call the API; returns ``(status, decoded JSON)`` (bytes with ``raw=True``)."""
        headers = dict(kwargs.pop("headers", {}) or {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        async with self.http.request(method, self.url + path, headers=headers, **kwargs) as resp:
            body = await resp.read()
            self.transcript.append(f"{method} {path} {resp.status} {body.decode('utf-8', 'replace')}")
            if raw:
                return resp.status, body
            try:
                import json

                return resp.status, json.loads(body) if body else None
            except ValueError:
                return resp.status, body

    async def post(self, path: str, key: str | None = None, **kwargs: Any) -> tuple[int, Any]:
        return await self.request("POST", path, key, **kwargs)

    async def get(self, path: str, key: str | None = None, **kwargs: Any) -> tuple[int, Any]:
        return await self.request("GET", path, key, **kwargs)

    async def wait(
        self,
        task_id: str,
        key: str,
        *,
        until: tuple[str, ...] = ("completed", "failed", "cancelled"),
        timeout: float = 60.0,
        on_poll: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll ``GET /v1/videos/{id}`` until the status is in ``until``."""
        deadline = time.monotonic() + timeout
        while True:
            status, task = await self.get(f"/v1/videos/{task_id}", key)
            if status != 200:
                raise AssertionError(f"polling {task_id} gave HTTP {status}: {task}")
            if on_poll is not None:
                on_poll(task)
            if task["status"] in until:
                done: dict[str, Any] = task
                return done
            if time.monotonic() > deadline:
                raise AssertionError(f"task {task_id} still {task['status']} after {timeout}s")
            await asyncio.sleep(0.05)


def _test_config(config: Mapping[str, Any] | str | None, tmp_path: Path) -> Any:
    import tomllib

    from .config import parse_config

    data: dict[str, Any] = tomllib.loads(config) if isinstance(config, str) else dict(config or {})
    data = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
    server = data.setdefault("server", {})
    server.setdefault("data_dir", str(tmp_path / "data"))
    data.setdefault("store", {}).setdefault("url", f"sqlite:///{tmp_path / 'data' / 'vidgate.db'}")
    data.setdefault("media", {}).setdefault("path", str(tmp_path / "data" / "media"))
    # Fast defaults, so that retries and backoffs in plugin tests take milliseconds.
    worker = data.setdefault("worker", {})
    worker.setdefault("tick_seconds", 0.05)
    worker.setdefault("max_backoff_seconds", 0.2)
    network = data.setdefault("network", {})
    network.setdefault("max_retry_after_seconds", 0.5)
    # Fake vendors run on loopback and serve their results from there; production
    # refuses loopback result URLs unless the operator allows them, as here.
    network.setdefault("allow_result_networks", ["127.0.0.0/8", "::1/128"])
    if "channels" not in data:
        data["channels"] = [{"name": "local", "vendor": "local"}]
        data.setdefault("plugins", {}).setdefault("enabled", ["local"])
    return parse_config(data, "<test config>")


@contextlib.asynccontextmanager
async def run_gateway(
    config: Mapping[str, Any] | str | None,
    tmp_path: Path,
    *,
    extra_plugins: Mapping[str, object] | None = None,
    run_worker: bool = True,
) -> AsyncIterator[RunningGateway]:
    """Start a full gateway on 127.0.0.1 for the duration of the block.

    :param config: a config dict or TOML text; store, media and data paths default to
        ``tmp_path``, and with no ``channels`` the embedded ``local`` channel is used.
        Defaults are fast: worker tick 0.05 s, backoff capped at 0.2 s, Retry-After
        honoured up to 0.5 s (set them in ``config`` to test slower behaviour).
        Starting a second gateway on the same ``tmp_path`` reuses the data (a restart).
    :param extra_plugins: plugin objects to register in-process (name -> plugin).
    :param run_worker: run the poll worker in the server (default True).
    """
    import aiohttp

    from .api import create_app
    from .gateway import Gateway

    gateway = await Gateway.start(_test_config(config, tmp_path), extra_plugins=dict(extra_plugins or {}))
    try:
        app = create_app(gateway, run_worker=run_worker)
        async with serve_app(app) as served:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
                yield RunningGateway(url=served.url, gateway=gateway, http=http)
    finally:
        await gateway.close()


try:
    import pytest
except ImportError:  # the kit works without pytest; only the fixture needs it
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def vidgate_gateway(tmp_path: Path) -> Callable[..., contextlib.AbstractAsyncContextManager[RunningGateway]]:
        """Factory: ``async with vidgate_gateway(config, extra_plugins=...) as gw``."""

        def factory(config: Mapping[str, Any] | str | None = None, **kwargs: Any) -> Any:
            return run_gateway(config, tmp_path, **kwargs)

        return factory

    @pytest.fixture(scope="module", autouse=True)
    def _vidgate_collect_at_module_end() -> Iterator[None]:
        """Run the garbage collector once at the end of each test module.

        A leaked session, transport or socket is reported only when the collector finds
        it, in whichever test runs then (often another module's, on the same xdist
        worker); collecting here charges it to the module that leaked it."""
        yield
        gc.collect()
