"""Hardening of dispatch, breakers and idempotency (issue 11: findings 1, 2, 10, 11, 12, 20, 21)."""

import asyncio
import collections

import aiohttp
from scripted_vendor import Scripted, scripted_config

from vidgate import ChannelUnusable, TaskFailed, VendorPlugin, VendorRateLimited, VendorUnavailable
from vidgate.testing import run_gateway

SUBMIT = {"model": "scripted-1", "prompt": "a fox"}


def channels(*specs):
    return [{"name": name, "vendor": "scripted", **opts} for name, opts in specs]


class NoRecover(Scripted):
    """A vendor that cannot be asked whether it got a job (like Sora and Veo)."""

    recover = VendorPlugin.recover


class Blocking(Scripted):
    """Submits wait until ``release`` is set, then raise ``then`` (or succeed)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.then: Exception | None = None

    async def submit(self, job, ctx):
        self.entered.set()
        await self.release.wait()
        if self.then is not None:
            raise self.then
        return await super().submit(job, ctx)


class CrashesOnBadInput(Scripted):
    """A plugin bug that the input triggers: a prompt of "bad" raises before any request."""

    async def submit(self, job, ctx):
        if job.payload["prompt"] == "bad":
            raise UnicodeError("label too long")  # what getaddrinfo raises for a 64-char label
        if job.payload["prompt"] == "worse":
            raise ValueError("cannot map this")
        return await super().submit(job, ctx)


# -- finding 1: nothing a client sends counts against a breaker ----------------------------


async def test_plugin_crashes_caused_by_input_never_take_a_channel_out_of_rotation(tmp_path):
    vendor = CrashesOnBadInput()
    config = scripted_config(channels(("only", {"cooldown_seconds": 600})), server={"metrics": True})
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}, run_worker=False) as gw:
        attacker = await gw.token("attacker")
        victim = await gw.token("victim")
        for prompt in ["bad", "worse"] * 5:
            status, answer = await gw.post("/v1/video/generations", attacker, json={**SUBMIT, "prompt": prompt})
            assert status == 503, answer  # answered, not a 500
        status, _ = await gw.post("/v1/video/generations", victim, json=SUBMIT)
        assert status == 200
        _, text = await gw.get("/metrics", raw=True)
    assert 'vidgate_channel_open{channel="only"} 0' in text.decode()
    assert gw.gateway.dispatcher.status()[0]["state"] == "closed"


async def test_an_image_url_that_breaks_the_resolver_is_a_400_and_counts_nothing(tmp_path):
    """The reproduction: a 64-character DNS label makes getaddrinfo raise UnicodeError."""

    class FetchesImages(Scripted):
        async def submit(self, job, ctx):
            for url in job.payload.get("images", []):
                await ctx.fetch_image(url, "image")
            return await super().submit(job, ctx)

        def map_request(self, request, model, channel):
            job = super().map_request(request, model, channel)
            job.payload["images"] = [img.url for img in request.images if img.url]
            return job

    vendor = FetchesImages()
    config = scripted_config(channels(("only", {"cooldown_seconds": 600})))
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}, run_worker=False) as gw:
        attacker, victim = await gw.token("attacker"), await gw.token("victim")
        for _ in range(4):
            body = {**SUBMIT, "image": "http://" + "a" * 64 + ".example/x.png"}
            status, answer = await gw.post("/v1/video/generations", attacker, json=body)
            assert status == 400 and answer["error"]["param"] == "image", answer
        assert (await gw.post("/v1/video/generations", victim, json=SUBMIT))[0] == 200


# -- finding 2: every outcome of a half-open probe resolves it -----------------------------


async def _open_then_probe(gw, vendor, probe_error, key):
    """Open ``main`` with an account error, let the cool-down pass, and probe with ``probe_error``."""
    vendor.submit_errors["main"] = collections.deque([ChannelUnusable("no balance")])
    assert (await gw.post("/v1/video/generations", key, json=SUBMIT))[0] in (200, 503)
    assert gw.gateway.dispatcher.status()[0]["state"] == "open"
    await asyncio.sleep(0.25)
    assert gw.gateway.dispatcher.status()[0]["state"] == "half-open"
    if probe_error is not None:
        vendor.submit_errors["main"] = collections.deque([probe_error])
    return await gw.post("/v1/video/generations", key, json=SUBMIT)


def _probe_config(**main):
    return scripted_config(
        channels(("main", {"priority": 10, "cooldown_seconds": 0.2, **main}), ("spare", {"priority": 0})),
        network={"submit_retries": 0},
        server={"metrics": True},
    )


async def test_a_probe_that_is_rate_limited_hands_the_probe_on(tmp_path):
    vendor = Scripted()
    async with run_gateway(_probe_config(), tmp_path, extra_plugins={"scripted": vendor}, run_worker=False) as gw:
        key = await gw.token()
        status, _ = await _open_then_probe(gw, vendor, VendorRateLimited("slow down"), key)
        assert status == 200 and vendor.submitted[-1][0] == "spare"
        _, text = await gw.get("/metrics", raw=True)
        assert 'vidgate_channel_breaker_state{channel="main",state="half_open"} 1' in text.decode()
        assert 'vidgate_channel_probing{channel="main"} 0' in text.decode()
        # The next request is the probe; its success closes the breaker.
        assert (await gw.post("/v1/video/generations", key, json=SUBMIT))[0] == 200
        assert vendor.submitted[-1][0] == "main"
        _, text = await gw.get("/metrics", raw=True)
    assert 'vidgate_channel_breaker_state{channel="main",state="closed"} 1' in text.decode()
    assert 'vidgate_channel_open{channel="main"} 0' in text.decode()


async def test_a_probe_whose_task_the_vendor_fails_closes_the_breaker(tmp_path):
    vendor = Scripted()
    async with run_gateway(_probe_config(), tmp_path, extra_plugins={"scripted": vendor}, run_worker=False) as gw:
        key = await gw.token()
        status, _ = await _open_then_probe(gw, vendor, TaskFailed("moderated", code="content_policy"), key)
        assert status == 400
        assert gw.gateway.dispatcher.status()[0]["state"] == "closed"
        assert (await gw.post("/v1/video/generations", key, json=SUBMIT))[0] == 200
        assert vendor.submitted[-1][0] == "main"


async def test_a_probe_that_crashes_the_plugin_hands_the_probe_on(tmp_path):
    vendor = Scripted()
    async with run_gateway(_probe_config(), tmp_path, extra_plugins={"scripted": vendor}, run_worker=False) as gw:
        key = await gw.token()
        status, _ = await _open_then_probe(gw, vendor, KeyError("oops"), key)
        assert status == 200 and vendor.submitted[-1][0] == "spare"
        assert (await gw.post("/v1/video/generations", key, json=SUBMIT))[0] == 200
        assert vendor.submitted[-1][0] == "main"


async def test_a_probe_that_fails_reopens_the_breaker(tmp_path):
    vendor = Scripted()
    async with run_gateway(_probe_config(), tmp_path, extra_plugins={"scripted": vendor}, run_worker=False) as gw:
        key = await gw.token()
        status, _ = await _open_then_probe(gw, vendor, VendorUnavailable("502", maybe_received=False), key)
        assert status == 200 and vendor.submitted[-1][0] == "spare"
        assert gw.gateway.dispatcher.status()[0]["state"] == "open"


async def test_a_half_open_channel_skipped_for_its_limits_keeps_its_probe_free(tmp_path):
    vendor = Scripted()
    config = _probe_config(rate_per_minute=1)
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}, run_worker=False) as gw:
        key = await gw.token()
        # The failed submit used main's one request of this minute: the probe is skipped.
        status, _ = await _open_then_probe(gw, vendor, None, key)
        assert status == 200 and vendor.submitted[-1][0] == "spare"
        state = gw.gateway.dispatcher.status()[0]
        assert state["state"] == "half-open" and state["probing"] is False


async def test_a_probe_whose_caller_is_cancelled_hands_the_probe_on(tmp_path):
    vendor = Blocking()
    vendor.release.set()
    async with run_gateway(_probe_config(), tmp_path, extra_plugins={"scripted": vendor}, run_worker=False) as gw:
        key = await gw.token()
        vendor.submit_errors["main"] = collections.deque([ChannelUnusable("no balance")])
        await gw.post("/v1/video/generations", key, json=SUBMIT)
        await asyncio.sleep(0.25)
        vendor.release.clear()
        vendor.entered.clear()
        # The probe's caller is cancelled while the vendor call is in flight (a shutdown,
        # or a server that cancels handlers of clients that hung up).
        from vidgate.request import parse_request

        token = await gw.gateway.authenticate(f"Bearer {key}")
        caller = asyncio.create_task(gw.gateway.submit(token, parse_request(SUBMIT)))
        await vendor.entered.wait()
        assert gw.gateway.dispatcher.status()[0]["probing"] is True
        caller.cancel()
        await asyncio.gather(caller, return_exceptions=True)
        assert gw.gateway.dispatcher.status()[0]["probing"] is False
        vendor.release.set()
        assert (await gw.post("/v1/video/generations", key, json=SUBMIT))[0] == 200
        assert vendor.submitted[-1][0] == "main"


async def test_the_probe_is_a_lease_that_expires(tmp_path):
    vendor = Scripted()
    async with run_gateway(_probe_config(), tmp_path, extra_plugins={"scripted": vendor}, run_worker=False) as gw:
        dispatcher = gw.gateway.dispatcher
        dispatcher.failed("main", "no balance", account=True)
        later = dispatcher.breakers["main"].open_until + 0.01
        ticket = dispatcher.admit("main", now=later)
        assert ticket  # the probe, never ended by its holder (a path nobody foresaw)
        assert dispatcher.admit("main", now=later + 1) is None
        assert dispatcher.admit("main", now=later + dispatcher.probe_lease + 1)


# -- finding 10: concurrent submits with one key, both stores ------------------------------


async def test_concurrent_submits_with_one_key_all_replay_one_task(tmp_path, store_url):
    vendor = Scripted()
    config = scripted_config(store={"url": store_url})  # unpriced: nothing locks the rows apart
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}, run_worker=False) as gw:
        key = await gw.token()
        headers = {"Idempotency-Key": "same"}
        answers = await asyncio.gather(
            *(gw.post("/v1/video/generations", key, json=SUBMIT, headers=headers) for _ in range(50))
        )
    assert [status for status, _ in answers] == [200] * 50, [a for a in answers if a[0] != 200][:3]
    assert len({task["id"] for _, task in answers}) == 1
    assert len(vendor.submitted) == 1


# -- finding 11: a replay never answers 200 for a task that then disappears -----------------


async def test_a_replay_during_a_failing_submit_gets_the_same_error(tmp_path):
    vendor = Blocking()
    vendor.then = VendorUnavailable("down", maybe_received=False)
    config = scripted_config(channels(("only", {})))
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}, run_worker=False) as gw:
        key = await gw.token()
        headers = {"Idempotency-Key": "k"}
        first = asyncio.create_task(gw.post("/v1/video/generations", key, json=SUBMIT, headers=headers))
        await vendor.entered.wait()
        replay = asyncio.create_task(gw.post("/v1/video/generations", key, json=SUBMIT, headers=headers))
        await asyncio.sleep(0.1)
        assert not replay.done()  # it waits for the first request's outcome
        vendor.release.set()
        (status_a, a), (status_b, b) = await first, await replay
        assert status_a == status_b == 503 and a == b
        # A 5xx is not kept for the key: a later retry is a new attempt, which can succeed.
        vendor.then = None
        status, task = await gw.post("/v1/video/generations", key, json=SUBMIT, headers=headers)
        assert status == 200
        assert (await gw.get(f"/v1/videos/{task['id']}", key))[0] == 200


async def test_a_replay_of_a_rejected_submit_replays_the_400(tmp_path):
    vendor = Scripted()
    vendor.submit_errors["only"] = collections.deque([TaskFailed("moderated", code="content_policy")])
    config = scripted_config(channels(("only", {})))
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}, run_worker=False) as gw:
        key = await gw.token()
        headers = {"Idempotency-Key": "k"}
        first = await gw.post("/v1/video/generations", key, json=SUBMIT, headers=headers)
        again = await gw.post("/v1/video/generations", key, json=SUBMIT, headers=headers)
    assert first[0] == again[0] == 400 and first[1] == again[1]
    assert first[1]["error"]["code"] == "content_policy"
    assert vendor.submitted == []


# -- finding 12: an unclear submit is never sent to a second channel ------------------------


async def test_a_timed_out_submit_without_recover_is_not_sent_elsewhere(tmp_path):
    vendor = NoRecover()
    vendor.lose_answers = 1  # the vendor creates the job, the answer times out
    config = scripted_config(channels(("a", {"priority": 10}), ("b", {"priority": 0})))
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}, run_worker=False) as gw:
        key = await gw.token("payer", quota=10)
        status, answer = await gw.post("/v1/video/generations", key, json=SUBMIT)
        assert status == 503 and answer["error"]["code"] == "vendor_unconfirmed"
        assert (await gw.gateway.store.token("payer")).used == 0
    assert [ch for ch, _ in vendor.submitted] == ["a"]  # never two vendor jobs for one task


async def test_a_refused_connection_fails_over(tmp_path):
    """Certainly not received: a real refused connection, classified by the core helper."""
    from vidgate import request_maybe_received

    class Refused(NoRecover):
        async def submit(self, job, ctx):
            if ctx.channel.name == "a":
                try:
                    async with ctx.http.get("http://127.0.0.1:9/", timeout=ctx.timeout):
                        pass
                except (aiohttp.ClientError, OSError) as exc:
                    raise VendorUnavailable("refused", maybe_received=request_maybe_received(exc)) from None
            return await super().submit(job, ctx)

    vendor = Refused()
    config = scripted_config(channels(("a", {"priority": 10}), ("b", {"priority": 0})))
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}, run_worker=False) as gw:
        key = await gw.token()
        assert (await gw.post("/v1/video/generations", key, json=SUBMIT))[0] == 200
    assert [ch for ch, _ in vendor.submitted] == ["b"]


# -- findings 20 and 21 ----------------------------------------------------------------------


async def test_a_remix_idempotency_key_covers_the_source_video(tmp_path):
    vendor = Scripted()
    vendor.polls_to_finish = 1
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        ids = []
        for prompt in ("a", "b"):
            _, task = await gw.post("/v1/videos", key, json={**SUBMIT, "prompt": prompt})
            assert (await gw.wait(task["id"], key))["status"] == "completed"
            ids.append(task["id"])
        headers = {"Idempotency-Key": "remix-1"}
        status, remix_a = await gw.post(f"/v1/videos/{ids[0]}/remix", key, json={"prompt": "red"}, headers=headers)
        assert status == 200 and remix_a["remixed_from_video_id"] == ids[0]
        status, again = await gw.post(f"/v1/videos/{ids[0]}/remix", key, json={"prompt": "red"}, headers=headers)
        assert status == 200 and again["id"] == remix_a["id"]
        status, other = await gw.post(f"/v1/videos/{ids[1]}/remix", key, json={"prompt": "red"}, headers=headers)
        assert status == 409 and other["error"]["code"] == "idempotency_key_reused"


async def test_remix_of_in_a_unified_body_does_not_skip_the_prompt_rule(tmp_path):
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": Scripted()}, run_worker=False) as gw:
        key = await gw.token()
        status, answer = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "remix_of": "x"})
    assert status == 400 and answer["error"]["param"] == "prompt"
