"""Every bad input gets a 4xx in the one error shape, naming the field; never a 500."""

import base64

import pytest
from scripted_vendor import Scripted, scripted_config

from vidgate.testing import run_gateway

GOOD = {"model": "scripted-1", "prompt": "a red fox running through snow"}


@pytest.fixture
async def gw(tmp_path):
    async with run_gateway(
        scripted_config(server={"max_body_bytes": 200_000}), tmp_path, extra_plugins={"scripted": Scripted()}
    ) as running:
        yield running, await running.token()


def assert_error(status, body, expected_status, param):
    assert status == expected_status, body
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["param"] == param, body
    assert body["error"]["message"]


@pytest.mark.parametrize(
    "body, param",
    [
        ({"prompt": "x"}, "model"),
        ({**GOOD, "model": "no-such-model"}, "model"),
        ({**GOOD, "prompt": "x" * 32_001}, "prompt"),
        ({**GOOD, "seconds": "abc"}, "seconds"),
        ({**GOOD, "seconds": True}, "seconds"),
        ({**GOOD, "seconds": -4}, "seconds"),
        ({**GOOD, "seconds": 4, "duration": 8}, "duration"),
        ({**GOOD, "size": "huge"}, "size"),
        ({**GOOD, "size": "0x720"}, "size"),
        ({**GOOD, "image": "not base64 at all!"}, "image"),
        ({**GOOD, "image": base64.b64encode(b"plain text, not a picture").decode()}, "image"),
        ({**GOOD, "images": [123]}, "images[0]"),
        ({**GOOD, "input_reference": {"file_id": "file_1"}}, "input_reference.file_id"),
        ({**GOOD, "metadata": "not an object"}, "metadata"),
        ({**GOOD, "metadata": {"model": "scripted-2"}}, "metadata.model"),
        ({**GOOD, "seconds": 5}, "seconds"),
        ({"model": "scripted-1"}, "prompt"),
    ],
)
async def test_bad_fields_are_400_naming_the_field(gw, body, param):
    gw, key = gw
    status, answer = await gw.post("/v1/video/generations", key, json=body)
    assert_error(status, answer, 400, param)


async def test_body_that_is_not_json(gw):
    gw, key = gw
    status, answer = await gw.post(
        "/v1/video/generations", key, data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(status, answer, 400, None)
    assert answer["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"\xff\xfe\xfa", b"[" * 5000 + b"]" * 5000])
async def test_odd_json_bodies(gw, body):
    gw, key = gw
    status, answer = await gw.post(
        "/v1/video/generations", key, data=body, headers={"Content-Type": "application/json"}
    )
    assert_error(status, answer, 400, None)


async def test_body_over_the_limit_is_413(gw):
    gw, key = gw
    big = {**GOOD, "prompt": "x" * 300_000}
    status, answer = await gw.post("/v1/video/generations", key, json=big)
    assert_error(status, answer, 413, None)


@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer vg-wrong"])
async def test_missing_or_wrong_key_is_401(gw, header):
    gw, key = gw
    headers = {"Authorization": header} if header else {}
    status, answer = await gw.post("/v1/video/generations", json=GOOD, headers=headers)
    assert_error(status, answer, 401, None)


async def test_another_tokens_task_is_404(gw):
    gw, key = gw
    other = await gw.token("other")
    status, task = await gw.post("/v1/video/generations", key, json=GOOD)
    assert status == 200
    for path in (f"/v1/video/generations/{task['id']}", f"/v1/videos/{task['id']}", f"/v1/videos/{task['id']}/content"):
        status, answer = await gw.get(path, other)
        assert_error(status, answer, 404, None)
    status, answer = await gw.get("/v1/videos/video_doesnotexist", key)
    assert_error(status, answer, 404, None)


async def test_revoked_key_is_refused_at_once(gw):
    gw, key = gw
    status, task = await gw.post("/v1/video/generations", key, json=GOOD)
    token = (await gw.gateway.store.list_tokens())[0]
    await gw.gateway.store.revoke_token(token.id)
    status, answer = await gw.get(f"/v1/videos/{task['id']}/content", key)
    assert_error(status, answer, 401, None)


async def test_unknown_path_is_404_in_the_error_shape(gw):
    gw, key = gw
    status, answer = await gw.get("/v1/nothing-here", key)
    assert_error(status, answer, 404, None)


async def test_models_lists_what_the_token_may_use(gw):
    gw, key = gw
    status, answer = await gw.get("/v1/models", key)
    assert status == 200
    assert [m["id"] for m in answer["data"]] == ["scripted-1", "scripted-2"]
    limited = await gw.token("limited", models=["scripted-2"])
    status, answer = await gw.get("/v1/models", limited)
    assert [m["id"] for m in answer["data"]] == ["scripted-2"]
    status, answer = await gw.post("/v1/video/generations", limited, json=GOOD)
    assert_error(status, answer, 403, "model")


async def test_healthz(gw):
    gw, key = gw
    status, answer = await gw.get("/healthz")
    assert status == 200 and answer == {"status": "ok"}
