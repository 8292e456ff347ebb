"""The vidgate vendor contract, run against the fake DashScope server."""

from vidgate.testing import contract
from vidgate_dashscope import plugin
from vidgate_dashscope.fake import FakeDashScope


class TestDashScopeContract(contract.VendorContract):
    plugin = plugin
    fake = FakeDashScope
    model = "wan2.6-t2v"
    image_model = "wan2.6-i2v"
