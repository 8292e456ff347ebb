from scripted_vendor import VIDEO, Scripted, scripted_config

from vidgate.testing import run_gateway


async def test_submit_poll_download(tmp_path):
    vendor = Scripted()
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        status, task = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "a fox"})
        assert status == 200, task
        assert task["id"] == task["task_id"] and task["object"] == "video"
        assert task["status"] == "queued"
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        assert done["progress"] == 100
        status, body = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
        assert status == 200 and body == VIDEO


async def test_whole_flow_on_postgres(tmp_path, postgres_url):
    vendor = Scripted()
    config = scripted_config(store={"url": postgres_url})
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        status, task = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "a fox"})
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed"
        status, body = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
        assert status == 200 and body == VIDEO
