"""Plugin contract v2, inputs: image facts, reference materials, capabilities the core
enforces, images stored once (issue 12 item 7)."""

from __future__ import annotations

import base64
import fractions

import av
import numpy as np
import pytest
from scripted_vendor import Scripted, scripted_config

from vidgate import CallContext, Channel, Model, Problem, Submission, VendorJob, VideoRequest, image_dimensions
from vidgate.errors import RequestInvalid
from vidgate.request import parse_request
from vidgate.testing import run_gateway, tiny_png


def _encoded(codec_name: str, pix_fmt: str, width: int, height: int, noise: bool = False) -> bytes:
    codec = av.CodecContext.create(codec_name, "w")
    codec.width, codec.height, codec.pix_fmt = width, height, pix_fmt
    codec.time_base = fractions.Fraction(1, 25)
    pixels = (
        np.random.default_rng(7).integers(0, 256, (height, width, 3), dtype=np.uint8)
        if noise
        else np.zeros((height, width, 3), dtype=np.uint8)
    )
    frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format=pix_fmt)
    return b"".join(bytes(p) for p in codec.encode(frame) + codec.encode(None))


def test_image_dimensions_of_png_jpeg_gif_webp():
    assert image_dimensions(tiny_png(500, 300)) == (500, 300)
    jpeg = _encoded("mjpeg", "yuvj420p", 640, 360)
    assert jpeg.startswith(b"\xff\xd8") and image_dimensions(jpeg) == (640, 360)
    gif = _encoded("gif", "rgb8", 120, 80)
    assert gif.startswith(b"GIF8") and image_dimensions(gif) == (120, 80)
    # WebP: a lossless (VP8L) header for 1000x700 and an extended (VP8X) one for 4000x3000.
    bits = (1000 - 1) | ((700 - 1) << 14)
    vp8l = b"RIFF" + b"\x00" * 4 + b"WEBPVP8L" + b"\x00" * 4 + b"\x2f" + bits.to_bytes(4, "little") + b"\x00" * 8
    assert image_dimensions(vp8l) == (1000, 700)
    vp8x = (
        b"RIFF"
        + b"\x00" * 4
        + b"WEBPVP8X"
        + b"\x0a\x00\x00\x00"
        + b"\x00" * 4
        + (3999).to_bytes(3, "little")
        + (2999).to_bytes(3, "little")
    )
    assert image_dimensions(vp8x) == (4000, 3000)
    # Truncated or unknown headers say nothing rather than raise.
    assert image_dimensions(b"GIF89a") is None
    assert image_dimensions(jpeg[:20]) is None
    assert image_dimensions(b"\x89PNG\r\n\x1a\n") is None


def test_images_carry_size_mime_and_their_field():
    png = base64.b64encode(tiny_png(320, 480)).decode()
    req = parse_request(
        {
            "model": "m",
            "prompt": "p",
            "image": png,
            "images": ["https://example.com/a.png", "data:image/png;base64," + png],
            "input_reference": png,
        }
    )
    assert [i.param for i in req.images] == ["image", "images[0]", "images[1]", "input_reference"]
    first = req.images[0]
    assert (first.width, first.height, first.mime, first.mime_type) == (320, 480, "image/png", "image/png")
    url = req.images[1]
    assert url.url == "https://example.com/a.png" and url.width is None and url.height is None


def test_input_reference_video_and_audio_become_references():
    audio = "data:audio/mpeg;base64," + base64.b64encode(b"ID3\x03" + b"\x00" * 64).decode()
    req = parse_request(
        {
            "model": "m",
            "prompt": "p",
            "input_reference": [
                "https://cdn.example.com/clip.MP4?sig=abc",
                base64.b64encode(tiny_png()).decode(),
                audio,
                "https://cdn.example.com/song.wav#t=3",
            ],
        }
    )
    assert [(r.kind, r.param) for r in req.references] == [
        ("video", "input_reference[0]"),
        ("audio", "input_reference[2]"),
        ("audio", "input_reference[3]"),
    ]
    assert req.references[0].url == "https://cdn.example.com/clip.MP4?sig=abc"
    assert req.references[1].data.startswith(b"ID3") and req.references[1].mime_type == "audio/mpeg"
    assert [i.param for i in req.images] == ["input_reference[1]"]
    # One reference and no prompt is a complete request; a broken data URL names its entry.
    assert parse_request({"model": "m", "input_reference": "https://x.example/a.webm"}).references[0].kind == "video"
    with pytest.raises(RequestInvalid) as err:
        parse_request({"model": "m", "prompt": "p", "input_reference": ["data:video/mp4;base64,@@@"]})
    assert [p.param for p in err.value.problems] == ["input_reference[0]"]


