"""The vidgate vendor contract, run against the fake Kling server."""

from vidgate.testing import contract
from vidgate_kling import plugin
from vidgate_kling.fake import FakeKling


class TestKlingContract(contract.VendorContract):
    plugin = plugin
    fake = FakeKling
    model = "kling-v1-6"
    image_model = "kling-v1-6"
    request = {"seconds": 5}

    def credentials(self, fake):
        return {"access_key": fake.access_key, "secret_key": fake.secret_key}
