"""The vidgate vendor contract, run against the fake MiniMax server.

MiniMax answers refusals at HTTP 200 with ``base_resp.status_code`` (§2.5), so the two
cases that prove a fault fired by the HTTP status (429, 400) are restated on the vendor
code the fake recorded (1002, 2013); everything else is the kit's case unchanged. V2
uses HTTP statuses, so its class runs the kit's cases as they are, cancel included.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vidgate.fakekit import Recorded
from vidgate.testing import captured_logs, contract, dump_store
from vidgate_minimax import plugin
from vidgate_minimax.fake import FakeMiniMax


class TestMiniMaxV1Contract(contract.VendorContract):
    plugin = plugin
    fake = FakeMiniMax
    model = "MiniMax-Hailuo-2.3"
    image_model = "MiniMax-Hailuo-2.3"
    request = {"seconds": 6}

    @pytest.mark.skip(reason="MiniMax V1 has no cancel (answered REFUSED); TestMiniMaxV2Contract runs the case")
    def test_cancel(self, tmp_path: Path) -> None:
        pass

    def test_rate_limited_create_is_retried(self, tmp_path: Path) -> None:
        async def case() -> None:
            async with self.served_fake() as fake, self.gateway(fake, tmp_path) as gw:
                key = await gw.token()
                task = await self.submit(gw, key, "patience [429]")
                await self.assert_completed(gw, key, task, fake, "patience")
                assert [r.code for r in creates(fake)] == [1002, 0]

        self._run(case)

    def test_secrets_never_leak(self, tmp_path: Path) -> None:
        async def case() -> None:
            async with self.served_fake() as fake:
                with captured_logs() as logs:
                    async with self.gateway(fake, tmp_path) as gw:
                        key = await gw.token()
                        task = await self.submit(gw, key, "clean run")
                        await self.assert_completed(gw, key, task, fake, "clean run")
                        status, refused = await gw.post(
                            "/v1/video/generations", key, json=self.body("leaky [echo-key]")
                        )
                        assert status == 400, refused
                        await gw.get("/v1/videos", key)
                        await gw.get(f"/v1/videos/{task['id']}", key)
                assert 2013 in [r.code for r in creates(fake)], "the fake never echoed the key"
                texts = [
                    gw.transcript and "\n".join(gw.transcript),
                    logs.getvalue(),
                    dump_store(tmp_path / "data" / "vidgate.db"),
                ]
                for text in texts:
                    assert text and fake.secret not in text

        self._run(case)


class TestMiniMaxV2Contract(contract.VendorContract):
    plugin = plugin
    fake = FakeMiniMax
    model = "MiniMax-H3"
    image_model = "MiniMax-H3-Max"
    request = {"seconds": 5}
    batch_poll_path = "/v2/query/video_generation"


def creates(fake: FakeMiniMax) -> list[Recorded]:
    return [r for r in fake.requests if r.method == "POST" and r.path.endswith("/video_generation")]
