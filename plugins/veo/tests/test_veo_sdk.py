"""The fake satisfies the official google-genai 3.x SDK, on both surfaces.

Vertex AI (the default surface) is driven end to end by the SDK in Vertex mode with
``http_options.base_url`` pointing at the fake: ``generate_videos`` (text, first + last
frame with reference images and audio, and a scene extension from video bytes) and
``operations.get``, with real google-auth service-account credentials.

google-genai 3.x refuses ``generate_videos`` in Gemini Developer API mode before sending
anything (``ValueError: ... only supported in Gemini Enterprise Agent Platform mode``,
vendor-protocols-2026 §2.3), so the legacy Gemini test creates the operation with the
exact body 2.x put on the wire (probed with 2.25.0) and drives the rest
(``operations.get``, ``files.download``) through the 3.x SDK.
"""

import asyncio
import base64
import json
import urllib.request

import pytest

from vidgate_veo.fake import FakeVeo

genai = pytest.importorskip("google.genai")
from google.genai import errors as genai_errors  # noqa: E402
from google.genai import types  # noqa: E402

MODEL = "veo-3.1-generate-001"


def _client(fake: FakeVeo, key: str):
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=fake.url))


def _create_gemini(client, fake: FakeVeo, prompt: str):
    with pytest.raises(ValueError, match="only supported in"):
        client.models.generate_videos(model=MODEL, source=types.GenerateVideosSource(prompt=prompt))
    # The 2.x SDK's own wire shape (PROBE, 2.25.0): POST .../models/{m}:predictLongRunning.
    body = json.dumps({"instances": [{"prompt": prompt}], "parameters": {"sampleCount": 1}}).encode()
    req = urllib.request.Request(
        f"{fake.url}/v1beta/models/{MODEL}:predictLongRunning",
        data=body,
        headers={"Content-Type": "application/json", "x-goog-api-key": fake.api_key},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
        name = json.loads(resp.read())["name"]
    return types.GenerateVideosOperation(name=name)


def _generate_gemini(fake: FakeVeo):
    client = _client(fake, fake.api_key)
    op = _create_gemini(client, fake, "a cat surfing")
    polls = 0
    while not op.done:
        op = client.operations.get(op)
        polls += 1
        assert polls < 20
    video = op.response.generated_videos[0].video
    assert video.uri.startswith(f"{fake.url}/v1beta/files/")
    # The SDK extracts the file id only from https:// URIs (production's form) and then
    # requests {base_url}/{version}/files/{id}:download?alt=media; give it that form.
    video.uri = video.uri.replace(fake.url, "https://generativelanguage.googleapis.com")
    return client.files.download(file=video), op


@pytest.mark.parametrize("redirect", [False, True])
async def test_google_genai_sdk_gemini_round_trip(redirect):
    fake = FakeVeo(api_key="sdk-key")
    fake.redirect_downloads = redirect
    async with fake.serve():
        data, op = await asyncio.to_thread(_generate_gemini, fake)
    assert data == fake.video
    assert op.name.startswith(f"models/{MODEL}/operations/")
    assert fake.calls(f"/{op.name}", "GET")[0].headers["x-goog-api-key"] == "sdk-key"
    download = fake.calls(":download")
    assert download and download[0].query == {"alt": "media"}
    assert bool(fake.calls("", "GET") and [r for r in fake.requests if r.path.startswith("/_storage/")]) is redirect


PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def _vertex_client(fake: FakeVeo, account: dict):
    from google.oauth2 import service_account

    creds = service_account.Credentials.from_service_account_info(
        account, scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    return genai.Client(
        vertexai=True,
        project="fake-project",
        location="us-central1",
        credentials=creds,
        http_options=types.HttpOptions(base_url=fake.url),
    )


def _wait(client, op):
    polls = 0
    while not op.done:
        op = client.operations.get(op)
        polls += 1
        assert polls < 20
    return op


def _generate_vertex(fake: FakeVeo, account: dict):
    client = _vertex_client(fake, account)
    text = _wait(
        client,
        client.models.generate_videos(
            model=MODEL,
            source=types.GenerateVideosSource(prompt="a dog"),
            config=types.GenerateVideosConfig(duration_seconds=6, aspect_ratio="9:16", generate_audio=True),
        ),
    )
    image = types.Image(image_bytes=PNG, mime_type="image/png")
    frames = _wait(
        client,
        client.models.generate_videos(
            model=MODEL,
            source=types.GenerateVideosSource(prompt="the dog wakes up", image=image),
            config=types.GenerateVideosConfig(duration_seconds=8, last_frame=image, negative_prompt="blur", seed=7),
        ),
    )
    refs = _wait(
        client,
        client.models.generate_videos(
            model=MODEL,
            source=types.GenerateVideosSource(prompt="the dog and the cat"),
            config=types.GenerateVideosConfig(
                duration_seconds=8,
                reference_images=[types.VideoGenerationReferenceImage(image=image, reference_type="asset")] * 2,
            ),
        ),
    )
    video = text.response.generated_videos[0].video
    extended = _wait(
        client,
        client.models.generate_videos(
            model=MODEL,
            source=types.GenerateVideosSource(
                prompt="it runs on", video=types.Video(video_bytes=video.video_bytes, mime_type="video/mp4")
            ),
            config=types.GenerateVideosConfig(duration_seconds=8),
        ),
    )
    return [text, frames, refs, extended]


async def test_google_genai_sdk_vertex_round_trip():
    """The 3.x SDK in Vertex mode with real google-auth service-account credentials: our
    token endpoint verifies google-auth's JWT, the fake's strict create checks accept
    every body the SDK builds, and each inline result decodes to the fake's bytes."""
    fake = FakeVeo()
    async with fake.serve():
        account = fake.service_account()
        ops = await asyncio.to_thread(_generate_vertex, fake, account)
    for op in ops:
        assert op.response.generated_videos[0].video.video_bytes == fake.video
    assert len(fake.calls("/token", "POST")) == 1
    creates = fake.calls(":predictLongRunning")
    assert [r.status for r in creates] == [200] * 4
    assert creates[0].path.startswith("/v1beta1/projects/fake-project/locations/us-central1/publishers/google/models/")
    assert creates[0].headers["authorization"].startswith("Bearer ya29.fake-")
    text, frames, refs, extended = (r.body for r in creates)
    assert text["parameters"]["durationSeconds"] == 6 and text["parameters"]["generateAudio"] is True
    assert frames["instances"][0]["lastFrame"]["bytesBase64Encoded"] == base64.b64encode(PNG).decode()
    assert [r["referenceType"] for r in refs["instances"][0]["referenceImages"]] == ["ASSET", "ASSET"]
    assert base64.b64decode(extended["instances"][0]["video"]["bytesBase64Encoded"]) == fake.video
    assert fake.calls(":fetchPredictOperation")


def _errors(fake: FakeVeo):
    out = []
    missing = types.GenerateVideosOperation(name=f"models/{MODEL}/operations/abc")
    bad, good = _client(fake, "wrong"), _client(fake, fake.api_key)  # keep them alive
    for client in (bad, good):
        with pytest.raises(genai_errors.ClientError) as info:
            client.operations.get(missing)
        out.append(info.value)
    fake.rate_limit_times = 1
    with pytest.raises(genai_errors.ClientError) as info:
        good.operations.get(missing)
    out.append(info.value)
    return out


async def test_sdk_sees_google_errors():
    fake = FakeVeo(api_key="sdk-key")
    async with fake.serve():
        bad_key, missing, limited = await asyncio.to_thread(_errors, fake)
    assert (bad_key.code, bad_key.status) == (400, "INVALID_ARGUMENT")
    assert "API_KEY_INVALID" in json.dumps(bad_key.details)
    assert (missing.code, missing.status) == (404, "NOT_FOUND")
    assert (limited.code, limited.status) == (429, "RESOURCE_EXHAUSTED")
