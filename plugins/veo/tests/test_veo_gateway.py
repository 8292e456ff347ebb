"""The whole gateway, over HTTP, against the Veo fake on both surfaces."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from vidgate.testing import run_gateway, serve_app
from vidgate_veo.fake import FILTER_REASON, FakeVeo

# A 1x1 PNG and a 2x1 PNG (different bytes so first and last frame can be told apart).
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PNG2 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAABCAYAAAD0In+KAAAAEUlEQVR42mP8z8DwnwEJMAEAJfQC/5hKQ0QAAAAASUVORK5CYII="
)
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
SURFACES = ["gemini", "vertex"]


def channel(fake: FakeVeo, surface: str, name: str = "veo", **extra: Any) -> dict[str, Any]:
    """A channel on ``fake`` for ``surface`` (Vertex with a fresh test service account)."""
    ch: dict[str, Any] = {
        "name": name,
        "vendor": "veo",
        "base_url": fake.url,
        "options": {"poll_interval": 0.05, "surface": surface},
    }
    if surface == "gemini":
        ch["credentials"] = {"api_key": fake.api_key}
    else:
        ch["credentials"] = {
            "service_account": fake.service_account(),
            "project": "fake-project",
            "location": "us-central1",
        }
    ch.update(extra)
    return ch


def config(*channels: dict[str, Any], **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "plugins": {"enabled": ["veo"]},
        "channels": list(channels),
        "network": {"max_retry_after_seconds": 1},
    }
    cfg.update(extra)
    return cfg


@contextlib.asynccontextmanager
async def image_server() -> AsyncIterator[str]:
    """A small app on 127.0.0.1 serving the PNG at /cat.png; yields its base URL."""

    async def cat(request):
        return Response(PNG, media_type="image/png")

    async with serve_app(Starlette(routes=[Route("/cat.png", cat)])) as served:
        yield served.url


async def _content(gw, task_id: str, key: str) -> bytes:
    status, body = await gw.get(f"/v1/videos/{task_id}/content", key, raw=True)
    assert status == 200, body
    return body


def creates(fake: FakeVeo) -> list[dict[str, Any]]:
    return [r.body for r in fake.calls(":predictLongRunning", "POST")]


@pytest.mark.parametrize("surface", SURFACES)
async def test_text_to_video_completes_and_bytes_match(tmp_path, surface):
    fake = FakeVeo(api_key="gk")
    fake.redirect_downloads = True  # production answers the file URI with a redirect
    async with fake.serve():
        async with run_gateway(config(channel(fake, surface)), tmp_path) as gw:
            key = await gw.token()
            status, task = await gw.post("/v1/video/generations", key, json={"model": "veo-3.1", "prompt": "a fox"})
            assert status == 200, task
            done = await gw.wait(task["id"], key)
            assert done["status"] == "completed", done
            assert done["seconds"] == "8" and done["size"] == "1280x720" and done["model"] == "veo-3.1"
            assert await _content(gw, task["id"], key) == fake.video
            # A second task on Vertex reuses the cached access token.
            status, task2 = await gw.post("/v1/video/generations", key, json={"model": "veo-3", "prompt": "b"})
            assert (await gw.wait(task2["id"], key))["status"] == "completed"
    body = creates(fake)[0]
    assert body["instances"] == [{"prompt": "a fox"}]
    assert body["parameters"] == {"sampleCount": 1, "durationSeconds": 8, "aspectRatio": "16:9", "resolution": "720p"}
    if surface == "gemini":
        create = fake.calls(":predictLongRunning")[0]
        assert create.path == "/v1beta/models/veo-3.1-generate-001:predictLongRunning"
        assert create.headers["x-goog-api-key"] == "gk"
        assert fake.calls("/operations/", "GET") and fake.calls(":download", "GET")
        assert [r for r in fake.requests if r.path.startswith("/_storage/")]
    else:
        create = fake.calls(":predictLongRunning")[0]
        assert create.path == (
            "/v1/projects/fake-project/locations/us-central1/publishers/google/models/veo-3.1-generate-001:predictLongRunning"
        )
        assert create.headers["authorization"].startswith("Bearer ya29.fake-")
        polls = fake.calls(":fetchPredictOperation", "POST")
        assert polls and polls[0].body["operationName"].startswith("projects/fake-project/")
        assert len(fake.calls("/token", "POST")) == 1  # minted once, cached for every call


@pytest.mark.parametrize("surface", SURFACES)
async def test_image_to_video_base64_first_and_last_frame(tmp_path, surface):
    fake = FakeVeo()
    async with fake.serve():
        async with run_gateway(config(channel(fake, surface)), tmp_path) as gw:
            key = await gw.token()
            status, task = await gw.post(
                "/v1/video/generations",
                key,
                json={
                    "model": "veo-3.1",
                    "prompt": "wake up",
                    "images": [
                        "data:image/png;base64," + base64.b64encode(PNG).decode(),
                        base64.b64encode(PNG2).decode(),
                    ],
                    "seconds": "6",
                    "size": "720x1280",
                    "metadata": {"negativePrompt": "blurry", "personGeneration": "allow_adult", "seed": 7},
                },
            )
            assert status == 200, task
            done = await gw.wait(task["id"], key)
            assert done["status"] == "completed", done
            assert done["seconds"] == "6" and done["size"] == "720x1280"
            assert await _content(gw, task["id"], key) == fake.video
    body = creates(fake)[0]
    inst = body["instances"][0]
    assert inst["image"] == {"bytesBase64Encoded": base64.b64encode(PNG).decode(), "mimeType": "image/png"}
    assert inst["lastFrame"] == {"bytesBase64Encoded": base64.b64encode(PNG2).decode(), "mimeType": "image/png"}
    params = body["parameters"]
    assert params["durationSeconds"] == 6 and type(params["durationSeconds"]) is int
    assert params["aspectRatio"] == "9:16" and params["sampleCount"] == 1
    assert params["negativePrompt"] == "blurry" and params["seed"] == 7 and params["personGeneration"] == "allow_adult"


@pytest.mark.parametrize("surface", SURFACES)
async def test_image_url_is_fetched_by_the_gateway_and_inlined(tmp_path, surface):
    fake = FakeVeo()
    async with fake.serve(), image_server() as images:
        cfg = config(
            channel(fake, surface), network={"max_retry_after_seconds": 1, "allow_image_networks": ["127.0.0.0/8"]}
        )
        async with run_gateway(cfg, tmp_path) as gw:
            key = await gw.token()
            status, task = await gw.post(
                "/v1/video/generations", key, json={"model": "veo-3", "prompt": "p", "image": f"{images}/cat.png"}
            )
            assert status == 200, task
            done = await gw.wait(task["id"], key)
            assert done["status"] == "completed", done
            assert await _content(gw, task["id"], key) == fake.video
    inst = creates(fake)[0]["instances"][0]
    assert inst["image"] == {"bytesBase64Encoded": base64.b64encode(PNG).decode(), "mimeType": "image/png"}


@pytest.mark.parametrize("where", ["loopback", "metadata-service"])
async def test_private_image_url_is_refused_without_allowlist(tmp_path, where):
    fake = FakeVeo()
    async with fake.serve(), image_server() as images:
        url = f"{images}/cat.png" if where == "loopback" else "http://169.254.169.254/latest/meta-data/"
        cfg = config(channel(fake, "gemini"), models={"veo-3": {"price_per_second": 0.1}})
        async with run_gateway(cfg, tmp_path) as gw:
            key = await gw.token(quota=100)
            status, body = await gw.post(
                "/v1/video/generations", key, json={"model": "veo-3", "prompt": "p", "image": url}
            )
            assert status == 400, body
            assert body["error"]["param"] == "image"
            assert "not allowed" in body["error"]["message"]
            assert (await gw.gateway.store.token("test")).used == 0
    assert creates(fake) == []


@pytest.mark.parametrize("surface", SURFACES)
async def test_filtered_result_fails_with_reason_and_refund(tmp_path, surface):
    fake = FakeVeo()
    fake.outcome = "filtered"
    async with fake.serve():
        cfg = config(channel(fake, surface), models={"veo-3": {"price_per_second": 0.1}})
        async with run_gateway(cfg, tmp_path) as gw:
            key = await gw.token(quota=100)
            status, task = await gw.post("/v1/video/generations", key, json={"model": "veo-3", "prompt": "p"})
            assert status == 200, task
            done = await gw.wait(task["id"], key)
            assert done["status"] == "failed"
            assert done["error"]["code"] == "content_filtered"
            assert "You have not been charged" in done["error"]["message"] and FILTER_REASON in done["error"]["message"]
            ledger = await gw.gateway.store.ledger()
            kinds = [(e.kind, e.amount) for e in ledger if e.task_id == task["id"]]
            assert kinds == [("charge", 800_000), ("refund", -800_000)]  # 8 s x 0.1, in micro-units
            assert (await gw.gateway.store.token("test")).used == 0


async def test_operation_error_fails_with_google_message(tmp_path):
    fake = FakeVeo()
    fake.outcome = "error"
    async with fake.serve():
        async with run_gateway(config(channel(fake, "gemini")), tmp_path) as gw:
            key = await gw.token()
            _, task = await gw.post("/v1/video/generations", key, json={"model": "veo-3", "prompt": "p"})
            done = await gw.wait(task["id"], key)
    assert done["status"] == "failed" and done["error"]["code"] == "vendor_failed"
    assert "Internal error encountered" in done["error"]["message"]


async def test_vertex_gcs_result_fails_clearly(tmp_path):
    fake = FakeVeo()
    fake.vertex_result = "gcs"
    async with fake.serve():
        async with run_gateway(config(channel(fake, "vertex")), tmp_path) as gw:
            key = await gw.token()
            _, task = await gw.post("/v1/video/generations", key, json={"model": "veo-3", "prompt": "p"})
            done = await gw.wait(task["id"], key, timeout=10)
    assert done["status"] == "failed" and done["error"]["code"] == "gcs_result_unsupported"
    assert "gs://fake-veo-bucket/" in done["error"]["message"]


async def test_gemini_inline_result_is_decoded(tmp_path):
    fake = FakeVeo()
    fake.gemini_inline = True
    async with fake.serve():
        async with run_gateway(config(channel(fake, "gemini")), tmp_path) as gw:
            key = await gw.token()
            _, task = await gw.post("/v1/video/generations", key, json={"model": "veo-3.1-fast", "prompt": "p"})
            assert (await gw.wait(task["id"], key))["status"] == "completed"
            assert await _content(gw, task["id"], key) == fake.video


async def test_429_on_submit_is_retried_and_completes(tmp_path):
    fake = FakeVeo()
    fake.rate_limit_times = 1
    async with fake.serve():
        async with run_gateway(config(channel(fake, "gemini")), tmp_path) as gw:
            key = await gw.token()
            status, task = await gw.post("/v1/video/generations", key, json={"model": "veo-3", "prompt": "p"})
            assert status == 200, task
            assert (await gw.wait(task["id"], key))["status"] == "completed"
            outcomes = [a.outcome for a in await gw.gateway.store.attempts(task["id"])]
    assert outcomes == ["rate_limited", "submitted"]
    assert len(fake.calls(":predictLongRunning")) == 2


async def test_poll_5xx_is_transient(tmp_path):
    fake = FakeVeo(polls_to_finish=2)
    async with fake.serve():
        cfg = config(channel(fake, "gemini"), worker={"max_backoff_seconds": 0.1})
        async with run_gateway(cfg, tmp_path) as gw:
            key = await gw.token()
            _, task = await gw.post("/v1/video/generations", key, json={"model": "veo-3", "prompt": "p"})
            fake.server_error_times = 2  # the next two polls
            assert (await gw.wait(task["id"], key))["status"] == "completed"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "veo-3", "prompt": "p", "seconds": 5}, "seconds"),
        ({"model": "veo-3.1", "prompt": "p", "metadata": {"resolution": "4k"}}, "metadata.resolution"),
        ({"model": "veo-3", "prompt": "p", "seconds": 6, "size": "1920x1080"}, "size"),
        ({"model": "veo-3.1", "prompt": "p", "seconds": 6, "input_reference": PNG_URL}, "seconds"),
        ({"model": "veo-3.1", "prompt": "p", "metadata": {"image_role": "both"}}, "metadata.image_role"),
        ({"model": "veo-3", "prompt": "p", "metadata": {"sampleCount": 2}}, "metadata.sampleCount"),
        ({"model": "veo-3", "prompt": "p", "metadata": {"durationSeconds": 8}}, "metadata.durationSeconds"),
        ({"model": "veo-3", "prompt": "p", "metadata": {"model": "veo-3.1-generate-preview"}}, "metadata.model"),
        ({"model": "veo-3", "prompt": "p", "metadata": {"personGeneration": "everyone"}}, "metadata.personGeneration"),
        ({"model": "veo-3", "prompt": "p", "metadata": {"seed": "7"}}, "metadata.seed"),
        ({"model": "veo-3", "prompt": "p", "metadata": {"generateAudio": "yes"}}, "metadata.generateAudio"),
        (
            {"model": "veo-3", "prompt": "p", "metadata": {"lastFrame": base64.b64encode(PNG).decode()}},
            "metadata.lastFrame",
        ),
    ],
)
async def test_requests_veo_cannot_make_are_refused(tmp_path, body, param):
    fake = FakeVeo()
    async with fake.serve():
        async with run_gateway(config(channel(fake, "gemini")), tmp_path) as gw:
            key = await gw.token()
            status, answer = await gw.post("/v1/video/generations", key, json=body)
    assert status == 400, answer
    assert answer["error"]["param"] == param
    assert creates(fake) == []


async def test_1080p_from_size_and_unknown_metadata_passthrough(tmp_path):
    fake = FakeVeo()
    async with fake.serve():
        cfg = config(channel(fake, "gemini"), models={"veo-3": {"price_per_second": 0.1}})
        async with run_gateway(cfg, tmp_path) as gw:
            key = await gw.token()
            _, task = await gw.post(
                "/v1/video/generations",
                key,
                json={
                    "model": "veo-3",
                    "prompt": "p",
                    "size": "1920x1080",
                    "metadata": {"fps": 24, "generateAudio": False},
                },
            )
            assert (await gw.wait(task["id"], key))["size"] == "1920x1080"
            # An unknown key goes to Google, whose 400 comes back naming the key.
            status, answer = await gw.post(
                "/v1/video/generations", key, json={"model": "veo-3", "prompt": "p", "metadata": {"bogusKnob": 1}}
            )
            assert status == 400 and "bogusKnob" in answer["error"]["message"]
            assert answer["error"]["code"] == "vendor_rejected"
    params = creates(fake)[0]["parameters"]
    assert params["resolution"] == "1080p" and params["fps"] == 24 and params["generateAudio"] is False
    assert creates(fake)[1]["parameters"]["bogusKnob"] == 1


async def test_permission_denied_moves_task_to_next_channel(tmp_path):
    denied, good = FakeVeo(), FakeVeo()
    denied.permission_denied = True
    async with denied.serve(), good.serve():
        cfg = config(channel(denied, "gemini", name="a", priority=10), channel(good, "vertex", name="b"))
        async with run_gateway(cfg, tmp_path) as gw:
            key = await gw.token()
            status, task = await gw.post("/v1/video/generations", key, json={"model": "veo-3", "prompt": "p"})
            assert status == 200, task
            assert (await gw.wait(task["id"], key))["status"] == "completed"
            attempts = [(a.channel, a.outcome) for a in await gw.gateway.store.attempts(task["id"])]
    assert attempts == [("a", "channel_error"), ("b", "submitted")]
    assert len(creates(denied)) == 1 and len(creates(good)) == 1


async def test_bad_api_key_takes_channel_out(tmp_path):
    fake = FakeVeo(api_key="right")
    async with fake.serve():
        ch = channel(fake, "gemini")
        ch["credentials"] = {"api_key": "wrong"}
        async with run_gateway(config(ch), tmp_path) as gw:
            key = await gw.token()
            status, answer = await gw.post("/v1/video/generations", key, json={"model": "veo-3", "prompt": "p"})
    assert status == 503, answer
    assert answer["error"]["code"] == "no_channel_available"


async def test_vertex_bad_signature_is_channel_unusable(tmp_path):
    fake = FakeVeo()
    async with fake.serve():
        ch = channel(fake, "vertex")
        other = FakeVeo()
        other.url = fake.url
        # A key the fake does not trust (same e-mail, different key pair).
        stranger = other.service_account()
        stranger["client_email"] = ch["credentials"]["service_account"]["client_email"]
        ch["credentials"]["service_account"] = stranger
        async with run_gateway(config(ch), tmp_path) as gw:
            key = await gw.token()
            status, answer = await gw.post("/v1/video/generations", key, json={"model": "veo-3", "prompt": "p"})
    assert status == 503, answer
    assert len(fake.calls("/token")) == 1 and creates(fake) == []


async def test_big_vertex_inline_result_decodes_in_chunks(tmp_path):
    import os

    video = b"\x00\x00\x00\x18ftypisom" + os.urandom(2_500_000)  # > 3 base64 slices
    fake = FakeVeo(video=video)
    async with fake.serve():
        async with run_gateway(config(channel(fake, "vertex")), tmp_path) as gw:
            key = await gw.token()
            _, task = await gw.post("/v1/video/generations", key, json={"model": "veo-3", "prompt": "p"})
            assert (await gw.wait(task["id"], key))["status"] == "completed"
            assert await _content(gw, task["id"], key) == video
            stored = await gw.gateway.store.get_task(task["id"])
    assert "bytesBase64Encoded" not in str(stored.result) and stored.result["inline"] is True


async def test_image_urls_that_break_the_resolver_are_400s_naming_the_field(tmp_path):
    """A 64-character label made ``getaddrinfo`` raise ``UnicodeError`` (counted against
    the channel); a Unicode-digit loopback address was fetched. Both are 400s naming the
    field, for the first image and the last frame, and the channel keeps working."""
    fake = FakeVeo()
    bad = ["http://" + "a" * 64 + ".example/x.png", "http://\u2460\u2461\u2466.0.0.1:1/x.png"]
    async with fake.serve():
        async with run_gateway(config(channel(fake, "gemini")), tmp_path) as gw:
            key = await gw.token()
            for url in bad * 2:
                for body, param in (
                    ({"image": url}, "image"),
                    ({"images": ["data:image/png;base64," + base64.b64encode(PNG).decode(), url]}, "images[1]"),
                ):
                    status, answer = await gw.post(
                        "/v1/video/generations", key, json={"model": "veo-3", "prompt": "p", **body}
                    )
                    assert status == 400, (url, answer)
                    assert answer["error"]["param"] == param, answer
            status, task = await gw.post("/v1/video/generations", key, json={"model": "veo-3", "prompt": "p"})
            assert status == 200, task
            assert (await gw.wait(task["id"], key))["status"] == "completed"
    assert len(creates(fake)) == 1


async def test_vertex_last_frame_references_and_audio(tmp_path):
    """veo-3.1 on Vertex: a first frame with ``metadata.lastFrame``, then a text task with
    three ``input_reference`` images as asset references, with Veo 3.1's parameters."""
    fake = FakeVeo()
    async with fake.serve():
        async with run_gateway(config(channel(fake, "vertex")), tmp_path) as gw:
            key = await gw.token()
            status, frames = await gw.post(
                "/v1/video/generations",
                key,
                json={
                    "model": "veo-3.1",
                    "prompt": "the door opens",
                    "image": PNG_URL,
                    "seconds": 4,
                    "metadata": {"lastFrame": base64.b64encode(PNG2).decode(), "generateAudio": True},
                },
            )
            assert status == 200, frames
            status, refs = await gw.post(
                "/v1/video/generations",
                key,
                json={
                    "model": "veo-3.1-fast",
                    "prompt": "these three friends at the beach",
                    "input_reference": [PNG_URL, base64.b64encode(PNG2).decode(), PNG_URL],
                    "size": "1920x1080",
                    "metadata": {"negativePrompt": "rain", "seed": 42},
                },
            )
            assert status == 200, refs
            for task in (frames, refs):
                done = await gw.wait(task["id"], key)
                assert done["status"] == "completed", done
                assert await _content(gw, task["id"], key) == fake.video
    first, second = creates(fake)
    assert first["instances"][0]["image"]["bytesBase64Encoded"] == base64.b64encode(PNG).decode()
    assert first["instances"][0]["lastFrame"]["bytesBase64Encoded"] == base64.b64encode(PNG2).decode()
    assert first["parameters"]["generateAudio"] is True and first["parameters"]["durationSeconds"] == 4
    refs_sent = second["instances"][0]["referenceImages"]
    assert [r["referenceType"] for r in refs_sent] == ["asset"] * 3
    assert refs_sent[1]["image"] == {"bytesBase64Encoded": base64.b64encode(PNG2).decode(), "mimeType": "image/png"}
    assert "image" not in second["instances"][0]
    assert second["parameters"]["resolution"] == "1080p" and second["parameters"]["seed"] == 42
    assert fake.calls("/veo-3.1-fast-generate-001:predictLongRunning")


