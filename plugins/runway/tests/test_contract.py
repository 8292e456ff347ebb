"""The vidgate vendor contract, run against the fake Runway server."""

from vidgate.testing import contract
from vidgate_runway import plugin
from vidgate_runway.fake import FakeRunway


class TestRunwayContract(contract.VendorContract):
    plugin = plugin
    fake = FakeRunway
    model = "gen4.5"
    image_model = "gen4_turbo"
    request = {"seconds": 5}
