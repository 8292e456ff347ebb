"""The short-lived cache of key lookups (auth.TokenCache): a token revoked, expired or
limited is still refused, at once in this process and within ``auth_cache_seconds`` when
another process (the CLI, another replica) changes it."""

import asyncio
import time

import pytest
from scripted_vendor import Scripted, scripted_config

from vidgate.auth import TokenCache, hash_key, key_hint
from vidgate.config import ConfigError, parse_config
from vidgate.store import Store, TokenRecord
from vidgate.testing import run_gateway

GOOD = {"model": "scripted-1", "prompt": "a red fox running through snow"}


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def config(**server):
    return scripted_config(server=server, models={"scripted-1": {"price_per_request": 1.0}})


async def other_process_store(gw) -> Store:
    """The store as `vidgate tokens ...` or another replica opens it: its own connections."""
    return await Store.open(gw.gateway.config.store.url)


async def test_revoked_elsewhere_is_refused_once_the_cache_ttl_passes(tmp_path):
    async with run_gateway(config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        clock = Clock()
        gw.gateway.store.token_cache = TokenCache(ttl=1.0, clock=clock)
        key = await gw.token("alice")
        assert (await gw.get("/v1/models", key))[0] == 200
        other = await other_process_store(gw)
        try:
            token = (await other.tokens_named("alice"))[0]
            assert await other.revoke_token(token.id)
        finally:
            await other.close()
        # Within the ttl this process may still answer from what it looked up...
        assert (await gw.get("/v1/models", key))[0] == 200
        clock.now += 1.0
        # ...and from then on the revocation holds, for every endpoint.
        status, body = await gw.get("/v1/models", key)
        assert status == 401 and "revoked" in body["error"]["message"]
        assert (await gw.post("/v1/videos", key, json=GOOD))[0] == 401


async def test_without_the_cache_a_revocation_elsewhere_is_refused_at_once(tmp_path):
    async with run_gateway(config(auth_cache_seconds=0), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token("alice")
        assert (await gw.get("/v1/models", key))[0] == 200
        other = await other_process_store(gw)
        try:
            assert await other.revoke_token((await other.tokens_named("alice"))[0].id)
        finally:
            await other.close()
        assert (await gw.get("/v1/models", key))[0] == 401


async def test_revoked_or_disabled_in_this_process_counts_at_once(tmp_path):
    async with run_gateway(config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        gw.gateway.store.token_cache = TokenCache(ttl=60.0, clock=Clock())  # never goes stale
        key = await gw.token("alice")
        status, task = await gw.post("/v1/videos", key, json=GOOD)
        assert status == 200
        assert (await gw.get(f"/v1/videos/{task['id']}", key))[0] == 200
        assert await gw.gateway.store.set_quota((await gw.gateway.store.tokens_named("alice"))[0].id, 0)
        status, body = await gw.post("/v1/videos", key, json=GOOD)
        assert status == 429 and body["error"]["type"] == "insufficient_quota"
        assert await gw.gateway.store.revoke_token((await gw.gateway.store.tokens_named("alice"))[0].id)
        for path in (f"/v1/videos/{task['id']}", "/v1/videos", "/v1/models"):
            status, body = await gw.get(path, key)
            assert status == 401 and "revoked" in body["error"]["message"], path


async def test_a_quota_lowered_elsewhere_is_enforced_at_once_despite_the_cache(tmp_path):
    """The balance is reserved atomically in the store, never taken from the cache."""
    async with run_gateway(config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        gw.gateway.store.token_cache = TokenCache(ttl=60.0, clock=Clock())
        key = await gw.token("alice", quota=5)
        assert (await gw.post("/v1/videos", key, json=GOOD))[0] == 200
        other = await other_process_store(gw)
        try:
            assert await other.set_quota((await other.tokens_named("alice"))[0].id, 1_000_000)  # 1 unit: used
        finally:
            await other.close()
        status, body = await gw.post("/v1/videos", key, json=GOOD)
        assert status == 429 and body["error"]["type"] == "insufficient_quota"


async def test_an_expired_token_is_refused_even_while_cached(tmp_path):
    async with run_gateway(config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        gw.gateway.store.token_cache = TokenCache(ttl=60.0, clock=Clock())
        _, key = await gw.gateway.create_token("alice", expires_at=time.time() + 0.3)
        assert (await gw.get("/v1/models", key))[0] == 200
        while time.time() < gw.gateway.store.token_cache.get(hash_key(key)).expires_at:
            await asyncio.sleep(0.05)
        status, body = await gw.get("/v1/models", key)
        assert status == 401 and "expired" in body["error"]["message"]


async def test_a_key_unknown_a_moment_ago_works_as_soon_as_it_is_created(tmp_path):
    async with run_gateway(config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        gw.gateway.store.token_cache = TokenCache(ttl=60.0, clock=Clock())
        key = "vg-" + "k" * 43
        assert (await gw.get("/v1/models", key))[0] == 401
        other = await other_process_store(gw)
        try:
            await other.create_token(
                name="late", key_hash=hash_key(key), key_hint=key_hint(key), group="default", quota=None
            )
        finally:
            await other.close()
        assert (await gw.get("/v1/models", key))[0] == 200


def record(token_id: str = "tok_1") -> TokenRecord:
    return TokenRecord(
        id=token_id,
        name="n",
        key_hash="h",
        key_hint="x",
        group="default",
        quota=None,
        used=0,
        models=None,
        expires_at=None,
        revoked_at=None,
        created_at=0.0,
    )


def test_cache_forgets_after_the_ttl():
    clock = Clock()
    cache = TokenCache(ttl=1.0, clock=clock)
    cache.put("h", record())
    got = cache.get("h")
    assert got is not None and got.id == "tok_1"
    clock.now += 0.999
    assert cache.get("h") is not None
    clock.now += 0.001
    assert cache.get("h") is None


def test_cache_with_ttl_zero_keeps_nothing_and_stays_bounded():
    cache = TokenCache(ttl=0)
    cache.put("h", record())
    assert cache.get("h") is None
    bounded = TokenCache(ttl=10.0)
    for i in range(TokenCache.MAX_ENTRIES + 5):
        bounded.put(f"h{i}", record(f"tok_{i}"))
    assert len(bounded._entries) <= TokenCache.MAX_ENTRIES
    assert bounded.get(f"h{TokenCache.MAX_ENTRIES + 4}") is not None


@pytest.mark.parametrize("seconds", [-1, 61])
def test_auth_cache_seconds_is_bounded(seconds):
    with pytest.raises(ConfigError, match="server.auth_cache_seconds: must be from 0 to 60"):
        parse_config({"server": {"auth_cache_seconds": seconds}})
