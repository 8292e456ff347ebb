"""Kling's protocol of December 2026 (issue 14), over HTTP through the whole gateway.

API keys beside AK/SK, the 2026 models and their rules, the multi-image, omni and extend
families, batch polling through the list endpoints, and usage from Kling's deduction.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import subprocess
import sys
import time
from typing import Any

import pytest

from vidgate import Channel
from vidgate.testing import force_task_state, run_gateway, serve_app, tiny_png
from vidgate.worker import Worker
from vidgate_kling import plugin as kling_plugin
from vidgate_kling.auth import RENEW_MARGIN, cached_token, mint_token
from vidgate_kling.fake import VIDEO, FakeKling

AK, SK, API_KEY = "ak-2026", "sk-2026-secret", "kling-key-2026-abcdef"
PNG = tiny_png(512, 512)
B64 = base64.b64encode(PNG).decode()
MODELS = ("kling-v1", "kling-v1-6", "kling-v3", "kling-v3-omni", "kling-video-o1", "kling-v2-6")
CREDENTIALS = {"api_key": {"api_key": API_KEY}, "ak_sk": {"access_key": AK, "secret_key": SK}}


def config(
    fake_url: str, credentials: dict[str, str], worker: dict[str, Any] | None = None, **options: Any
) -> dict[str, Any]:
    return {
        "worker": worker or {},
        "plugins": {"enabled": ["kling"]},
        "channels": [
            {
                "name": "k",
                "vendor": "kling",
                "base_url": fake_url,
                "credentials": credentials,
                "options": {"poll_interval": 0.05, **options},
            }
        ],
        "network": {"allow_image_networks": ["127.0.0.0/8"]},
        "models": {m: {"price_per_second": 0.1} for m in MODELS},
    }


@contextlib.asynccontextmanager
async def env(
    tmp_path,
    style: str = "ak_sk",
    fake: FakeKling | None = None,
    run_worker: bool = True,
    worker: dict[str, Any] | None = None,
    **options: Any,
):
    fake = fake or FakeKling(access_key=AK, secret_key=SK, api_key=API_KEY, polls_to_finish=2)
    async with serve_app(fake.app) as served:
        fake.base_url = served.url
        cfg = config(served.url, CREDENTIALS[style], worker, **options)
        async with run_gateway(cfg, tmp_path, run_worker=run_worker) as gw:
            yield gw, fake


async def create(gw, key, **body: Any) -> dict[str, Any]:
    status, task = await gw.post("/v1/video/generations", key, json={"model": "kling-v1-6", **body})
    assert status == 200, task
    return task  # type: ignore[no-any-return]


async def completed(gw, key, task) -> dict[str, Any]:
    done = await gw.wait(task["id"], key)
    assert done["status"] == "completed", done
    status, content = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
    assert status == 200 and content == VIDEO
    return done  # type: ignore[no-any-return]


@pytest.mark.parametrize("style", ["api_key", "ak_sk"])
async def test_both_credential_styles_complete_t2v_and_i2v(tmp_path, style):
    async with env(tmp_path, style) as (gw, fake):
        key = await gw.token()
        t2v = await create(gw, key, prompt="a fox in the snow")
        i2v = await create(gw, key, prompt="the picture moves", image="data:image/png;base64," + B64)
        await completed(gw, key, t2v)
        await completed(gw, key, i2v)
        assert [r.path for r in fake.creates()] == ["/v1/videos/text2video", "/v1/videos/image2video"]
        assert fake.creates("image2video")[0].json["image"] == B64  # raw base64, no data: prefix
        calls = [r for r in fake.requests if r.path.startswith("/v1/")]
        assert calls and all(r.code == 0 for r in calls)
        for r in calls:
            scheme, _, token = r.headers["authorization"].partition(" ")
            assert scheme == "Bearer"
            if style == "api_key":
                assert token == API_KEY
            else:
                assert token.count(".") == 2 and API_KEY not in token  # a JWT from AK/SK


async def test_wrong_api_key_takes_the_channel_out(tmp_path):
    fake = FakeKling(access_key=AK, secret_key=SK, api_key="another-key")
    async with env(tmp_path, "api_key", fake=fake) as (gw, fake):
        key = await gw.token()
        status, body = await gw.post("/v1/video/generations", key, json={"model": "kling-v1-6", "prompt": "x"})
        assert status == 503, body
        # An API key cannot be renewed: one call, no retry on the same channel.
        assert [c.code for c in fake.creates()] == [1002]


def test_validate_channel_names_what_is_missing():
    def problems(**creds: str) -> list[str]:
        return kling_plugin.validate_channel(Channel(name="k", vendor="kling", credentials=creds))

    assert problems(api_key="k") == []
    assert problems(access_key="a", secret_key="s") == []
    assert problems(api_key="k", access_key="a") == []  # the key wins; the lone AK is unused
    (neither,) = problems()
    assert neither.startswith("credentials.api_key:") and "access_key" in neither and "secret_key" in neither
    (only_ak,) = problems(access_key="a")
    assert only_ak.startswith("credentials.secret_key:")
    (only_sk,) = problems(secret_key="s")
    assert only_sk.startswith("credentials.access_key:")


def test_check_config_reports_missing_credentials(tmp_path):
    path = tmp_path / "vidgate.toml"
    path.write_text(
        '[plugins]\nenabled = ["kling"]\n'
        '[[channels]]\nname = "ak-only"\nvendor = "kling"\n[channels.credentials]\naccess_key = "a"\n'
        '[[channels]]\nname = "none"\nvendor = "kling"\n'
        '[[channels]]\nname = "key"\nvendor = "kling"\n[channels.credentials]\napi_key = "k"\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "vidgate.cli", "check-config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1
    assert "channels[0].credentials.secret_key: required by vendor 'kling'" in out.stderr
    assert "channels[1].credentials.api_key: required by vendor 'kling'" in out.stderr
    assert "channels[2]" not in out.stderr


def test_jwt_is_renewed_before_it_expires():
    """A render outlives one token: the cached JWT is replaced while still valid, once
    less than RENEW_MARGIN seconds are left, so no poll is ever sent with a dead token."""
    state: dict[str, Any] = {}
    now = 1_800_000_000.0
    first = cached_token(state, AK, SK, now=now)
    assert cached_token(state, AK, SK, now=now + 1800 - RENEW_MARGIN - 1) == first
    later = cached_token(state, AK, SK, now=now + 1800 - RENEW_MARGIN + 1)
    assert later != first and state["kling_jwt"]["exp"] == int(now + 1800 - RENEW_MARGIN + 1) + 1800
    assert mint_token(AK, SK, now)[0] == first


async def test_kling_v3_makes_10_seconds(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token(quota=100)
        task = await create(gw, key, model="kling-v3", prompt="a long take", seconds=10, metadata={"sound": "on"})
        done = await completed(gw, key, task)
        (body,) = [c.json for c in fake.creates()]
        assert body["model_name"] == "kling-v3" and body["duration"] == "10" and body["sound"] == "on"
        assert done["seconds"] == "10"
        # Settled on what Kling deducted (std, 10 s: 4 units) = the credits fact.
        assert done["usage"]["credits"] == 4.0
        assert fake.tasks["text2video"][next(iter(fake.tasks["text2video"]))]["final_unit_deduction"] == "4"


async def test_kling_v3_omni_first_frame_and_reference_image(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token(quota=100)
        task = await create(
            gw,
            key,
            model="kling-v3-omni",
            prompt="<<<image_2>>> walks into the scene of <<<image_1>>>",
            image="data:image/png;base64," + B64,
            images=["https://images.example.com/character.png"],
            seconds=8,
        )
        done = await completed(gw, key, task)
        (create_call,) = fake.creates()
        assert create_call.path == "/v1/videos/omni-video"
        body = create_call.json
        assert body["model_name"] == "kling-v3-omni" and body["duration"] == "8"
        assert body["image_list"] == [
            {"image": B64, "type": "first_frame"},
            {"image": "https://images.example.com/character.png"},
        ]
        assert "aspect_ratio" not in body  # the first frame decides the shape
        # omni defaults to pro (1080p); the first frame is square.
        assert done["size"] == "1080x1080"


async def test_omni_reference_video_and_roles(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token(quota=100)
        task = await create(
            gw,
            key,
            model="kling-video-o1",
            prompt="in the style of <<<video_1>>>",
            images=[B64, B64],
            input_reference="https://videos.example.com/style.mp4",
            size="9:16",
            metadata={"image_roles": ["reference", "reference"], "mode": "std"},
        )
        done = await completed(gw, key, task)
        body = fake.creates()[0].json
        assert body["video_list"] == [{"video_url": "https://videos.example.com/style.mp4", "refer_type": "feature"}]
        assert body["image_list"] == [{"image": B64}, {"image": B64}]
        assert body["aspect_ratio"] == "9:16" and body["mode"] == "std"
        assert "image_roles" not in body
        assert done["size"] == "720x1280"


async def test_three_images_on_v1_6_go_to_multi_image2video(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token(quota=100)
        urls = [f"https://images.example.com/{n}.png" for n in ("a", "b")]
        task = await create(gw, key, prompt="the three of them dance", images=[B64, *urls], size="16:9")
        await completed(gw, key, task)
        (create_call,) = fake.creates()
        assert create_call.path == "/v1/videos/multi-image2video"
        assert create_call.json["image_list"] == [{"image": B64}, {"image": urls[0]}, {"image": urls[1]}]
        assert create_call.json["aspect_ratio"] == "16:9" and create_call.json["model_name"] == "kling-v1-6"
        # Queried (or listed) under its own family only.
        polls = [r for r in fake.requests if r.method == "GET" and r.path.startswith("/v1/videos/")]
        assert polls and all(r.path.startswith("/v1/videos/multi-image2video") for r in polls)


async def test_two_images_as_references_with_multi_image(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token(quota=100)
        task = await create(gw, key, prompt="both", images=[B64, B64], metadata={"multi_image": True})
        await completed(gw, key, task)
        (create_call,) = fake.creates()
        assert create_call.path == "/v1/videos/multi-image2video" and "multi_image" not in create_call.json


async def test_extend_a_completed_task(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token(quota=100)
        source = await create(gw, key, prompt="a boat at sea", metadata={"mode": "pro", "negative_prompt": "rain"})
        await completed(gw, key, source)
        status, ext = await gw.post(
            "/v1/videos/extensions", key, json={"prompt": "the boat reaches the shore", "video": {"id": source["id"]}}
        )
        assert status == 200, ext
        done = await completed(gw, key, ext)
        assert done["derived_from"] == {"video_id": source["id"], "operation": "extend"}
        assert done["seconds"] == "5" and done["size"] == "1920x1080"  # the source's pro 1080p
        (kling_source,) = fake.tasks["text2video"].values()
        extend_call = fake.creates("video-extend")[0]
        assert extend_call.json == {
            "video_id": kling_source["task_result"]["videos"][0]["id"],
            "prompt": "the boat reaches the shore",
            "negative_prompt": "rain",
            "external_task_id": ext["id"],
        }
        (kling_ext,) = fake.tasks["video-extend"].values()
        assert kling_ext["task_info"]["parent_video"]["id"] == extend_call.json["video_id"]
        # Billed at the source's mode: pro 5 s = 3.5 units.
        assert done["usage"]["credits"] == 3.5
        # An extension of the extension: its Kling video id, under the extend family.
        status, again = await gw.post("/v1/videos/extensions", key, json={"prompt": "on", "video": {"id": ext["id"]}})
        assert status == 200, again
        await completed(gw, key, again)
        assert fake.creates("video-extend")[1].json["video_id"] == kling_ext["task_result"]["videos"][0]["id"]


async def test_extend_refusals(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token(quota=100)
        omni = await create(gw, key, model="kling-v3-omni", prompt="x", seconds=5)
        source = await create(gw, key, prompt="y", seconds=10)
        await completed(gw, key, omni)
        await completed(gw, key, source)
        status, body = await gw.post("/v1/videos/extensions", key, json={"prompt": "z", "video": {"id": omni["id"]}})
        assert status == 400 and body["error"]["param"] == "video", body
        status, body = await gw.post(
            "/v1/videos/extensions", key, json={"prompt": "z", "seconds": 10, "video": {"id": source["id"]}}
        )
        assert status == 400 and body["error"]["param"] == "seconds", body
        assert fake.creates("video-extend") == []
        # seconds 5 is what Kling adds: accepted for a 10 s source.
        status, body = await gw.post(
            "/v1/videos/extensions", key, json={"prompt": "z", "seconds": 5, "video": {"id": source["id"]}}
        )
        assert status == 200, body


async def test_extending_a_10_second_video_without_seconds_adds_5(tmp_path):
    """Kling always adds 4-5 s: an extension that leaves ``seconds`` out is made and billed
    as 5 s whatever the source's length (the core tells the plugin that ``seconds`` was not
    given; before, it filled in the source's 10 s and the plugin refused it)."""
    async with env(tmp_path) as (gw, fake):
        key = await gw.token(quota=100)
        source = await create(gw, key, prompt="y", seconds=10)
        await completed(gw, key, source)
        status, ext = await gw.post("/v1/videos/extensions", key, json={"prompt": "z", "video": {"id": source["id"]}})
        assert status == 200, ext
        done = await completed(gw, key, ext)
        assert done["seconds"] == "5" and done["usage"]["seconds"] == 5, done
        assert len(fake.creates("video-extend")) == 1


