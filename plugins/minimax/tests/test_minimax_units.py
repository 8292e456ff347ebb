"""Unit tests: error codes, callbacks, sizes and the model table."""

from __future__ import annotations

import json

import pytest

from vidgate import CallbackResult, Channel, Size
from vidgate.errors import ChannelUnusable, VendorRateLimited, VendorRejected, VendorUnavailable
from vidgate_minimax import plugin
from vidgate_minimax.mapping import MODELS, RULES, classify, pixels, ratio

CHANNEL = Channel(name="a", vendor="minimax")


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (1000, VendorUnavailable),
        (1001, VendorUnavailable),
        (1002, VendorRateLimited),
        (1004, ChannelUnusable),
        (1008, ChannelUnusable),
        (1026, VendorRejected),
        (1027, VendorRejected),
        (2013, VendorRejected),
        (1999, VendorUnavailable),  # a code newer than the plugin: transient, nothing created
    ],
)
def test_every_documented_code_has_its_class(code, cls):
    err = classify(code, "why", wait=1.5)
    assert type(err) is cls and err.vendor_code == code and "why" in err.message
    if cls is VendorRateLimited:
        assert err.retry_after == 1.5
    if cls is VendorUnavailable:
        assert err.maybe_received is False  # MiniMax answered: no job exists to recover


def test_challenge_is_echoed_and_task_callbacks_name_the_task():
    answer = plugin.parse_callback(json.dumps({"challenge": "abc"}).encode(), {}, CHANNEL)
    assert answer == CallbackResult(reply={"challenge": "abc"})
    body = {"task_id": "106916112212032", "status": "Success", "base_resp": {"status_code": 0}}
    assert plugin.parse_callback(json.dumps(body).encode(), {}, CHANNEL) == CallbackResult("106916112212032")
    for junk in (b"not json", b"[1]", b'{"status": "Success"}', b'{"challenge": 5}', b"[" * 100000):
        assert plugin.parse_callback(junk, {}, CHANNEL) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("16:9", "16:9"), ("1366x768", "16:9"), ("1920x1080", "16:9"), ("768x1366", "9:16"), ("5:4", None)],
)
def test_ratio(text, expected):
    size = Size.parse(text)
    assert size is not None and ratio(size) == expected


def test_pixels():
    assert pixels("768P") == "1366x768"
    assert pixels("1080P") == "1920x1080"
    assert pixels("512P", 360, 640) == "512x910"
    assert pixels("720P", 1, 1) == "720x720"


def test_models_match_their_rules():
    names = {m.name for m in MODELS}
    assert {
        "MiniMax-Hailuo-2.3",
        "MiniMax-Hailuo-2.3-Fast",
        "MiniMax-Hailuo-02",
        "MiniMax-H3",
        "MiniMax-H3-Max",
    } <= names
    for model in MODELS:
        rule = RULES[model.name]
        assert model.default_seconds in model.seconds
        assert rule.default_resolution in rule.resolutions
        assert model.reference_videos is (rule.api == "v2")
    assert plugin.default_base_url == "https://api.minimax.io" and plugin.credentials == ("api_key",)
