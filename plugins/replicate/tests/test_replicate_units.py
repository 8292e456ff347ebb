"""The mapping pieces on their own."""

from __future__ import annotations

from vidgate import Channel
from vidgate_replicate import mapping, plugin


def test_find_video_in_output_shapes():
    assert mapping.find_video("https://replicate.delivery/a.mp4", "") == "https://replicate.delivery/a.mp4"
    assert mapping.find_video(["https://x/1.mp4", "https://x/2.mp4"], "") == "https://x/1.mp4"
    assert mapping.find_video({"video": "https://x/v.mp4"}, "video") == "https://x/v.mp4"
    assert mapping.find_video([], "") is None and mapping.find_video(None, "") is None


def test_model_refs_and_channel_models():
    assert mapping.from_ref("a/b:abc123").version == "abc123"
    ch = Channel(name="c", vendor="replicate", model_map={"n": "o/m", "veo-3": "google/veo-3:v9"})
    assert set(mapping.CATALOGUE.channel_entries(ch)) == {"n"}
    pinned = mapping.CATALOGUE.entry_for("veo-3", ch)
    assert pinned.model == "google/veo-3" and pinned.version == "v9" and pinned.durations == (8,)


def test_catalogue_is_valid():
    assert len(mapping.CATALOGUE) >= 4
    for name, spec in mapping.CATALOGUE.items():
        assert spec.problems() == [], name


def test_status_words_and_usage():
    handle = {"id": "p", "video_path": ""}
    done = plugin._result({"status": "succeeded", "output": "https://x/v.mp4", "metrics": {"predict_time": 3}}, handle)
    assert done.status == "completed" and done.usage == {"compute_seconds": 3.0}
    assert plugin._result({"status": "canceled"}, handle).status == "cancelled"
    assert plugin._result({"status": "starting"}, handle).status == "queued"
    assert plugin._result({"status": "processing"}, handle).status == "in_progress"
    assert plugin._result({"status": "aborted"}, handle).error.code == "vendor_aborted"
    assert plugin._result({"status": "failed", "error": "OOM"}, handle).error.message == "Replicate: OOM"
    assert plugin._result({"status": "succeeded", "output": None}, handle).status == "failed"
    assert plugin._result({"status": "weird"}, handle).status == "unknown"


def test_webhook_secret_must_be_whsec():
    ch = Channel(name="c", vendor="replicate", credentials={"api_key": "k", "webhook_secret": "plain"})
    assert plugin.validate_channel(ch) == ["credentials.webhook_secret: must be Replicate's whsec_... signing secret"]


def test_empty_string_means_no_such_input():
    models, problems = mapping.CATALOGUE.parse({"t": {"model": "a/b", "image_field": "", "aspect_ratio_field": ""}})
    assert problems == [] and models["t"].image_field is None and models["t"].aspect_ratio_field is None
    assert models["t"].as_model("t").image_to_video is False
    _, problems = mapping.CATALOGUE.parse({"i": {"model": "a/b", "text_to_video": False, "image_field": ""}})
    assert problems == ["options.models.i.image_field: a model without text_to_video needs an image_field"]
