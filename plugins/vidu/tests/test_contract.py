"""The vidgate vendor contract, run against the fake Vidu server."""

from vidgate.testing import contract
from vidgate_vidu import plugin
from vidgate_vidu.fake import FakeVidu


class TestViduContract(contract.VendorContract):
    plugin = plugin
    fake = FakeVidu
    model = "viduq2"
    image_model = "viduq2"
