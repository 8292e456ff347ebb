"""Outbound network and media hardening (issue 11, findings 1, 3-7, 14).

Real servers on 127.0.0.1/127.0.0.2: an "internal" service that must never be reached,
"public" result and image hosts (127.0.0.2, allowed explicitly), and a gateway whose
result downloads go through the same address guard as client image URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

from scripted_vendor import VIDEO, Scripted, scripted_config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from vidgate.testing import run_gateway, serve_app

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
LOCAL_BODY = {"model": "local-v1", "prompt": "a fox", "seconds": 1}


class Recorder:
    """An HTTP service that records every request it gets (path and headers)."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, dict[str, str]]] = []

    def app(self, routes: list[Route] | None = None) -> Starlette:
        async def anything(request: Request) -> Response:
            self.hits.append((request.url.path, dict(request.headers)))
            return Response(PNG if request.url.path.endswith(".png") else VIDEO, media_type="image/png")

        return Starlette(routes=[*(routes or []), Route("/{path:path}", anything)])


@contextlib.asynccontextmanager
async def closed_port() -> AsyncIterator[int]:
    """A loopback port with nothing listening (bound, then closed)."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    yield port


def raw_redirect(location: str) -> Response:
    """A 302 whose Location is sent as raw UTF-8 (Starlette's RedirectResponse would
    percent-encode the Unicode digits, which no resolver then finds)."""
    response = Response(status_code=302)
    response.raw_headers.append((b"location", location.encode("utf-8")))
    return response


# -- finding 1: a client URL that breaks the resolver is a 400, not a channel failure -----


async def test_image_url_with_an_overlong_label_is_a_400_and_the_channel_stays_up(tmp_path):
    """``getaddrinfo`` raised ``UnicodeError`` (label over 63 characters) through
    ``fetch_image``; every variant of a bad host must be a 400 naming the field, and the
    channel must keep serving other clients afterwards."""
    bad_urls = [
        "http://" + "a" * 64 + ".example/x.png",
        "http://" + "a" * 300 + "/x.png",
        "http://exa mple.com/x.png",
        "http://example.com:99999/x.png",
        "http://[::1/x.png",
        "http:///x.png",
    ]
    async with run_gateway(None, tmp_path) as gw:
        key = await gw.token()
        other = await gw.token(name="other")
        for url in bad_urls * 2:
            status, body = await gw.post("/v1/video/generations", key, json={**LOCAL_BODY, "image": url})
            assert status == 400, (url, body)
            assert body["error"]["param"] == "image", body
        status, task = await gw.post("/v1/video/generations", other, json=LOCAL_BODY)
        assert status == 200, task
        assert (await gw.wait(task["id"], other))["status"] == "completed"


# -- finding 3: the guard sees the address actually connected to --------------------------

UNICODE_FORMS = [
    "http://\u2460\u2461\u2466.0.0.1:{port}/x.png",  # circled digits
    "http://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11:{port}/x.png",  # full-width, full-width dots
    "http://1\uff127.0.0.\u2460:{port}/x.png",  # mixed
    "http://127\u30020\u30020\u30021:{port}/x.png",  # ideographic full stops
    "http://2130706433:{port}/x.png",  # one decimal number
    "http://0x7f.1:{port}/x.png",  # hex, short form
    "http://127.1:{port}/x.png",
    "http://[::ffff:7f00:1]:{port}/x.png",
]


def refusal(message: str) -> bool:
    # Non-canonical IPv4 spellings (2130706433, 0x7f.1) are refused by aiohttp as
    # invalid URLs before any connection; everything else by the guard.
    return message in ("image: the image URL's address is not allowed", "image: not a valid http(s) image URL")


async def test_unicode_and_odd_ip_forms_never_reach_an_internal_service(tmp_path):
    internal = Recorder()
    async with serve_app(internal.app()) as served, run_gateway(None, tmp_path) as gw:
        key = await gw.token()
        for form in UNICODE_FORMS:
            url = form.format(port=served.port)
            status, body = await gw.post("/v1/video/generations", key, json={**LOCAL_BODY, "image": url})
            assert status == 400, (url, body)
            assert body["error"]["param"] == "image"
            assert refusal(body["error"]["message"]), body
        assert internal.hits == []


async def test_unicode_forms_behind_a_redirect_from_an_allowed_host_are_refused(tmp_path):
    internal = Recorder()
    async with serve_app(internal.app()) as inner:

        async def redirect(request: Request) -> Response:
            form = UNICODE_FORMS[int(request.path_params["i"])]
            return raw_redirect(form.format(port=inner.port))

        async def ok(request: Request) -> Response:
            return Response(PNG, media_type="image/png")

        outer = Starlette(routes=[Route("/to/{i}", redirect), Route("/ok.png", ok)])
        async with serve_app(outer, host="127.0.0.2") as public:
            cfg = {"network": {"allow_image_networks": ["127.0.0.2/32"]}}
            async with run_gateway(cfg, tmp_path) as gw:
                key = await gw.token()
                for i in range(len(UNICODE_FORMS)):
                    status, body = await gw.post(
                        "/v1/video/generations", key, json={**LOCAL_BODY, "image": f"{public.url}/to/{i}"}
                    )
                    assert status == 400, (UNICODE_FORMS[i], body)
                    assert body["error"]["param"] == "image"
                    assert refusal(body["error"]["message"]), body
    assert internal.hits == []


async def test_a_refusal_is_the_same_for_an_internal_port_that_is_up_or_down(tmp_path):
    """No port scanning through the gateway: an internal service that answers and a port
    with nothing behind it give the same answer, with no connect or resolve details."""
    internal = Recorder()
    async with serve_app(internal.app()) as up, closed_port() as down, run_gateway(None, tmp_path) as gw:
        key = await gw.token()
        for form in [*UNICODE_FORMS, "http://127.0.0.1:{port}/x.png", "http://localhost:{port}/x.png"]:
            answers = []
            for port in (up.port, down):
                status, body = await gw.post(
                    "/v1/video/generations", key, json={**LOCAL_BODY, "image": form.format(port=port)}
                )
                answers.append((status, body["error"]["message"], body["error"]["param"]))
            assert answers[0] == answers[1], (form, answers)
            message = answers[0][1].lower()
            for leak in ("refused", "resolve", "connect", "errno", "127.0.0.1", str(up.port), str(down)):
                assert leak not in message, (form, message)
        assert internal.hits == []


# -- findings 4-7 and 14: vendor result downloads ---------------------------------------


class Downloading(Scripted):
    """The scripted vendor, fetching its result with ``ctx.download`` from a URL chosen
    per channel (and sending ``headers`` like a vendor credential)."""

    name = "scripted"

    def __init__(self) -> None:
        super().__init__()
        self.urls: dict[str, str] = {}
        self.headers: dict[str, str] = {}

    async def fetch_result(self, handle: dict[str, Any], result: dict[str, Any], variant: str, ctx: Any) -> Any:
        if variant == "thumbnail":
            return None
        return await ctx.download(self.urls[ctx.channel.name], headers=self.headers or None)


def bomb() -> bytes:
    return gzip.compress(VIDEO + b"\x00" * 5_000_000)


class ResultHost(Recorder):
    """What a vendor's result host might serve, good and bad."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[bytes] = []  # each request's query string, as sent

    def app(self, routes: list[Route] | None = None) -> Starlette:
        async def record(request: Request) -> None:
            self.hits.append((request.url.path, dict(request.headers)))
            self.queries.append(request.scope["query_string"])

        async def video(request: Request) -> Response:
            await record(request)
            return Response(VIDEO, media_type="video/mp4")

        async def video_claimed_html(request: Request) -> Response:
            await record(request)
            return Response(VIDEO, media_type="text/html")

        async def html(request: Request) -> Response:
            await record(request)
            return Response("<html><script>alert(document.cookie)</script></html>", media_type="text/html")

        async def gzipped(request: Request) -> Response:
            await record(request)  # gzips whatever the client asked for
            return Response(gzip.compress(VIDEO), media_type="video/mp4", headers={"Content-Encoding": "gzip"})

        async def gzip_bomb(request: Request) -> Response:
            await record(request)
            return Response(bomb(), media_type="video/mp4", headers={"Content-Encoding": "gzip"})

        async def big(request: Request) -> Response:
            await record(request)

            async def body() -> AsyncIterator[bytes]:  # no Content-Length: the cap applies while streaming
                yield VIDEO
                for _ in range(40):
                    yield b"\x00" * 10_000

            return StreamingResponse(body(), media_type="video/mp4")

        async def trickle(request: Request) -> Response:
            await record(request)

            async def body() -> AsyncIterator[bytes]:
                yield VIDEO[:16]
                for _ in range(600):
                    await asyncio.sleep(0.05)
                    yield b"\x00"

            return StreamingResponse(body(), media_type="video/mp4")

        async def redirect(request: Request) -> Response:
            await record(request)
            return raw_redirect(request.query_params["to"])

        return Starlette(
            routes=[
                Route("/video.mp4", video),
                Route("/claimed-html.mp4", video_claimed_html),
                Route("/page.html", html),
                Route("/gzip.mp4", gzipped),
                Route("/bomb.mp4", gzip_bomb),
                Route("/big.mp4", big),
                Route("/trickle.mp4", trickle),
                Route("/redirect", redirect),
            ]
        )


