"""Request mapping without a gateway: what Veo is asked to make is what is billed."""

import pytest

from vidgate import Channel, Size, VideoRequest
from vidgate_veo import plugin
from vidgate_veo.mapping import plan
from vidgate_veo.models import MODELS

CH = Channel(name="c", vendor="veo")
MODEL = {m.name: m for m in MODELS}


def job(model="veo-3", **kw):
    problems, j = plan(VideoRequest(model=model, prompt="p", **kw), MODEL[model], CH)
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
    ],
)
def test_size_maps_to_aspect_and_resolution(size, aspect, resolution, out):
    j = job(size=Size.parse(size) if size else None)
    assert j.payload["parameters"]["aspectRatio"] == aspect
    assert j.payload["parameters"]["resolution"] == resolution
    assert (j.size, j.resolution, j.seconds) == (out, resolution, 8)


def test_veo2_has_no_resolution_parameter_and_bills_what_it_sends():
    j = job("veo-2", seconds=5)
    assert "resolution" not in j.payload["parameters"]
    assert j.payload["parameters"]["durationSeconds"] == 5 == j.seconds


def test_metadata_resolution_4k_on_veo31():
    j = job("veo-3.1", metadata={"resolution": "4k"})
    assert (j.size, j.resolution) == ("3840x2160", "4k")


def test_snake_case_metadata_is_accepted_as_camel_case():
    j = job(metadata={"negative_prompt": "blur", "aspect_ratio": "9:16"})
    assert j.payload["parameters"]["negativePrompt"] == "blur"
    assert j.payload["parameters"]["aspectRatio"] == "9:16"
    assert "negative_prompt" not in j.payload["parameters"]


def test_vendor_names_are_aliases():
    names = {a for m in MODELS for a in m.aliases}
    assert "veo-3.0-generate-001" in names and plugin.vendor_info().poll_interval == 10.0
