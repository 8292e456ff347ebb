"""The vidgate vendor contract, run against the fake xAI video API."""

from vidgate.testing import contract
from vidgate_xai import plugin
from vidgate_xai.fake import FakeXAI


class TestXAIContract(contract.VendorContract):
    plugin = plugin
    fake = FakeXAI
    model = "grok-imagine-video"
    image_model = "grok-imagine-video-1.5"
    request = {"seconds": 6}