def result_config(**extra: Any) -> dict[str, Any]:
    channels = extra.pop("channels", None) or [{"name": "main", "vendor": "scripted"}]
    network = {"allow_result_networks": ["127.0.0.2/32"], **extra.pop("network", {})}
    return scripted_config(channels, network=network, worker={"fetch_attempts": 1, **extra.pop("worker", {})}, **extra)


async def run_task(gw: Any, key: str) -> dict[str, Any]:
    status, task = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p"})
    assert status == 200, task
    return await gw.wait(task["id"], key, timeout=20)


@contextlib.asynccontextmanager
async def result_hosts() -> AsyncIterator[tuple[ResultHost, Any, Recorder, Any]]:
    public, internal = ResultHost(), Recorder()
    async with serve_app(public.app(), host="127.0.0.2") as pub, serve_app(internal.app()) as inner:
        yield public, pub, internal, inner


async def test_result_urls_to_internal_services_are_refused(tmp_path):
    """Internal service, the gateway's own /metrics, a redirect to internal and a
    Unicode-digit form: none is fetched, each task fails result_unavailable."""
    plugin = Downloading()
    async with result_hosts() as (public, pub, internal, inner):
        async with run_gateway(
            result_config(server={"metrics": True}), tmp_path, extra_plugins={"scripted": plugin}
        ) as gw:
            key = await gw.token()
            plugin.urls["main"] = f"{pub.url}/video.mp4"
            assert (await run_task(gw, key))["status"] == "completed"  # control: the allowed host works
            for url in (
                f"{inner.url}/secret",
                f"{gw.url}/metrics",
                f"{pub.url}/redirect?to={inner.url}/secret",
                f"{pub.url}/redirect?to=http://\u2460\u2461\u2466.0.0.1:{inner.port}/secret",
                f"http://\uff11\uff12\uff17\uff0e0.0.1:{inner.port}/secret",
                f"http://localhost:{inner.port}/secret",
            ):
                plugin.urls["main"] = url
                done = await run_task(gw, key)
                assert done["status"] == "failed", (url, done)
                assert done["error"]["code"] == "result_unavailable"
                assert "not allowed" in done["error"]["message"]
            assert internal.hits == []


