"""Downloads are streamed from media storage, with Range and HEAD."""

from scripted_vendor import VIDEO, Scripted, scripted_config

from vidgate.testing import run_gateway


async def test_range_and_head(tmp_path):
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token()
        _, task = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p"})
        done = await gw.wait(task["id"], key)
        assert done["url"].endswith(f"/v1/videos/{task['id']}/content")
        path = f"/v1/videos/{task['id']}/content"
        async with gw.http.get(
            gw.url + path, headers={"Authorization": f"Bearer {key}", "Range": "bytes=100-199"}
        ) as r:
            assert r.status == 206
            assert await r.read() == VIDEO[100:200]
            assert r.headers["Content-Range"] == f"bytes 100-199/{len(VIDEO)}"
        async with gw.http.head(gw.url + path, headers={"Authorization": f"Bearer {key}"}) as r:
            assert r.status == 200
            assert int(r.headers["Content-Length"]) == len(VIDEO)
            assert r.headers["Content-Type"] == "video/mp4"
            assert "private" in r.headers["Cache-Control"]


async def test_content_before_completion_is_409(tmp_path):
    vendor = Scripted()
    vendor.polls_to_finish = 10_000
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        _, task = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p"})
        status, answer = await gw.get(f"/v1/videos/{task['id']}/content", key)
        assert status == 409 and answer["error"]["code"] == "video_not_ready"


async def test_expired_media_is_deleted_and_answers_410(tmp_path):
    from vidgate.worker import Worker

    config = scripted_config(media={"retention_hours": 0.0})
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token()
        _, task = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p"})
        done = await gw.wait(task["id"], key)
        assert done["expires_at"] <= done["completed_at"] + 1
        assert await Worker(gw.gateway).sweep_expired_media() == 1
        assert not (tmp_path / "data" / "media" / task["id"]).exists()
        status, answer = await gw.get(f"/v1/videos/{task['id']}/content", key)
        assert status == 410 and answer["error"]["code"] == "video_expired"
        status, still = await gw.get(f"/v1/videos/{task['id']}", key)
        assert status == 200 and still["status"] == "completed"
