"""The vidgate vendor contract, run against the fake OpenAI Videos API."""

from vidgate.testing import contract
from vidgate_sora import plugin
from vidgate_sora.fake import FakeVideosAPI


class TestSoraContract(contract.VendorContract):
    plugin = plugin
    fake = FakeVideosAPI
    model = "sora-2"
    image_model = "sora-2"
    request = {"seconds": 4}
    image_size = (720, 1280)  # Sora wants the reference at the output size

    def base_url(self, fake):
        return fake.url + "/v1"