RULE_CASES = [
    ({"model": "kling-v2-master", "metadata": {"mode": "pro"}}, "metadata.mode"),
    ({"model": "kling-v2-6", "metadata": {"sound": "on"}}, "metadata.sound"),
    ({"model": "kling-v1", "metadata": {"sound": "on"}}, "metadata.sound"),
    ({"model": "kling-v2-5-turbo", "metadata": {"cfg_scale": 0.5}}, "metadata.cfg_scale"),
    ({"model": "kling-v1-6", "metadata": {"multi_shot": True}}, "metadata.multi_shot"),
    ({"model": "kling-v3", "seconds": 2}, "seconds"),
    ({"model": "kling-video-o1", "seconds": 12}, "seconds"),
    ({"model": "kling-v3-omni", "seconds": 16}, "seconds"),
    ({"model": "kling-v1-6", "seconds": 3}, "seconds"),
    ({"model": "kling-v3-omni", "input_reference": "data:video/mp4;base64,AAAA"}, "input_reference"),
    ({"model": "kling-v1-6", "input_reference": "https://e.example/v.mp4"}, "input_reference"),
    (
        {"model": "kling-v3-omni", "images": [B64, B64], "metadata": {"image_roles": ["reference", "end_frame"]}},
        "metadata.image_roles",
    ),
    ({"model": "kling-v3-omni", "images": [B64], "metadata": {"image_roles": []}}, "metadata.image_roles"),
    ({"model": "kling-v3-omni", "images": [B64] * 8}, "images"),
    (
        {"model": "kling-v3-omni", "images": [B64] * 5, "input_reference": "https://e.example/v.mp4"},
        "images",
    ),
    (
        {
            "model": "kling-v3-omni",
            "input_reference": "https://e.example/v.mp4",
            "metadata": {"sound": "on"},
        },
        "metadata.sound",
    ),
    ({"model": "kling-v1-6", "images": [B64, B64], "metadata": {"mode": "std"}}, "metadata.mode"),
    ({"model": "kling-v1-6", "metadata": {"image_list": []}}, "metadata.image_list"),
    ({"model": "kling-v1-6", "metadata": {"video_id": "1"}}, "metadata.video_id"),
    ({"model": "kling-v1", "images": [B64, B64], "metadata": {"multi_image": True}}, "images"),
]