async def test_a_channel_may_allow_a_private_result_network(tmp_path):
    plugin = Downloading()
    async with result_hosts() as (public, pub, internal, inner):
        channels = [
            {"name": "main", "vendor": "scripted"},
            {"name": "private", "vendor": "scripted", "priority": 1, "allow_result_networks": ["127.0.0.1/32"]},
        ]
        async with run_gateway(result_config(channels=channels), tmp_path, extra_plugins={"scripted": plugin}) as gw:
            key = await gw.token()
            plugin.urls["private"] = f"{inner.url}/video.mp4"
            done = await run_task(gw, key)
            assert done["status"] == "completed", done
            assert len(internal.hits) == 1
            # The per-channel list replaces the global one: 127.0.0.2 is not allowed here.
            plugin.urls["private"] = f"{pub.url}/video.mp4"
            done = await run_task(gw, key)
            assert done["status"] == "failed" and "not allowed" in done["error"]["message"]


async def test_only_sniffed_video_is_stored_and_served_with_safe_headers(tmp_path):
    plugin = Downloading()
    async with result_hosts() as (public, pub, internal, inner):
        async with run_gateway(result_config(), tmp_path, extra_plugins={"scripted": plugin}) as gw:
            key = await gw.token()
            plugin.urls["main"] = f"{pub.url}/page.html"
            done = await run_task(gw, key)
            assert done["status"] == "failed" and done["error"]["code"] == "result_unavailable", done
            assert "not an MP4" in done["error"]["message"]
            status, _ = await gw.get(f"/v1/videos/{done['id']}/content", key)
            assert status == 409
            # An MP4 the vendor labels text/html is served as what it is.
            plugin.urls["main"] = f"{pub.url}/claimed-html.mp4"
            done = await run_task(gw, key)
            assert done["status"] == "completed", done
            async with gw.http.get(
                f"{gw.url}/v1/videos/{done['id']}/content", headers={"Authorization": f"Bearer {key}"}
            ) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "video/mp4"
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
                assert resp.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
                assert await resp.read() == VIDEO


