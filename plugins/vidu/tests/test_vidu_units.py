"""Unit tests: error classification and output sizes."""

from __future__ import annotations

import pytest

from vidgate.errors import ChannelUnusable, VendorRateLimited, VendorRejected, VendorUnavailable
from vidgate_vidu.client import classify
from vidgate_vidu.mapping import pixels


@pytest.mark.parametrize(
    ("status", "reason", "message", "cls", "param"),
    [
        (429, "TooManyRequests", "too many requests", VendorRateLimited, None),
        (429, "QuotaExceeded", "concurrency quota exceeded", VendorRateLimited, None),
        (401, "Unauthorized", "invalid api key", ChannelUnusable, None),
        (403, "CreditInsufficient", "credit insufficient", ChannelUnusable, None),
        (400, "BadRequest", "duration 3 is invalid for viduq1", VendorRejected, "seconds"),
        (400, "TaskPromptPolicyViolation", "prompt violates policy", VendorRejected, "prompt"),
        (400, "ImageFormatInvalid", "image format invalid", VendorRejected, "image"),
        (500, "ServerError", "internal", VendorUnavailable, None),
    ],
)
def test_classify(status, reason, message, cls, param):
    err = classify(status, reason, message, wait=None)
    assert type(err) is cls and err.vendor_code == reason
    if param is not None:
        assert err.param == param


def test_a_bare_proxy_502_may_have_reached_vidu():
    assert classify(502, "", "", wait=None).maybe_received  # type: ignore[attr-defined]
    assert not classify(500, "ServerError", "x", wait=None).maybe_received  # type: ignore[attr-defined]


def test_pixels():
    assert pixels("720p", "16:9") == (1280, 720)
    assert pixels("1080p", "9:16") == (1080, 1920)
    assert pixels("540p", "16:9") == (960, 540)
    assert pixels("360p", "4:3") == (480, 360)
