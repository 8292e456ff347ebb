"""Pure functions: failure codes, error classification, ratio resolution."""

from __future__ import annotations

import pytest

from vidgate import Size
from vidgate.errors import ChannelUnusable, TaskNotFound, VendorRateLimited, VendorRejected, VendorUnavailable
from vidgate_runway.client import classify
from vidgate_runway.mapping import failure_code, prompt_units, resolve_ratio


@pytest.mark.parametrize(
    ("code", "public"),
    [
        ("SAFETY.INPUT.TEXT", "content_filtered"),
        ("SAFETY.OUTPUT.VIDEO", "content_filtered"),
        ("INPUT_PREPROCESSING.SAFETY.TEXT", "content_filtered"),
        ("INTERNAL.BAD_OUTPUT.CODE01", "vendor_failed"),
        ("ASSET.INVALID", "invalid_input"),
        (None, "vendor_failed"),
    ],
)
def test_failure_codes(code, public):
    assert failure_code(code) == public


@pytest.mark.parametrize(
    ("status", "body", "task_path", "cls"),
    [
        (400, {"error": "ratio is invalid"}, False, VendorRejected),
        (400, {"error": "You do not have enough credits to run this task."}, False, ChannelUnusable),
        (401, {"error": "Invalid API key"}, False, ChannelUnusable),
        (404, {"error": "Task not found"}, True, TaskNotFound),
        (404, {"error": "Not found"}, False, VendorRejected),
        (429, {"error": "slow down"}, False, VendorRateLimited),
        (503, None, False, VendorUnavailable),
    ],
)
def test_classify(status, body, task_path, cls):
    err = classify(status, body, None, task_path=task_path)
    assert type(err) is cls
    if body:
        assert body["error"] in err.message


def test_503_is_not_received_and_429_has_a_delay():
    assert classify(503, None, None, task_path=False).maybe_received is False  # type: ignore[attr-defined]
    assert classify(502, None, None, task_path=False).maybe_received is True  # type: ignore[attr-defined]
    assert classify(429, None, 3.0, task_path=False).retry_after == 3.0


def test_ratio_resolution():
    ratios = ("1280:720", "720:1280", "1920:1080")
    assert resolve_ratio(None, ratios) == "1280:720"
    assert resolve_ratio(Size.parse("16:9"), ratios) == "1280:720"
    assert resolve_ratio(Size.parse("1920x1080"), ratios) == "1920:1080"
    assert resolve_ratio(Size.parse("1:1"), ratios) is None
    assert resolve_ratio(Size.parse("1000x1000"), ratios) is None


def test_prompt_units_count_utf16():
    assert prompt_units("a") == 1 and prompt_units("😀") == 2
