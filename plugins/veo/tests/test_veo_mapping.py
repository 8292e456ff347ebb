"""Request mapping without a gateway: what Veo is asked to make is what is billed."""

import base64

import pytest

from vidgate import Channel, Size, VideoRequest
from vidgate.request import image_from_bytes
from vidgate.testing import tiny_png
from vidgate_veo import plugin
from vidgate_veo.mapping import plan
from vidgate_veo.models import MODELS, RETIRED, family_of

CH = Channel(name="c", vendor="veo")


def png(param):
    image = image_from_bytes(tiny_png(4, 4), param, [])
    assert image is not None
    return image


MODEL = {m.name: m for m in MODELS}


def attempt(model="veo-3.1", channel=CH, **kw):
    return plan(VideoRequest(model=model, prompt="p", **kw), MODEL[model], channel)


def job(model="veo-3.1", **kw):
    problems, j = attempt(model, **kw)
    assert problems == [], problems
    return j


@pytest.mark.parametrize(
    ("size", "aspect", "resolution", "out"),
    [
        (None, "16:9", "720p", "1280x720"),
        ("1:1", "16:9", "720p", "1280x720"),
        ("9:16", "9:16", "720p", "720x1280"),
        ("1024x1792", "9:16", "720p", "720x1280"),
        ("1920x1080", "16:9", "1080p", "1920x1080"),
        ("1080x1920", "9:16", "1080p", "1080x1920"),
    ],
)
def test_size_maps_to_aspect_and_resolution(size, aspect, resolution, out):
    j = job(size=Size.parse(size) if size else None)
    assert j.payload["model"] == "veo-3.1-generate-001"
    assert j.payload["parameters"]["aspectRatio"] == aspect
    assert j.payload["parameters"]["resolution"] == resolution
    assert (j.size, j.resolution, j.seconds) == (out, resolution, 8)


def test_4k_is_not_offered_on_the_ga_models():
    problems, j = attempt(metadata={"resolution": "4k"})
    assert j is None and [p.param for p in problems] == ["metadata.resolution"]


def test_a_relay_mapped_to_veo2_bills_what_it_sends():
    ch = Channel(name="c", vendor="veo", model_map={"veo-3.1": "veo-2.0-generate-001"})
    problems, j = attempt(channel=ch, seconds=5)
    assert problems == [] and j is not None
    assert "resolution" not in j.payload["parameters"]
    assert j.payload["parameters"]["durationSeconds"] == 5 == j.seconds


def test_snake_case_metadata_is_accepted_as_camel_case():
    j = job(metadata={"negative_prompt": "blur", "aspect_ratio": "9:16", "generate_audio": True, "seed": 3})
    params = j.payload["parameters"]
    assert params["negativePrompt"] == "blur" and params["aspectRatio"] == "9:16"
    assert params["generateAudio"] is True and params["seed"] == 3
    assert "negative_prompt" not in params


def test_input_reference_images_become_asset_references():
    refs = tuple(png(f"input_reference[{i}]") for i in range(3))
    j = job(images=refs)
    inst = j.payload["instances"][0]
    assert "image" not in inst
    assert inst["referenceImages"] == [
        {"image": {"$request_image": i, "mimeType": "image/png"}, "referenceType": "asset"} for i in range(3)
    ]


def test_image_role_reference_and_the_limits():
    imgs = tuple(png(f"images[{i}]") for i in range(4))
    problems, _ = attempt(images=imgs, metadata={"image_role": "reference"})
    assert [p.param for p in problems] == ["images[3]"]
    problems, _ = attempt(images=imgs[:2], seconds=6, metadata={"image_role": "reference"})
    assert [p.param for p in problems] == ["seconds"]
    mixed = (png("image"), png("input_reference"))
    problems, _ = attempt(images=mixed)
    assert [p.param for p in problems] == ["input_reference"]
    problems, _ = attempt(metadata={"image_role": "both"})
    assert [p.param for p in problems] == ["metadata.image_role"]


def test_extension_is_8_seconds_without_images():
    j = job(operation="extend", derived_from="video_x")
    assert j.payload["extend"] is True and j.seconds == 8
    problems, _ = attempt(operation="extend", seconds=4)
    assert [p.param for p in problems] == ["seconds"]


def test_first_and_last_frame():
    first = png("image")
    b64 = base64.b64encode(tiny_png(5, 5)).decode()
    j = job(images=(first,), metadata={"lastFrame": b64})
    inst = j.payload["instances"][0]
    assert inst["image"] == {"$request_image": 0, "mimeType": "image/png"}
    assert inst["lastFrame"] == {"bytesBase64Encoded": b64, "mimeType": "image/png"}


def test_public_names_aliases_and_retired_ids():
    names = {m.name: m for m in MODELS}
    assert set(names) == {"veo-3.1", "veo-3.1-fast"}
    assert "veo-3" in names["veo-3.1"].aliases and "veo-3.1-generate-001" in names["veo-3.1"].aliases
    assert all(m.can("extend") for m in MODELS)
    assert not RETIRED & {m.upstream for m in MODELS}
    assert family_of("veo-3.0-generate-001").name == "veo-3"
    assert plugin.vendor_info().poll_interval == 10.0