class Capable(Scripted):
    """Records what reached ``validate`` and ``submit`` (the request the core passes)."""

    name = "capable"
    models = (
        Model("cap-seconds", seconds=(4, 8), default_seconds=4),
        Model("cap-i2v-only", text_to_video=False),
        Model("cap-t2v-only", image_to_video=False),
        Model("cap-sizes", sizes=("1280x720", "720x1280")),
        Model("cap-refs", reference_videos=True, reference_audio=True),
    )

    def __init__(self) -> None:
        super().__init__()
        self.validated: list[VideoRequest] = []
        self.requests: list[VideoRequest | None] = []

    def validate(self, request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
        self.validated.append(request)
        return []

    def map_request(self, request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
        job = super().map_request(request, model, channel)
        payload = {**job.payload, "images": list(range(len(request.images)))}  # by index, never bytes
        return VendorJob(payload=payload, seconds=job.seconds, size=job.size, resolution=job.resolution)

    async def submit(self, job: VendorJob, ctx: CallContext) -> Submission:
        self.requests.append(ctx.request)
        return await super().submit(job, ctx)


def _config():
    return scripted_config([{"name": "main", "vendor": "capable"}])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "cap-seconds", "seconds": 5}, "seconds"),
        ({"model": "cap-i2v-only"}, "image"),
        ({"model": "cap-t2v-only", "images": ["https://example.com/a.png", "https://example.com/b.png"]}, "images[0]"),
        ({"model": "cap-sizes", "size": "1920x1080"}, "size"),
        ({"model": "cap-sizes", "size": "16:9"}, "size"),
        (
            {"model": "cap-seconds", "input_reference": ["https://example.com/a.png", "https://example.com/v.mov"]},
            "input_reference[1]",
        ),
        ({"model": "cap-seconds", "input_reference": "https://example.com/voice.mp3"}, "input_reference"),
    ],
)
async def test_the_core_enforces_declared_capabilities_before_the_plugin(tmp_path, body, param):
    plugin = Capable()
    async with run_gateway(_config(), tmp_path, extra_plugins={"capable": plugin}) as gw:
        key = await gw.token()
        status, answer = await gw.post("/v1/videos", key, json={"prompt": "a cat", **body})
    assert status == 400, answer
    assert answer["error"]["param"] == param
    assert plugin.validated == []  # refused before any plugin code ran
    assert plugin.submitted == []


async def test_declared_capabilities_let_requests_through(tmp_path):
    plugin = Capable()
    async with run_gateway(_config(), tmp_path, extra_plugins={"capable": plugin}) as gw:
        key = await gw.token()
        for body in (
            {"model": "cap-seconds", "seconds": 8},
            {"model": "cap-i2v-only", "image": "https://example.com/a.png"},
            {"model": "cap-sizes", "size": "720x1280"},
            {"model": "cap-refs", "input_reference": ["https://example.com/v.mp4", "https://example.com/a.ogg"]},
        ):
            status, answer = await gw.post("/v1/videos", key, json={"prompt": "a cat", **body})
            assert status == 200, (body, answer)
    refs = plugin.requests[-1].references
    assert [(r.kind, r.url, r.param) for r in refs] == [
        ("video", "https://example.com/v.mp4", "input_reference[0]"),
        ("audio", "https://example.com/a.ogg", "input_reference[1]"),
    ]


def _blob_sizes(gw, task_id: str):
    async def sizes() -> tuple[int, int, str, str]:
        row = await gw.gateway.store.db.fetchone("SELECT request, job FROM task_blobs WHERE task_id = ?", task_id)
        return len(row["request"]), len(row["job"] or ""), row["request"], row["job"] or ""

    return sizes()


async def test_an_inline_image_is_stored_once_and_reaches_submit(tmp_path):
    png = _encoded("png", "rgb24", 400, 400, noise=True)  # ~480 KB: incompressible
    plugin = Capable()
    async with run_gateway(_config(), tmp_path, extra_plugins={"capable": plugin}) as gw:
        key = await gw.token()
        status, task = await gw.post(
            "/v1/videos", key, json={"model": "cap-i2v-only", "prompt": "x", "image": base64.b64encode(png).decode()}
        )
        assert status == 200, task
        request_bytes, job_bytes, _, job = await _blob_sizes(gw, task["id"])
    assert plugin.requests[-1].images[0].data == png
    assert base64.b64encode(png).decode()[:200] not in job
    assert request_bytes > len(png) > 20 * job_bytes