async def test_result_size_is_capped_while_streaming_and_never_auto_decompressed(tmp_path):
    plugin = Downloading()
    async with result_hosts() as (public, pub, internal, inner):
        cfg = result_config(media={"max_result_bytes": 100_000})
        async with run_gateway(cfg, tmp_path, extra_plugins={"scripted": plugin}) as gw:
            key = await gw.token()
            for path in ("/big.mp4", "/bomb.mp4"):
                plugin.urls["main"] = f"{pub.url}{path}"
                done = await run_task(gw, key)
                assert done["status"] == "failed", (path, done)
                assert "larger than the limit of 100000 bytes" in done["error"]["message"], done
                media_dir = tmp_path / "data" / "media" / done["id"]
                on_disk = sum(f.stat().st_size for f in media_dir.iterdir()) if media_dir.exists() else 0
                assert on_disk <= 100_000


async def test_a_gzip_encoded_result_is_decoded_and_length_checked_on_the_wire_bytes(tmp_path):
    plugin = Downloading()
    async with result_hosts() as (public, pub, internal, inner):
        async with run_gateway(result_config(), tmp_path, extra_plugins={"scripted": plugin}) as gw:
            key = await gw.token()
            plugin.urls["main"] = f"{pub.url}/gzip.mp4"
            done = await run_task(gw, key)
            assert done["status"] == "completed", done
            status, body = await gw.get(f"/v1/videos/{done['id']}/content", key, raw=True)
            assert status == 200 and body == VIDEO
            assert public.hits[-1][1].get("accept-encoding") == "identity"


