"""The vidgate vendor contract, run against the fake Replicate."""

from vidgate.testing import contract
from vidgate_replicate import plugin
from vidgate_replicate.fake import FakeReplicate


class TestReplicateContract(contract.VendorContract):
    plugin = plugin
    fake = FakeReplicate
    model = "seedance-1-pro"
    image_model = "seedance-1-pro"
    request = {"seconds": 5}
