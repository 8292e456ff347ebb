"""The vidgate vendor contract, run against the fake MiniMax V1 server."""

from vidgate.testing import contract
from vidgate_minimax_v1 import plugin
from vidgate_minimax_v1.fake import FakeMinimaxV1


class TestMinimaxV1Contract(contract.VendorContract):
    plugin = plugin
    fake = FakeMinimaxV1
    model = "MiniMax-Hailuo-2.3"
    image_model = "MiniMax-Hailuo-2.3"
    request = {"seconds": 6}
