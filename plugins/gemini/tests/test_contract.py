"""The vidgate vendor contract, run against the fake Interactions API."""

from vidgate.testing import contract
from vidgate_gemini import plugin
from vidgate_gemini.fake import FakeGemini


class TestGeminiContract(contract.VendorContract):
    plugin = plugin
    fake = FakeGemini
    model = "gemini-omni-flash"
    image_model = "gemini-omni-flash"
    request = {"seconds": 8}
