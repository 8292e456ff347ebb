"""The fake satisfies the official google-genai 3.x client's Interactions API.

``genai.Client(api_key=..., http_options=HttpOptions(base_url=fake.url))`` sends
``POST /v1/interactions`` (3.x defaults to ``v1``; the fake serves ``v1`` and ``v1beta``),
with ``input`` wrapped as a ``user_input`` step, then ``GET /v1/interactions/{id}`` and
``POST /v1/interactions/{id}/cancel``; the SDK parses the fake's Interaction (status,
``output_video``, usage by modality).
"""

import asyncio
import base64

import pytest

from vidgate.testing import tiny_png
from vidgate_gemini.fake import FakeGemini

genai = pytest.importorskip("google.genai")
from google.genai import types  # noqa: E402


def _round_trip(fake: FakeGemini, version: str | None):
    client = genai.Client(api_key=fake.api_key, http_options=types.HttpOptions(base_url=fake.url, api_version=version))
    png = base64.b64encode(tiny_png(8, 8)).decode()
    created = client.interactions.create(
        model="gemini-omni-1.1-flash",
        background=True,
        store=True,
        input=[{"type": "text", "text": "a kite"}, {"type": "image", "data": png, "mime_type": "image/png"}],
        response_format={"type": "video", "aspect_ratio": "9:16", "resolution": "720p", "duration": "6s"},
        generation_config={"video_config": {"task": "image_to_video"}},
    )
    got = created
    for _ in range(10):
        got = client.interactions.get(created.id)
        if got.status == "completed":
            break
    held = client.interactions.create(
        model="gemini-omni-1.1-flash",
        background=True,
        input="wait [hold]",
        response_format={"type": "video", "duration": "4s"},
    )
    cancelled = client.interactions.cancel(held.id)
    # The SDK's error schema wants a string error.code (the reference documents Google's
    # numeric envelope, which the fake keeps); it then raises its NotFoundError all the same.
    with pytest.raises(Exception) as missing:  # noqa: B017 - the SDK's class moved between releases
        client.interactions.get("v1_doesnotexist")
    return created, got, cancelled, missing.value


@pytest.mark.parametrize("version", [None, "v1beta"])
async def test_google_genai_interactions_round_trip(version):
    fake = FakeGemini()
    async with fake.serve():
        created, got, cancelled, missing = await asyncio.to_thread(_round_trip, fake, version)
    assert created.id.startswith("v1_") and created.status == "queued"
    assert got.status == "completed"
    data = got.output_video.data
    assert (base64.b64decode(data) if isinstance(data, str) else data) == fake.video
    assert got.output_video.mime_type == "video/mp4"
    assert got.usage.output_tokens_by_modality[0].modality == "video"
    assert got.usage.output_tokens_by_modality[0].tokens == 6 * 5792
    assert cancelled.status == "cancelled"
    assert type(missing).__name__ == "NotFoundError" and "404" in str(missing)
    prefix = f"/{version or 'v1'}/interactions"
    create = fake.recorded("POST", prefix)[0]
    assert create.status == 200 and create.headers["x-goog-api-key"] == fake.api_key
    assert create.json["input"][0]["type"] == "user_input"
    assert fake.recorded("POST", f"{prefix}/{cancelled.id}/cancel")