async def test_extend_completes_with_the_source_video(tmp_path):
    video = b"\x00\x00\x00\x18ftypisom" + b"source-bytes" * 100
    fake = FakeVeo(video=video)
    async with fake.serve():
        cfg = config(channel(fake, "vertex"), models={"veo-3.1": {"price_per_second": 0.1}})
        async with run_gateway(cfg, tmp_path) as gw:
            key = await gw.token()
            _, source = await gw.post("/v1/video/generations", key, json={"model": "veo-3.1", "prompt": "a fox runs"})
            assert (await gw.wait(source["id"], key))["status"] == "completed"
            status, ext = await gw.post(
                "/v1/videos/extensions", key, json={"prompt": "it jumps", "seconds": "8", "video": {"id": source["id"]}}
            )
            assert status == 200, ext
            done = await gw.wait(ext["id"], key)
            assert done["status"] == "completed", done
            assert done["derived_from"] == {"video_id": source["id"], "operation": "extend"}
            assert await _content(gw, ext["id"], key) == video
            # Veo extends by 8 s: another length is a 400 naming seconds, before any call.
            status, bad = await gw.post(
                "/v1/videos/extensions", key, json={"prompt": "x", "seconds": "4", "video": {"id": source["id"]}}
            )
            assert status == 400 and bad["error"]["param"] == "seconds", bad
    body = creates(fake)[1]
    assert body["instances"][0]["prompt"] == "it jumps"
    assert base64.b64decode(body["instances"][0]["video"]["bytesBase64Encoded"]) == video
    assert body["instances"][0]["video"]["mimeType"] == "video/mp4"
    assert body["parameters"]["durationSeconds"] == 8 and len(creates(fake)) == 2


