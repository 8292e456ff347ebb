"""The mapping pieces on their own."""

from __future__ import annotations

from vidgate import Channel
from vidgate_fal import mapping
from vidgate_fal.plugin import app_root


def test_app_root_drops_the_subpath():
    assert app_root("fal-ai/kling-video/v2.1/master/text-to-video") == "fal-ai/kling-video"
    assert app_root("fal-ai/veo3") == "fal-ai/veo3"
    assert app_root("workflows/me/flow/x") == "workflows/me/flow"


def test_find_video_follows_the_path():
    out = {"video": {"url": "https://v3.fal.media/a.mp4"}, "videos": [{"url": "https://b"}]}
    assert mapping.find_video(out, "video.url") == "https://v3.fal.media/a.mp4"
    assert mapping.find_video(out, "video") == "https://v3.fal.media/a.mp4"
    assert mapping.find_video(out, "videos.0.url") == "https://b"
    assert mapping.find_video(out, "videos.3.url") is None
    assert mapping.find_video({"video": None}, "video.url") is None


def test_catalogue_entries_are_valid_and_cover_the_families():
    assert len(mapping.CATALOGUE) >= 6
    for name, app in mapping.CATALOGUE.items():
        assert app.problems() == [], name
    apps = " ".join(str(a.text_app or a.image_app) for a in mapping.CATALOGUE.values())
    for family in ("kling", "hailuo", "seedance", "pika", "veo", "wan"):
        assert family in apps


def test_channel_apps_from_options_and_model_map():
    ch = Channel(
        name="a",
        vendor="fal",
        options={"models": {"x-1": {"image_app": "me/x/image-to-video"}}},
        model_map={"y-1": "me/y/image-to-video", "kling-2.1-master": "fal-ai/kling-video/v2.5/text-to-video"},
    )
    apps = mapping.CATALOGUE.channel_entries(ch)
    assert set(apps) == {"x-1", "y-1"}  # a catalogue name in model_map is a re-point, not a new model
    assert apps["y-1"].image_app == "me/y/image-to-video" and apps["y-1"].text_app is None
    assert mapping.CATALOGUE.entry_for("kling-2.1-master", ch).text_app == "fal-ai/kling-video/v2.5/text-to-video"
    _, problems = mapping.CATALOGUE.parse({"z": {"text_app": "a/b", "duration_format": "ms"}})
    assert problems == ["options.models.z.duration_format: must be one of string, integer, seconds"]


def test_empty_string_means_no_such_input():
    apps, problems = mapping.CATALOGUE.parse({"t": {"text_app": "a/b", "aspect_ratio_field": "", "duration_field": ""}})
    assert problems == [] and apps["t"].aspect_ratio_field is None and apps["t"].duration_field is None


def test_config_types_are_strict():
    _, problems = mapping.CATALOGUE.parse({"t": {"text_app": "a/b", "durations": [True], "default_duration": 5.5}})
    assert problems == [
        "options.models.t.durations[0]: invalid value for type, expected int",
        "options.models.t.default_duration: invalid value for type, expected int",
    ], problems


def test_jwks_keys_and_the_signed_message():
    from vidgate_fal.auth import public_keys, signed_message
    from vidgate_fal.fake import FakeFal

    fake = FakeFal()
    job = fake.new_job("x")
    body, headers = fake.signed_webhook(job, timestamp=1700000000)
    message = signed_message(job.id, fake.user_id, "1700000000", body)
    assert message.split(b"\n")[:3] == [job.id.encode(), fake.user_id.encode(), b"1700000000"]
    good = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}  # RFC 8037 A.2
    jwks = {"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}, {"kty": "OKP", "crv": "Ed25519", "x": "!!"}, good]}
    (key,) = public_keys(jwks)
    assert len(key.public_bytes_raw()) == 32
    assert public_keys({"keys": "nope"}) == [] and public_keys([]) == []
    signature = bytes.fromhex(headers["X-Fal-Webhook-Signature"])
    fake.signing_key.public_key().verify(signature, message)  # raises if not what fal signs