async def test_trickling_results_are_bounded_and_never_block_polling_of_other_tasks(tmp_path):
    """Two results at a byte per 50 ms on one channel, worker concurrency 2: a task on
    another channel still completes, and the trickling ones fail by the rate bound."""
    plugin = Downloading()
    async with result_hosts() as (public, pub, internal, inner):
        cfg = result_config(
            channels=[
                {"name": "slow", "vendor": "scripted", "models": ["scripted-1"]},
                {"name": "fast", "vendor": "scripted", "models": ["scripted-2"]},
            ],
            worker={"concurrency": 2, "max_backoff_seconds": 0.2},
            network={"download_min_bytes_per_second": 1000, "download_rate_window_seconds": 1.0},
        )
        async with run_gateway(cfg, tmp_path, extra_plugins={"scripted": plugin}) as gw:
            key = await gw.token()
            plugin.urls["slow"] = f"{pub.url}/trickle.mp4"
            plugin.urls["fast"] = f"{pub.url}/video.mp4"
            slow = []
            for _ in range(2):
                status, task = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p"})
                assert status == 200, task
                slow.append(task["id"])
            while sum(1 for path, _ in public.hits if path == "/trickle.mp4") < 2:
                await asyncio.sleep(0.02)  # both worker slots' tasks are now downloading
            status, task = await gw.post("/v1/video/generations", key, json={"model": "scripted-2", "prompt": "p"})
            assert status == 200, task
            fast = await gw.wait(task["id"], key, timeout=4)
            assert fast["status"] == "completed", fast
            for task_id in slow:
                done = await gw.wait(task_id, key, timeout=10)
                assert done["status"] == "failed", done
                assert "slower than download_min_bytes_per_second" in done["error"]["message"]


async def test_credential_headers_never_follow_a_redirect_to_another_origin(tmp_path):
    plugin = Downloading()
    plugin.headers = {"Authorization": "Bearer vendor-secret", "x-goog-api-key": "goog-secret", "X-Custom": "c"}
    a, b = ResultHost(), ResultHost()
    async with serve_app(a.app(), host="127.0.0.2") as sa, serve_app(b.app(), host="127.0.0.2") as sb:
        async with run_gateway(result_config(), tmp_path, extra_plugins={"scripted": plugin}) as gw:
            key = await gw.token()
            # Same origin: the headers stay (the vendor needs them on its own redirects).
            plugin.urls["main"] = f"{sa.url}/redirect?to=/video.mp4"
            assert (await run_task(gw, key))["status"] == "completed"
            assert a.hits[-1][0] == "/video.mp4" and a.hits[-1][1]["x-goog-api-key"] == "goog-secret"
            # Another port is another origin: none of the plugin's headers go there.
            plugin.urls["main"] = f"{sa.url}/redirect?to={sb.url}/video.mp4"
            assert (await run_task(gw, key))["status"] == "completed"
            assert a.hits[-1][1]["authorization"] == "Bearer vendor-secret"
            seen = b.hits[-1][1]
            assert b.hits[-1][0] == "/video.mp4"
            assert "authorization" not in seen and "x-goog-api-key" not in seen and "x-custom" not in seen


async def test_a_signed_result_url_reaches_the_host_byte_for_byte(tmp_path):
    """Presigned result URLs (S3, TOS, GCS) sign the query as the vendor encoded it: an
    escaped ``/``, ``+`` or ``=`` the client decodes or re-encodes voids the signature."""
    plugin = Downloading()
    host = ResultHost()
    query = "X-Amz-Credential=AKID%2F20261202%2Fus-east-1%2Fs3&X-Amz-Signature=ab%2Bcd%3D&x=a+b&y=%7E"
    async with serve_app(host.app(), host="127.0.0.2") as served:
        async with run_gateway(result_config(), tmp_path, extra_plugins={"scripted": plugin}) as gw:
            key = await gw.token()
            plugin.urls["main"] = f"{served.url}/video.mp4?{query}"
            assert (await run_task(gw, key))["status"] == "completed"
            # The same through a redirect to another signed URL.
            plugin.urls["main"] = f"{served.url}/redirect?to={urllib.parse.quote('/video.mp4?' + query, safe='')}"
            assert (await run_task(gw, key))["status"] == "completed"
    assert host.queries[0] == query.encode()
    assert host.queries[-1] == query.encode()
