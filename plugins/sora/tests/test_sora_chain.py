"""A vidgate whose sora channel points at ANOTHER vidgate: the plugin speaks the OpenAI
Videos API to a real server that is not our fake (the upstream renders with the local
plugin)."""

from __future__ import annotations

import io

import av

from vidgate.testing import run_gateway


async def test_sora_channel_chained_to_another_vidgate(tmp_path):
    async with run_gateway(None, tmp_path / "upstream") as upstream:
        upstream_key = await upstream.token("downstream")
        downstream_cfg = {
            "plugins": {"enabled": ["sora"]},
            "channels": [
                {
                    "name": "vidgate-upstream",
                    "vendor": "sora",
                    "base_url": upstream.url + "/v1",
                    "credentials": {"api_key": upstream_key},
                    "model_map": {"sora-2": "local-v1"},
                    "options": {"poll_interval": 0.1},
                }
            ],
        }
        async with run_gateway(downstream_cfg, tmp_path / "downstream") as gw:
            key = await gw.token()
            # metadata.metadata reaches the upstream vidgate as its own `metadata` (local
            # plugin: fps), which keeps the render short.
            status, task = await gw.post(
                "/v1/video/generations",
                key,
                json={
                    "model": "sora-2",
                    "prompt": "hello from downstream",
                    "size": "16:9",
                    "metadata": {"metadata": {"fps": 6}},
                },
            )
            assert status == 200, task
            assert task["model"] == "sora-2" and task["size"] == "1280x720" and task["seconds"] == "4"
            done = await gw.wait(task["id"], key, timeout=90)
            assert done["status"] == "completed", done
            status, video = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
            assert status == 200

            # The upstream saw one task, as local-v1, made exactly what was billed.
            status, listing = await upstream.get("/v1/videos", upstream_key)
            [up_task] = listing["data"]
            assert up_task["model"] == "local-v1" and up_task["status"] == "completed"
            assert up_task["seconds"] == "4" and up_task["size"] == "1280x720"
            assert up_task["id"] not in str(done)  # the upstream's id stays private
            status, up_video = await upstream.get(f"/v1/videos/{up_task['id']}/content", upstream_key, raw=True)
            assert status == 200 and up_video == video

    assert video[4:8] == b"ftyp"
    with av.open(io.BytesIO(video)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (1280, 720)
        frames = sum(1 for _ in container.decode(stream))
    assert frames >= 4 * 6 - 1
