"""The vidgate vendor contract, run against the fake fal queue."""

from vidgate.testing import contract
from vidgate_fal import plugin
from vidgate_fal.fake import FakeFal


class TestFalContract(contract.VendorContract):
    plugin = plugin
    fake = FakeFal
    model = "kling-2.1-master"
    image_model = "kling-2.1-master"
    request = {"seconds": 5}