async def test_model_rules_are_400s_naming_the_field(tmp_path):
    # One gateway for every case (each is a request; starting a gateway each costs more).
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        for body, param in RULE_CASES:
            status, answer = await gw.post("/v1/video/generations", key, json={"prompt": "x", **body})
            assert status == 400, (body, answer)
            assert answer["error"]["param"] == param, (body, answer)
        assert fake.creates() == []


async def test_fifty_in_flight_tasks_cost_a_few_list_calls_per_interval(tmp_path):
    """50 tasks (two families) each needing 3 observations: polled through the list
    endpoints, one call per family per round, never one call per task."""
    fake = FakeKling(access_key=AK, secret_key=SK, api_key=API_KEY, polls_to_finish=3)
    # Enough fetch slots that copying 50 results does not outlast the poll rounds.
    worker = {"concurrency": 64, "fetch_concurrency": 64}
    async with env(tmp_path, fake=fake, run_worker=False, worker=worker, poll_interval=0.3) as (gw, fake):
        key = await gw.token(quota=1000)
        bodies = [{"prompt": f"t2v {n}"} for n in range(40)] + [{"prompt": f"i2v {n}", "image": B64} for n in range(10)]
        ids = [t["id"] for t in await asyncio.gather(*(create(gw, key, **b) for b in bodies))]
        # Every task due now, as after a long interval; the worker starts afterwards.
        for task_id in ids:
            await gw.gateway.store.make_due(task_id)
        stop = asyncio.Event()
        worker = asyncio.create_task(Worker(gw.gateway).run(stop))
        try:
            done = [await gw.wait(i, key, timeout=30) for i in ids]
        finally:
            stop.set()
            await worker
        assert all(t["status"] == "completed" for t in done)
        lists = fake.lists()
        assert fake.queries() == []  # no task was polled on its own
        assert {r.path for r in lists} == {"/v1/videos/text2video", "/v1/videos/image2video"}
        assert all(r.query == {"pageNum": "1", "pageSize": "500"} for r in lists)
        # 3 rounds x 2 families (one spare round each): at most 8 calls for 150 observations.
        assert len(lists) <= 8, [(r.path, round(r.time, 2)) for r in lists]
        # Per poll interval: never more than one call per family.
        for r in lists:
            window = [x for x in lists if r.time <= x.time < r.time + 0.3]
            assert len(window) <= 2, [(x.path, round(x.time, 2)) for x in window]


