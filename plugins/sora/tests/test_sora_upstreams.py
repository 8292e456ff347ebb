"""OpenAI-compatible upstreams after OpenAI's shutdown: Azure's api-key header, channel
validation, derived tasks passed through (or refused where the upstream has no route),
and a model the upstream no longer serves moving the task to the next channel."""

from __future__ import annotations

import warnings

import aiohttp
import pytest

from vidgate import Channel
from vidgate.errors import ConfigError, ModelRetired, VendorRejected
from vidgate.testing import run_gateway
from vidgate_sora import client, plugin
from vidgate_sora.fake import FakeVideosAPI, sample_mp4

from .test_sora_flow import KEY, channel, config, served


async def test_azure_api_key_header_is_sent_on_every_call_instead_of_bearer(tmp_path):
    fake = FakeVideosAPI(auth=("api-key",))
    async with served(fake) as up:
        ch = channel(up, options={"auth": "api-key"})
        async with run_gateway(config(ch), tmp_path) as gw:
            key = await gw.token()
            status, task = await gw.post("/v1/video/generations", key, json={"model": "sora-2", "prompt": "a fox"})
            assert status == 200, task
            assert (await gw.wait(task["id"], key))["status"] == "completed"
            status, body = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
            assert status == 200 and body == sample_mp4()
    assert len(fake.requests) >= 4  # create, polls, content, thumbnail
    for rec in fake.requests:
        assert rec.headers.get("api-key") == KEY and "authorization" not in rec.headers, rec
        assert rec.status == 200


async def test_a_bearer_channel_is_refused_by_an_api_key_only_upstream(tmp_path):
    """The option decides the header: without it the Azure-style fake answers 401."""
    fake = FakeVideosAPI(auth=("api-key",))
    async with served(fake) as up, run_gateway(config(channel(up)), tmp_path) as gw:
        key = await gw.token()
        status, _ = await gw.post("/v1/video/generations", key, json={"model": "sora-2", "prompt": "p"})
        assert status == 503
    assert [r.status for r in fake.creates()] == [401]


def test_channel_validation_names_the_option():
    def problems(**kwargs):
        base = {"name": "c", "vendor": "sora", "base_url": "http://h/v1", "credentials": {"api_key": "k"}}
        return plugin.validate_channel(Channel(**{**base, **kwargs}))

    assert problems() == []
    assert problems(options={"auth": "api-key"}) == []
    [bad] = problems(options={"auth": "basic"})
    assert bad.startswith("options.auth:") and "'basic'" in bad
    [missing] = problems(base_url="")
    assert missing.startswith("base_url:")
    [ops] = problems(options={"operations": ["remix", "upscale"]})
    assert ops.startswith("options.operations:")
    assert problems(options={"operations": ["remix"]}) == []


async def test_the_gateway_refuses_to_start_with_a_bad_auth_option(tmp_path):
    fake = FakeVideosAPI()
    async with served(fake) as up:
        with pytest.raises(ConfigError, match=r"channels\[0\]\.options\.auth"):
            async with run_gateway(config(channel(up, options={"auth": "token"})), tmp_path):
                pass


async def test_a_model_the_upstream_no_longer_serves_moves_the_task_to_the_next_channel(tmp_path):
    retired, serving = FakeVideosAPI(retired_models={"sora-2"}), FakeVideosAPI()
    async with served(retired) as a, served(serving) as b:
        cfg = config(channel(a, "sora-old", priority=10), channel(b, "sora-new", priority=0))
        async with run_gateway(cfg, tmp_path) as gw:
            key = await gw.token("t", quota=100)
            status, task = await gw.post("/v1/video/generations", key, json={"model": "sora-2", "prompt": "p"})
            assert status == 200, task
            done = await gw.wait(task["id"], key)
            assert done["status"] == "completed", done
            attempts = [(x.channel, x.outcome) for x in await gw.gateway.store.attempts(task["id"])]
            assert attempts == [("sora-old", "model_retired"), ("sora-new", "submitted")], attempts
            status, body = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
            assert status == 200 and body == sample_mp4()
    assert [r.status for r in retired.creates()] == [404]
    assert [r.status for r in serving.creates()] == [200]


def test_404_classification_tells_the_model_from_the_video_and_the_route():
    def env(message, param=None, code=None):
        return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}

    openai_style = env("The model 'sora-2' does not exist or you do not have access to it.", "model", "model_not_found")
    vllm_style = {"error": {"message": "The model `sora-2` does not exist.", "type": "NotFoundError", "code": 404}}
    for body in (openai_style, vllm_style):
        assert isinstance(client.classify(404, body, {}, operation="create"), ModelRetired)
    # A 404 about the source video stays the client's problem, naming the field.
    gone = client.classify(404, env("Video with id 'v' not found.", "video_id", "not_found"), {}, operation="extend")
    assert isinstance(gone, VendorRejected) and gone.param == "video"
    # No error envelope: the route is missing on this server.
    route = client.classify(404, {"detail": "Not Found"}, {}, operation="edit")
    assert isinstance(route, VendorRejected) and route.param == "video" and "does not serve" in route.message
    remix = client.classify(405, "Method Not Allowed", {}, operation="remix")
    assert isinstance(remix, VendorRejected) and remix.param == "video_id"
    # While polling, a 404 is the video, never the model.
    assert not isinstance(client.classify(404, openai_style, {}, operation="poll"), ModelRetired)


