"""The vidgate vendor contract, run against the fake Veo (Gemini API surface)."""

import pytest

from vidgate.testing import contract
from vidgate_veo import plugin
from vidgate_veo.fake import FakeVeo


class TestVeoContract(contract.VendorContract):
    plugin = plugin
    fake = FakeVeo
    model = "veo-3.1-generate-preview"
    image_model = "veo-3.1-generate-preview"
    request = {"seconds": 8}
    channel_options = {"surface": "gemini"}

    @pytest.mark.skip(reason="a Google operation has no status word to be unknown: `done` is a boolean")
    def test_unknown_status_keeps_task_alive(self, tmp_path):
        pass