async def test_poll_many_leaves_out_what_the_list_does_not_show(tmp_path):
    async with env(tmp_path, run_worker=False) as (gw, fake):
        key = await gw.token(quota=100)
        task = await create(gw, key, prompt="listed")
        record = await gw.gateway.store.get_task(task["id"])
        assert record is not None and record.handle is not None
        ch = gw.gateway.dispatcher.channels["k"]
        ctx = gw.gateway.context("", ch)
        ghost = {"task_id": "860000000000099999", "family": "text2video", "created_at": record.handle["created_at"]}
        answers = await kling_plugin.poll_many({record.vendor_task_id: record.handle, ghost["task_id"]: ghost}, ctx)
        assert set(answers) == {record.vendor_task_id}
        assert answers[record.vendor_task_id].status == "in_progress"
        # One short page: the ghost is not looked for on further pages.
        assert len(fake.lists()) == 1


async def test_extend_limits_three_minutes_and_thirty_days(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token(quota=100)
        source = await create(gw, key, prompt="a long road")
        await completed(gw, key, source)
        record = await gw.gateway.store.get_task(source["id"])
        assert record is not None and record.handle is not None and record.result is not None
        body = {"prompt": "further", "video": {"id": source["id"]}}
        # A chain already at 178 s: another 5 s would pass Kling's 3 minutes.
        await force_task_state(gw.gateway.store, source["id"], handle={**record.handle, "total_seconds": 178})
        status, answer = await gw.post("/v1/videos/extensions", key, json=body)
        assert status == 400 and answer["error"]["param"] == "video", answer
        # 31 days old: Kling has deleted it.
        old = int((time.time() - 31 * 24 * 3600) * 1000)
        await force_task_state(
            gw.gateway.store, source["id"], handle=record.handle, result={**record.result, "created_at": old}
        )
        status, answer = await gw.post("/v1/videos/extensions", key, json=body)
        assert status == 400 and "30 days" in answer["error"]["message"], answer
        assert fake.creates("video-extend") == []


async def test_omni_base_video_edit_is_settled_on_the_output_length(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token(quota=100)
        task = await create(
            gw,
            key,
            model="kling-v3-omni",
            prompt="make <<<video_1>>> snowy",
            input_reference="https://videos.example.com/source.mp4",
            metadata={"refer_type": "base", "keep_original_sound": "yes"},
        )
        done = await completed(gw, key, task)
        body = fake.creates("omni-video")[0].json
        assert body["video_list"] == [
            {"video_url": "https://videos.example.com/source.mp4", "refer_type": "base", "keep_original_sound": "yes"}
        ]
        assert "aspect_ratio" not in body and "image_list" not in body
        # The edit is as long as the input video (the fake's are 8 s), whatever was asked.
        assert done["usage"]["seconds"] == 8.0 and done["usage"]["credits"] == 5.6
