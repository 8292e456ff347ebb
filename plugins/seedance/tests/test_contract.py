"""The vidgate vendor contract, run against the fake Ark server."""

from vidgate.testing import contract
from vidgate_seedance import plugin
from vidgate_seedance.fake import TASKS, FakeArk


class TestSeedanceContract(contract.VendorContract):
    plugin = plugin
    fake = FakeArk
    model = "seedance-1.0-pro"
    image_model = "seedance-2.0"
    request = {"seconds": 5}
    # The fake's list endpoint is not rate-limited here; the plugin need not space calls.
    channel_options = {"list_qps": 1000}
    batch_poll_path = TASKS

    def base_url(self, fake):
        return fake.api_url