async def test_retired_model_on_a_gemini_relay_moves_to_vertex(tmp_path):
    """An old relay channel still mapped to a retired preview id answers 404; the task
    goes to the Vertex channel serving the model, which completes it."""
    relay, vertex = FakeVeo(), FakeVeo()
    async with relay.serve(), vertex.serve():
        old = channel(relay, "gemini", name="relay", priority=10, model_map={"veo-3.1": "veo-3.1-generate-preview"})
        cfg = config(old, channel(vertex, "vertex", name="vertex"))
        async with run_gateway(cfg, tmp_path) as gw:
            key = await gw.token()
            status, task = await gw.post("/v1/video/generations", key, json={"model": "veo-3.1", "prompt": "p"})
            assert status == 200, task
            assert (await gw.wait(task["id"], key))["status"] == "completed"
            attempts = [(a.channel, a.outcome) for a in await gw.gateway.store.attempts(task["id"])]
    assert attempts == [("relay", "model_retired"), ("vertex", "submitted")]
    refused = relay.calls(":predictLongRunning")
    assert refused[0].path == "/v1beta/models/veo-3.1-generate-preview:predictLongRunning" and refused[0].status == 404
    assert len(creates(vertex)) == 1


async def test_access_token_channel_and_missing_credentials(tmp_path):
    fake = FakeVeo()
    async with fake.serve():
        token = fake.issue_token()
        ch = channel(fake, "vertex")
        ch["credentials"] = {"access_token": token, "project": "fake-project"}
        async with run_gateway(config(ch), tmp_path) as gw:
            key = await gw.token()
            _, task = await gw.post("/v1/video/generations", key, json={"model": "veo-3", "prompt": "p"})
            assert (await gw.wait(task["id"], key))["status"] == "completed"
    assert fake.calls(":predictLongRunning")[0].headers["authorization"] == f"Bearer {token}"
    assert fake.calls("/token") == []
    from vidgate import Channel
    from vidgate_veo import plugin

    problems = plugin.validate_channel(Channel(name="x", vendor="veo", credentials={"project": "p"}))
    assert problems and "service_account" in problems[0] and "access_token" in problems[0]
