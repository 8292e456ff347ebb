"""End-to-end on Luma's Agents API surface: the whole gateway over HTTP, the luma plugin,
and the fake Agents API (``FakeLumaAgents``). Channels here leave ``options.surface`` unset
unless a test says otherwise: the Agents API is the default surface."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from vidgate.errors import ConfigError
from vidgate.testing import RunningGateway, run_gateway, tiny_png
from vidgate_luma.fake import FakeLumaAgents

IMG = "https://images.example/cat.png"
PNG = tiny_png(64, 64)
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
CLIP = "https://videos.example/clip.mp4"


def channel(fake: FakeLumaAgents, name: str = "luma-a", key: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "vendor": "luma",
        "base_url": fake.url,
        "credentials": {"api_key": key or fake.secret},
        "options": {"poll_interval": 0.05},
        **extra,
    }


def config(channels: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "plugins": {"enabled": []},
        "channels": channels,
        "network": {"max_retry_after_seconds": 0.2},
        "worker": {"max_backoff_seconds": 0.1},
        "models": {"ray-3.2": {"price_per_second": 0.1}, "ray-2": {"price_per_second": 0.1}},
        **extra,
    }


@contextlib.asynccontextmanager
async def env(
    tmp_path: Any,
    fake: FakeLumaAgents | None = None,
    channels: Callable[[FakeLumaAgents], list[dict[str, Any]]] | None = None,
    **extra: Any,
) -> AsyncIterator[tuple[RunningGateway, FakeLumaAgents, str]]:
    from vidgate_luma import plugin

    fake = fake or FakeLumaAgents()
    async with fake.serve():
        cfg = config(channels(fake) if channels else [channel(fake)], **extra)
        async with run_gateway(cfg, tmp_path, extra_plugins={"luma": plugin}) as gw:
            yield gw, fake, await gw.token("t", quota=100)


async def ledger_sum(gw: RunningGateway, task_id: str) -> int:
    rows = await gw.gateway.store.db.fetchall("SELECT amount FROM ledger WHERE task_id = ?", task_id)
    return sum(r["amount"] for r in rows)


async def completes_with_the_fakes_bytes(gw: RunningGateway, fake: FakeLumaAgents, key: str, task: dict) -> dict:
    done = await gw.wait(task["id"], key)
    assert done["status"] == "completed", done
    job = next(j for j in fake.jobs.values() if j.prompt == task["prompt"])
    status, body = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
    assert status == 200 and body == fake.result_bytes(job)
    return done  # type: ignore[no-any-return]


async def test_text_and_image_to_video_complete_with_the_fakes_bytes(tmp_path):
    async with env(tmp_path) as (gw, fake, key):
        bodies = [
            {"model": "ray-3.2", "prompt": "a greenhouse", "seconds": 10, "size": "1920x1080"},
            {"model": "ray-3.2", "prompt": "the cat turns", "images": [IMG, IMG + "?last"], "size": "9:16"},
            {"model": "ray-3.2", "prompt": "inline", "image": PNG_URL, "seconds": 10, "size": "21:9"},
            {"model": "ray-3.2", "prompt": "hdr keys", "images": [IMG, IMG, IMG], "metadata": {"hdr": True}},
        ]
        tasks = []
        for body in bodies:
            status, task = await gw.post("/v1/video/generations", key, json=body)
            assert status == 200, task
            tasks.append(task)
        done = [await completes_with_the_fakes_bytes(gw, fake, key, t) for t in tasks]
    assert [(d["seconds"], d["size"]) for d in done] == [
        ("10", "1920x1080"),
        ("5", "720x1280"),
        ("10", "1680x720"),
        ("5", "1280x720"),
    ]
    t2v, i2v, inline, hdr = (r.json for r in fake.creates())
    assert t2v == {
        "model": "ray-3.2",
        "type": "video",
        "prompt": "a greenhouse",
        "aspect_ratio": "16:9",
        "video": {"resolution": "1080p", "duration": "10s"},
    }
    assert i2v["video"] == {
        "resolution": "720p",
        "duration": "5s",
        "start_frame": {"url": IMG},
        "end_frame": {"url": IMG + "?last"},
    }
    # 10 s (or HDR) anchors go as keyframes on the 24 fps grid: the SDK's start/end
    # frames are the 5 s SDR surface.
    assert inline["aspect_ratio"] == "21:9"
    assert inline["video"]["keyframes"] == [{"data": base64.b64encode(PNG).decode(), "media_type": "image/png"}]
    assert inline["video"]["keyframe_indexes"] == [0]
    assert hdr["video"]["hdr"] is True and hdr["video"]["keyframe_indexes"] == [0, 60, 120]
    assert "start_frame" not in hdr["video"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"seconds": 9}, "seconds"),
        ({"size": "1000x1000"}, "size"),
        ({"size": "2:1"}, "size"),
        ({"size": "3840x2160"}, "size"),
        ({"metadata": {"resolution": "4k"}}, "metadata.resolution"),
        ({"seconds": 10, "metadata": {"loop": True}}, "metadata.loop"),
        ({"metadata": {"hdr": True, "resolution": "540p"}}, "metadata.hdr"),
        ({"metadata": {"exr_export": True}}, "metadata.exr_export"),
        ({"metadata": {"duration": "5s"}}, "metadata.duration"),
        ({"metadata": {"strength": "flex_1"}}, "metadata.strength"),
        ({"metadata": {"type": "video_reframe"}}, "metadata.type"),
        ({"prompt": "", "image": IMG}, "prompt"),
        ({"prompt": "x" * 6001}, "prompt"),
        ({"input_reference": CLIP}, "seconds"),
        ({"input_reference": CLIP, "seconds": 8, "size": "9:16", "image": IMG}, "image"),
        ({"model": "ray-2"}, "model"),
    ],
)
async def test_impossible_parameters_are_400_without_a_vendor_call(tmp_path, body, param):
    async with env(tmp_path) as (gw, fake, key):
        status, answer = await gw.post("/v1/video/generations", key, json={"model": "ray-3.2", "prompt": "x", **body})
    assert status == 400 and answer["error"]["param"] == param, answer
    assert fake.requests == []


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        ("generation_failed", "Internal model error during generation", "vendor_failed"),
        ("output_not_found", "Generated output could not be retrieved", "vendor_failed"),
        ("content_moderated", "Prompt violated content guidelines", "content_filtered"),
        ("corrupt_input", "An input media file could not be decoded", "vendor_rejected"),
    ],
)
async def test_a_vendor_failure_fails_with_its_reason_and_refunds(tmp_path, code, reason, expected):
    fake = FakeLumaAgents()
    fake.fail_next(code, reason)
    async with env(tmp_path, fake) as (gw, fake, key):
        _, task = await gw.post("/v1/video/generations", key, json={"model": "ray-3.2", "prompt": "a fox"})
        done = await gw.wait(task["id"], key)
        assert done["status"] == "failed"
        assert done["error"] == {"code": expected, "message": reason}
        assert await ledger_sum(gw, task["id"]) == 0


async def test_budget_exhausted_fails_refunded_and_takes_the_account_out_of_rotation(tmp_path):
    """Luma ran out of funds mid-generation: the task fails (refunded) and the channel is
    treated like an empty account, so the next task goes to the other channel."""
    broke, rich = FakeLumaAgents(), FakeLumaAgents()
    broke.fail_next("budget_exhausted", "Ran out of funds mid-generation")
    async with rich.serve():
        # Built once both fakes are served (their URLs are known then).
        both = lambda fake: [channel(fake, "luma-broke", priority=10), channel(rich, "luma-rich")]  # noqa: E731
        async with env(tmp_path, broke, both) as (gw, _, key):
            _, first = await gw.post("/v1/video/generations", key, json={"model": "ray-3.2", "prompt": "a fox"})
            done = await gw.wait(first["id"], key)
            assert done["status"] == "failed" and done["error"]["message"] == "Ran out of funds mid-generation"
            assert await ledger_sum(gw, first["id"]) == 0
            _, second = await gw.post("/v1/video/generations", key, json={"model": "ray-3.2", "prompt": "a bear"})
            assert (await gw.wait(second["id"], key))["status"] == "completed"
    assert [r.json["prompt"] for r in broke.creates()] == ["a fox"]
    assert [r.json["prompt"] for r in rich.creates()] == ["a bear"]
    # The failure is read once: that poll fails the task and takes the account out of rotation.
    assert len(broke.recorded("GET")) == 2  # processing, then failed


async def test_a_rate_limited_create_is_retried_and_completes(tmp_path):
    fake = FakeLumaAgents()
    fake.inject("create", "429", times=2)
    async with env(tmp_path, fake) as (gw, fake, key):
        _, task = await gw.post("/v1/video/generations", key, json={"model": "ray-3.2", "prompt": "patience"})
        await completes_with_the_fakes_bytes(gw, fake, key, task)
    assert [r.status for r in fake.creates()] == [429, 429, 201]


async def test_a_bad_key_and_an_empty_balance_fail_over_to_the_next_channel(tmp_path):
    empty = FakeLumaAgents()
    empty.balance_empty = True

    def three(fake: FakeLumaAgents) -> list[dict[str, Any]]:
        return [
            channel(fake, "luma-revoked", key="luma-api-revoked", priority=20),
            channel(empty, "luma-empty", priority=10),
            channel(fake, "luma-good"),
        ]

    async with empty.serve(), env(tmp_path, None, three) as (gw, fake, key):
        _, task = await gw.post("/v1/video/generations", key, json={"model": "ray-3.2", "prompt": "a fox"})
        await completes_with_the_fakes_bytes(gw, fake, key, task)
    assert [r.status for r in fake.creates()] == [401, 201]
    assert [r.status for r in empty.creates()] == [402]


async def test_an_edit_of_a_completed_task_is_a_video_edit_of_its_generation(tmp_path):
    async with env(tmp_path) as (gw, fake, key):
        body = {"model": "ray-3.2", "prompt": "a road", "seconds": 10, "size": "1920x1080"}
        _, source = await gw.post("/v1/video/generations", key, json=body)
        assert (await gw.wait(source["id"], key))["status"] == "completed"
        [source_job] = fake.jobs.values()
        status, edit = await gw.post(
            "/v1/videos/edits", key, json={"prompt": "at night", "video": {"id": source["id"]}}
        )
        assert status == 200, edit
        done = await completes_with_the_fakes_bytes(gw, fake, key, edit)
    assert done["derived_from"] == {"video_id": source["id"], "operation": "edit"}
    assert (done["seconds"], done["size"]) == ("10", "1920x1080")
    assert fake.creates()[-1].json == {
        "model": "ray-3.2",
        "type": "video_edit",
        "prompt": "at night",
        "video": {"resolution": "1080p"},
        "source": {"generation_id": source_job.id},
    }


async def test_an_extension_starts_from_the_source_generation(tmp_path):
    async with env(tmp_path) as (gw, fake, key):
        _, source = await gw.post("/v1/video/generations", key, json={"model": "ray-3.2", "prompt": "a river"})
        assert (await gw.wait(source["id"], key))["status"] == "completed"
        [source_job] = fake.jobs.values()
        for seconds in ("5", "10"):
            body = {"prompt": f"and on {seconds}", "seconds": seconds, "video": {"id": source["id"]}}
            status, ext = await gw.post("/v1/videos/extensions", key, json=body)
            assert status == 200, ext
            assert (await completes_with_the_fakes_bytes(gw, fake, key, ext))["seconds"] == seconds
        status, refused = await gw.post(
            "/v1/videos/extensions", key, json={"prompt": "more", "seconds": 9, "video": {"id": source["id"]}}
        )
        assert status == 400 and refused["error"]["param"] == "seconds", refused
    five, ten = (r.json["video"] for r in fake.creates()[1:])
    ref = {"generation_id": source_job.id}
    assert five == {"resolution": "720p", "duration": "5s", "start_frame": ref}
    assert ten == {"resolution": "720p", "duration": "10s", "keyframes": [ref], "keyframe_indexes": [0]}


async def test_an_input_video_is_edited_or_reframed(tmp_path):
    async with env(tmp_path) as (gw, fake, key):
        reframe = {
            "model": "ray-3.2",
            "prompt": "fill the sides",
            "input_reference": CLIP,
            "seconds": 8,
            "size": "9:16",
            "metadata": {
                "type": "video_reframe",
                "source_position": {"x_norm": 0, "y_norm": 0.2, "w_norm": 1, "h_norm": 0.6},
            },
        }
        edit = {
            "model": "ray-3.2",
            "prompt": "watercolour",
            "input_reference": CLIP,
            "seconds": 6,
            "size": "1280x720",
            "metadata": {"strength": "reimagine_2", "auto_controls": True},
        }
        for body in (reframe, edit):
            status, task = await gw.post("/v1/video/generations", key, json=body)
            assert status == 200, task
            done = await completes_with_the_fakes_bytes(gw, fake, key, task)
            assert done["seconds"] == str(body["seconds"])
    framed, edited = (r.json for r in fake.creates())
    assert framed["type"] == "video_reframe" and framed["aspect_ratio"] == "9:16"
    assert framed["source"] == {"url": CLIP, "media_type": "video/mp4"}
    assert framed["video"]["source_position"] == reframe["metadata"]["source_position"]
    assert edited["type"] == "video_edit" and "aspect_ratio" not in edited
    assert edited["video"] == {"resolution": "720p", "edit": {"strength": "reimagine_2", "auto_controls": True}}


async def test_cancel_ends_cancelled_without_a_vendor_call(tmp_path):
    """The Agents API has no cancel: the gateway stops tracking the task (ended
    ``cancelled``, ``refund_on_unconfirmed_cancel`` deciding), no request reaches Luma
    for it, and it is no longer polled."""
    async with env(tmp_path, billing={"refund_on_unconfirmed_cancel": "full"}) as (gw, fake, key):
        _, task = await gw.post("/v1/video/generations", key, json={"model": "ray-3.2", "prompt": "long [hold]"})
        await gw.wait(task["id"], key, until=("in_progress",))
        [held] = fake.jobs.values()
        status, answer = await gw.post(f"/v1/videos/{task['id']}/cancel", key)
        assert status == 200, answer
        assert (await gw.wait(task["id"], key))["status"] == "cancelled"
        polls_at_cancel = held.polls
        _, other = await gw.post("/v1/video/generations", key, json={"model": "ray-3.2", "prompt": "q"})
        await completes_with_the_fakes_bytes(gw, fake, key, other)
        assert held.polls == polls_at_cancel
        assert await ledger_sum(gw, task["id"]) == 0
        rows = await gw.gateway.store.db.fetchall("SELECT outcome, detail FROM attempts WHERE task_id = ?", task["id"])
    assert any(r["outcome"] == "cancel_refused" and "no cancel" in r["detail"] for r in rows), rows
    # Only creates, polls and result downloads ever reached Luma.
    assert {(r.method, r.path.split("/")[1]) for r in fake.requests} <= {
        ("POST", "generations"),
        ("GET", "generations"),
        ("GET", "_fake"),
    }
    assert not [r for r in fake.requests if r.method == "POST" and r.path != "/generations"]


async def test_surface_selection_and_a_bad_surface(tmp_path):
    """``options.surface`` picks the surface; an unknown value is a config error."""
    from vidgate_luma import plugin
    from vidgate_luma.fake import FakeLuma

    legacy, agents = FakeLuma(), FakeLumaAgents()
    async with legacy.serve(), agents.serve():
        chans = [
            {**channel(agents, "agents", models=["ray-3.2"]), "options": {"poll_interval": 0.05, "surface": "agents"}},
            {
                **channel(legacy, "dm", key=legacy.secret, models=["ray-2"]),
                "options": {"poll_interval": 0.05, "surface": "dream_machine"},
            },
        ]
        async with run_gateway(config(chans), tmp_path, extra_plugins={"luma": plugin}) as gw:
            key = await gw.token()
            for model in ("ray-3.2", "ray-2"):
                _, task = await gw.post("/v1/video/generations", key, json={"model": model, "prompt": model})
                assert (await gw.wait(task["id"], key))["status"] == "completed"
    assert [r.path for r in agents.creates()] == ["/generations"]
    assert [r.path for r in legacy.creates()] == ["/generations/video"]
    bad = {**channel(agents), "options": {"surface": "dreammachine"}}
    with pytest.raises(ConfigError, match="options.surface"):
        async with run_gateway(config([bad]), tmp_path / "bad", extra_plugins={"luma": plugin}):
            pass


async def test_channels_of_both_surfaces_without_models_each_take_their_own(tmp_path):
    """An Agents channel and a Dream Machine channel, neither listing `models`: each
    serves its own surface's models, so every request reaches a channel that can take it
    (before, the Agents channel also claimed ray-2 and answered 400 for it when picked)."""
    from vidgate_luma import plugin
    from vidgate_luma.fake import FakeLuma

    agents, dream = FakeLumaAgents(), FakeLuma()
    async with agents.serve(), dream.serve():
        dream_channel = channel(dream, "luma-dm", key=dream.secret)  # type: ignore[arg-type]
        dream_channel["options"]["surface"] = "dream-machine"
        # The Agents channel first in the order: ray-2 would be offered to it first.
        cfg = config([channel(agents, "luma-agents", priority=10), dream_channel])
        async with run_gateway(cfg, tmp_path, extra_plugins={"luma": plugin}) as gw:
            served = {name: ch.models for name, ch in gw.gateway.dispatcher.channels.items()}
            assert "ray-3.2" in served["luma-agents"] and "ray-2" not in served["luma-agents"]
            assert "ray-2" in served["luma-dm"] and "ray-3.2" not in served["luma-dm"]
            key = await gw.token("t", quota=100)
            for model in ("ray-2", "ray-3.2", "ray-2"):
                status, task = await gw.post("/v1/video/generations", key, json={"model": model, "prompt": model})
                assert status == 200, task
                assert (await gw.wait(task["id"], key))["status"] == "completed"
    assert [r.json["model"] for r in agents.creates()] == ["ray-3.2"]
    assert [r.json["model"] for r in dream.creates()] == ["ray-2", "ray-2"]