async def test_openai_sdk_against_the_gateway_creates_extends_edits_and_remixes(tmp_path):
    """The official client, pointed at the gateway; the gateway's sora channel passes the
    derived tasks to the upstream with the upstream's own ids."""
    openai = pytest.importorskip("openai")
    fake = FakeVideosAPI()
    async with served(fake) as up, run_gateway(config(channel(up)), tmp_path) as gw:
        key = await gw.token()
        sdk = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                source = await sdk.videos.create_and_poll(prompt="a cat", model="sora-2", seconds="8")
                assert source.status == "completed", source
                # The SDK's extend/edit with {"id": ...} raise before sending (client-notes):
                # its generic request with the documented JSON body is the working call.
                ext = await sdk.post(
                    "/videos/extensions",
                    body={"prompt": "the cat jumps", "seconds": "4", "video": {"id": source.id}},
                    cast_to=openai.types.Video,
                )
                edit = await sdk.post(
                    "/videos/edits",
                    body={"prompt": "make it blue", "video": {"id": source.id}},
                    cast_to=openai.types.Video,
                )
                remix = await sdk.videos.remix(source.id, prompt="at night")
                for video in (ext, edit, remix):
                    done = await sdk.videos.poll(video.id)
                    assert done.status == "completed", done
                assert ext.seconds == "4" and remix.remixed_from_video_id == source.id
                content = await sdk.videos.download_content(ext.id)
                assert await content.aread() == sample_mp4()
        finally:
            await sdk.close()
    upstream_source = next(iter(fake.videos))
    [ex] = fake.extensions()
    assert ex.json == {"prompt": "the cat jumps", "seconds": "4", "video": {"id": upstream_source}}
    [ed] = fake.edits()
    assert ed.json == {"prompt": "make it blue", "video": {"id": upstream_source}}
    [rx] = fake.remixes()
    assert rx.path == f"/v1/videos/{upstream_source}/remix" and rx.json == {"prompt": "at night"}


async def test_derived_tasks_an_upstream_does_not_serve_are_400s(tmp_path):
    """vLLM-Omni and SGLang have no remix/extensions/edits routes: declared with
    ``options.operations`` they are refused before any call; undeclared, the upstream's
    bare 404 becomes a 400 that says so. Either way the charge is refunded."""
    declared, bare = FakeVideosAPI(derived=False), FakeVideosAPI(derived=False)
    async with served(declared) as a, served(bare) as b:
        cases = ((declared, channel(a, options={"operations": []})), (bare, channel(b)))
        for i, (fake, ch) in enumerate(cases):
            async with run_gateway(config(ch), tmp_path / str(i)) as gw:
                key = await gw.token("t", quota=100)
                _, source = await gw.post("/v1/videos", key, json={"model": "sora-2", "prompt": "a cat"})
                assert (await gw.wait(source["id"], key))["status"] == "completed"
                used = (await gw.gateway.store.token("t")).used
                status, err = await gw.post(
                    "/v1/videos/extensions",
                    key,
                    json={"prompt": "more", "seconds": "4", "video": {"id": source["id"]}},
                )
                assert status == 400 and err["error"]["param"] == "video", err
                status, err = await gw.post(f"/v1/videos/{source['id']}/remix", key, json={"prompt": "again"})
                assert status == 400 and err["error"]["param"] == "video_id", err
                assert (await gw.gateway.store.token("t")).used == used
            derived_calls = fake.extensions() + fake.remixes()
            if fake is declared:
                assert derived_calls == []
            else:
                assert [r.status for r in derived_calls] == [404, 404]
                assert "does not serve" in err["error"]["message"]


async def test_a_form_based_client_edit_with_video_id_reaches_the_upstream_as_json(tmp_path):
    """A multipart body with ``video[id]`` (a form client's nested object) on the
    gateway's edits route: the upstream gets the documented JSON with its own id."""
    fake = FakeVideosAPI()
    async with served(fake) as up, run_gateway(config(channel(up)), tmp_path) as gw:
        key = await gw.token()
        _, source = await gw.post("/v1/videos", key, json={"model": "sora-2", "prompt": "a cat"})
        assert (await gw.wait(source["id"], key))["status"] == "completed"
        form = aiohttp.FormData()
        form.add_field("prompt", "make it red")
        form.add_field("video[id]", source["id"])
        status, edit = await gw.post("/v1/videos/edits", key, data=form)
        assert status == 200, edit
        assert (await gw.wait(edit["id"], key))["status"] == "completed"
    [ed] = fake.edits()
    assert ed.json == {"prompt": "make it red", "video": {"id": next(iter(fake.videos))}}
