"""Derived tasks (remix, extend, edit) and extra artifacts, over HTTP, on the embedded
``local`` vendor and through the official openai SDK."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import aiohttp
import av
import numpy as np
import openai
import pytest
from scripted_vendor import Scripted

from vidgate import CallContext, Model, SourceTask, Submission, VendorJob
from vidgate.billing import to_micro
from vidgate.testing import run_gateway

pytest.importorskip("vidgate_local", reason="the local vendor plugin is not installed")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def config() -> dict[str, Any]:
    return {
        "plugins": {"enabled": ["local"]},
        "channels": [
            {"name": "local", "vendor": "local", "options": {"poll_interval": 0.1}},
            {"name": "scripted", "vendor": "scripted"},
        ],
    }


def frames(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data)) as container:
        return [f.to_ndarray(format="rgb24").astype(np.int16) for f in container.decode(video=0)]


def diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


async def test_extend_edit_and_artifacts_through_the_openai_sdk(tmp_path):
    async with run_gateway(config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token()
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)

        def sdk(fn, *args, **kwargs):
            return asyncio.to_thread(fn, *args, **kwargs)

        source = await sdk(client.videos.create, model="local-v1", prompt="a red fox", seconds="2", size="320x180")
        assert (await gw.wait(source.id, key))["status"] == "completed"
        source_bytes = (await sdk(client.videos.download_content, source.id)).content
        source_frames = frames(source_bytes)

        # Extend via the SDK's generic request with the documented JSON body.
        ext = await sdk(
            client.post,
            "/videos/extensions",
            body={"prompt": "it runs on", "seconds": "4", "video": {"id": source.id}},
            cast_to=openai.types.Video,
        )
        assert isinstance(ext, openai.types.Video) and ext.id != source.id and ext.seconds == "4"
        assert ext.size == "320x180" and ext.remixed_from_video_id is None
        # Multipart with video[id], as form-based clients send the nested object.
        form = aiohttp.FormData()
        form.add_field("prompt", "and on")
        form.add_field("seconds", "1")
        form.add_field("video[id]", source.id)
        status, ext2 = await gw.post("/v1/videos/extensions", key, data=form)
        assert status == 200, ext2
        assert ext2["derived_from"] == {"video_id": source.id, "operation": "extend"} and ext2["seconds"] == "1"
        # A video file upload: no bundled vendor takes one.
        with pytest.raises(openai.BadRequestError) as bad:
            await sdk(client.videos.extend, prompt="x", seconds="4", video=("clip.mp4", source_bytes, "video/mp4"))
        assert bad.value.param == "video"
        with pytest.raises(openai.BadRequestError) as bad:
            await sdk(client.videos.edit, prompt="x", video=("clip.mp4", source_bytes, "video/mp4"))
        assert bad.value.param == "video"

        edit = await sdk(
            client.post,
            "/videos/edits",
            body={"prompt": "EDITED", "video": {"id": source.id}},
            cast_to=openai.types.Video,
        )
        for task in (ext, edit):
            done = await gw.wait(task.id, key)
            assert done["status"] == "completed", done
        assert done["derived_from"] == {"video_id": source.id, "operation": "edit"}
        assert (await gw.wait(ext2["id"], key))["status"] == "completed"

        ext_frames = frames((await sdk(client.videos.download_content, ext.id)).content)
        assert abs(len(ext_frames) - 4 * 24) <= 1
        assert diff(ext_frames[0], source_frames[-1]) < 6  # continues where the source ended
        assert diff(ext_frames[0], source_frames[0]) > 2 * diff(ext_frames[0], source_frames[-1])

        edit_frames = frames((await sdk(client.videos.download_content, edit.id)).content)
        assert len(edit_frames) == len(source_frames)
        # The same frames, with the new prompt drawn in as a caption near the bottom.
        for new, old in ((edit_frames[5], source_frames[5]), (edit_frames[-1], source_frames[-1])):
            rows = np.abs(new - old).mean(axis=(1, 2))
            assert rows[:120].mean() < 4 and rows.max() > 10 and rows.argmax() > 135

        # Artifacts: thumbnail (SDK), last_frame (raw GET), spritesheet absent.
        thumb = (await sdk(client.videos.download_content, source.id, variant="thumbnail")).content
        assert thumb[:4] == b"RIFF" or thumb[:8] == b"\x89PNG\r\n\x1a\n" or thumb[:2] == b"\xff\xd8"
        async with gw.http.get(
            f"{gw.url}/v1/videos/{source.id}/content?variant=last_frame", headers={"Authorization": f"Bearer {key}"}
        ) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "image/png"
            png = await resp.read()
        [last] = frames(png)
        assert diff(last, source_frames[-1]) < 6
        with pytest.raises(openai.NotFoundError) as absent:
            await sdk(client.videos.download_content, source.id, variant="spritesheet")
        assert absent.value.param == "variant"
        client.close()


async def test_derived_task_rules(tmp_path):
    scripted = Scripted()
    async with run_gateway(config(), tmp_path, extra_plugins={"scripted": scripted}) as gw:
        key, other = await gw.token(), await gw.token()
        _, source = await gw.post(
            "/v1/videos", key, json={"model": "local-v1", "prompt": "p", "seconds": 1, "size": "128x72"}
        )
        body = {"prompt": "more", "seconds": "1", "video": {"id": source["id"]}}
        status, error = await gw.post("/v1/videos/extensions", key, json=body)
        if source["status"] != "completed":  # the render may already be done; usually it is not
            assert status == 409 and error["error"]["code"] == "video_not_finished", error
        await gw.wait(source["id"], key)

        for path in ("/v1/videos/extensions", "/v1/videos/edits"):
            status, error = await gw.post(path, other, json=body)  # another token's video
            assert status == 404, error
            for bad in ({"prompt": "x"}, {"prompt": "x", "video": "vid"}, {"prompt": "x", "video": {"id": 3}}):
                status, error = await gw.post(path, key, json=bad)
                assert status == 400 and error["error"]["param"] == "video", bad
            status, error = await gw.post(path, key, json={"video": {"id": source["id"]}})
            assert status == 400 and error["error"]["param"] == "prompt"
        status, error = await gw.post("/v1/videos/extensions", key, json={**body, "seconds": "four"})
        assert status == 400 and error["error"]["param"] == "seconds"
        status, error = await gw.post("/v1/videos/extensions", key, json={**body, "seconds": "99"})
        assert status == 400 and error["error"]["param"] == "seconds"

        # A model without extend/edit: 400 naming video.
        scripted.polls_to_finish = 10_000
        _, slow = await gw.post("/v1/videos", key, json={"model": "scripted-1", "prompt": "a fox"})
        status, error = await gw.post("/v1/videos/extensions", key, json={**body, "video": {"id": slow["id"]}})
        assert status == 409, error  # unfinished
        scripted.polls_to_finish = 1
        _, plain = await gw.post("/v1/videos", key, json={"model": "scripted-1", "prompt": "a fox"})
        await gw.wait(plain["id"], key)
        for path, op in (("/v1/videos/extensions", "extend"), ("/v1/videos/edits", "edit")):
            status, error = await gw.post(path, key, json={**body, "video": {"id": plain["id"]}})
            assert status == 400 and error["error"]["param"] == "video", error
            assert error["error"]["code"] == f"{op}_not_supported" and "scripted-1" in error["error"]["message"]

        # Idempotency: the key replays the same derived task; another source or operation is a conflict.
        headers = {"Idempotency-Key": "ext-1"}
        status, first = await gw.post("/v1/videos/extensions", key, json=body, headers=headers)
        assert status == 200, first
        status, again = await gw.post("/v1/videos/extensions", key, json=body, headers=headers)
        assert status == 200 and again["id"] == first["id"]
        status, error = await gw.post("/v1/videos/edits", key, json=body, headers=headers)
        assert status == 409 and error["error"]["code"] == "idempotency_key_reused"
        _, second = await gw.post(
            "/v1/videos", key, json={"model": "local-v1", "prompt": "q", "seconds": 1, "size": "128x72"}
        )
        await gw.wait(second["id"], key)
        status, error = await gw.post(
            "/v1/videos/extensions", key, json={**body, "video": {"id": second["id"]}}, headers=headers
        )
        assert status == 409 and error["error"]["code"] == "idempotency_key_reused"

        # Remix on local: a new render with the new prompt, same size; billed as a new task.
        status, remix = await gw.post(f"/v1/videos/{source['id']}/remix", key, json={"prompt": "at night"})
        assert status == 200, remix
        assert remix["remixed_from_video_id"] == source["id"]
        assert remix["derived_from"] == {"video_id": source["id"], "operation": "remix"}
        done = await gw.wait(remix["id"], key)
        assert done["status"] == "completed" and done["size"] == "128x72" and done["prompt"] == "at night"
        assert (await gw.wait(first["id"], key))["status"] == "completed"
        charged = {e.task_id for e in await gw.gateway.store.ledger() if e.kind == "charge"}
        assert {first["id"], remix["id"]} <= charged or not charged  # unpriced models charge nothing


class TwoTiers(Scripted):
    """Scripted with two models that remix and extend, priced differently by the operator."""

    models = (
        Model("tier-basic", vendor_model="b", seconds=(4, 8), default_seconds=4, operations={"remix", "extend"}),
        Model("tier-pro", vendor_model="p", seconds=(4, 8), default_seconds=4, operations={"remix", "extend"}),
        Model("tier-still", vendor_model="s", seconds=(4, 8), default_seconds=4),
    )

    async def derive(self, operation: str, source: SourceTask, job: VendorJob, ctx: CallContext) -> Submission:
        return await self.remix(source.handle, job, ctx)


async def test_a_derived_task_is_priced_for_the_model_it_runs_on(tmp_path):
    """A derived request naming another model runs on that model and is charged its price
    (before: the name was ignored, the task ran and was billed as the source's model)."""
    vendor = TwoTiers()
    vendor.polls_to_finish = 1
    conf = {
        "plugins": {"enabled": []},
        "channels": [{"name": "tiers", "vendor": "scripted"}, {"name": "other", "vendor": "scripted"}],
        "models": {"tier-basic": {"price": "0.10 * seconds"}, "tier-pro": {"price": "0.50 * seconds + 1"}},
    }
    async with run_gateway(conf, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token(quota=100)
        status, source = await gw.post("/v1/videos", key, json={"model": "tier-basic", "prompt": "a", "seconds": 4})
        assert status == 200, source
        assert (await gw.wait(source["id"], key))["usage"]["cost"] == 0.4
        ext = {"prompt": "on", "seconds": "8", "video": {"id": source["id"]}, "model": "tier-pro"}
        status, extended = await gw.post("/v1/videos/extensions", key, json=ext)
        assert status == 200, extended
        assert extended["model"] == "tier-pro"
        status, remix = await gw.post(
            f"/v1/videos/{source['id']}/remix", key, json={"prompt": "b", "model": "tier-pro"}
        )
        assert status == 200 and remix["model"] == "tier-pro", remix
        ledger = {e.task_id: e.amount for e in await gw.gateway.store.ledger() if e.kind == "charge"}
        assert ledger[extended["id"]] == to_micro(0.5 * 8 + 1)  # held at the pro price, not basic's 0.8
        assert ledger[remix["id"]] == to_micro(0.5 * 4 + 1)
        assert (await gw.wait(extended["id"], key))["usage"]["cost"] == 5.0
        # The model named must be one the source's channel serves that can do the operation.
        status, error = await gw.post("/v1/videos/extensions", key, json={**ext, "model": "tier-still"})
        assert status == 400 and error["error"]["param"] == "model", error
        assert error["error"]["code"] == "extend_not_supported"
        status, error = await gw.post("/v1/videos/extensions", key, json={**ext, "model": "no-such-model"})
        assert status == 400 and error["error"]["param"] == "model", error
        status, error = await gw.post("/v1/videos/extensions", key, json={**ext, "model": 7})
        assert status == 400 and error["error"]["param"] == "model", error
        limited = await gw.token(models=["tier-basic"])
        status, mine = await gw.post("/v1/videos", limited, json={"model": "tier-basic", "prompt": "c"})
        await gw.wait(mine["id"], limited)
        status, error = await gw.post("/v1/videos/extensions", limited, json={**ext, "video": {"id": mine["id"]}})
        assert status == 403 and error["error"]["param"] == "model", error
