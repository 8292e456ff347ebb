"""The vidgate vendor contract, run against the fake MinimaxV1 server."""

from vidgate.testing import contract
from vidgate_minimax_v1 import plugin
from vidgate_minimax_v1.fake import FakeMinimaxV1


class TestMinimaxV1Contract(contract.VendorContract):
    plugin = plugin
    fake = FakeMinimaxV1
    model = "minimax_v1-1"
    image_model = "minimax_v1-1"
    request = {"seconds": 5}
