"""The vidgate vendor contract, run against the fake Kling server."""

import re

from vidgate.testing import contract
from vidgate_kling import plugin
from vidgate_kling.fake import FakeKling


class TestKlingContract(contract.VendorContract):
    plugin = plugin
    fake = FakeKling
    model = "kling-v1-6"
    image_model = "kling-v1-6"
    request = {"seconds": 5}
    # Batch polls read each endpoint family's list (GET /v1/videos/text2video?pageNum=...).
    batch_poll_path = re.compile(r"^/v1/videos/[a-z0-9-]+$")

    def credentials(self, fake):
        return {"access_key": fake.access_key, "secret_key": fake.secret_key}
