"""Unit tests: error classification and usage facts."""

from __future__ import annotations

import pytest

from vidgate.errors import ChannelUnusable, ModelRetired, VendorRateLimited, VendorRejected, VendorUnavailable
from vidgate_dashscope.client import classify
from vidgate_dashscope.mapping import usage_facts


@pytest.mark.parametrize(
    ("status", "code", "message", "cls", "param"),
    [
        (429, "Throttling.RateQuota", "Requests rate limit exceeded", VendorRateLimited, None),
        (200, "Throttling.AllocationQuota", "quota", VendorRateLimited, None),  # an error inside HTTP 200
        (401, "InvalidApiKey", "Invalid API-key provided.", ChannelUnusable, None),
        (400, "Arrearage", "Access denied, account not in good standing", ChannelUnusable, None),
        (400, "InvalidParameter", "The duration parameter is invalid", VendorRejected, "seconds"),
        (400, "InvalidParameter", "The size parameter is invalid: 1*1", VendorRejected, "size"),
        (400, "DataInspectionFailed", "Input data may contain inappropriate content.", VendorRejected, "prompt"),
        (404, "ModelNotFound", "Model not exist.", ModelRetired, None),
        (500, "InternalError", "An internal error has occured", VendorUnavailable, None),
    ],
)
def test_classify(status, code, message, cls, param):
    err = classify(status, code, message, request_id="r1", wait=None)
    assert type(err) is cls
    assert err.vendor_code == code and err.request_id == "r1"
    if param is not None:
        assert err.param == param
    if cls is VendorRateLimited:
        assert err.retry_after == 1.0


def test_proxy_502_may_have_reached_dashscope_but_its_own_500_did_not():
    proxy = classify(502, "", "", request_id=None, wait=None)
    own = classify(500, "InternalError", "x", request_id=None, wait=None)
    assert isinstance(proxy, VendorUnavailable) and proxy.maybe_received
    assert isinstance(own, VendorUnavailable) and not own.maybe_received


def test_usage_facts():
    usage = {"duration": 7, "input_video_duration": 2, "output_video_duration": 5, "video_count": 1, "SR": 1080}
    assert usage_facts(usage) == {"seconds": 7, "resolution": "1080p", "count": 1}
    assert usage_facts(None) == {}
    assert usage_facts({"SR": True, "duration": "7"}) == {}
