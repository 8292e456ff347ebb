"""The store on SQLite and PostgreSQL: migrations, atomic charges, leases, refund-once."""

import asyncio
import time

import pytest

from vidgate.store import InsufficientQuota, Store, TaskRecord


def make_task(task_id, token_id, charge=0, **kw):
    now = time.time()
    fields = dict(
        id=task_id,
        token_id=token_id,
        model="m",
        vendor="v",
        channel="c",
        status="queued",
        phase="polling",
        created_at=now,
        updated_at=now,
        charge=charge,
        next_poll_at=now - 1,
    )
    fields.update(kw)
    return TaskRecord(**fields)


@pytest.fixture
async def store(store_url):
    s = await Store.open(store_url)
    yield s
    await s.close()


async def test_migrations_are_idempotent(store_url):
    a = await Store.open(store_url)
    await a.migrate()
    await a.close()
    b = await Store.open(store_url)
    assert await b.count_tokens() == 0
    await b.close()


async def test_charge_is_atomic_with_the_task(store):
    tok = await store.create_token(name="t", key_hash="h", key_hint="x", group="default", quota=100)
    await store.create_task(make_task("a", tok.id, charge=60))
    with pytest.raises(InsufficientQuota):
        await store.create_task(make_task("b", tok.id, charge=60))
    assert await store.get_task("b") is None
    assert (await store.token(tok.id)).used == 60


async def test_concurrent_charges_never_overspend(store):
    tok = await store.create_token(name="t", key_hash="h", key_hint="x", group="default", quota=1000)

    async def attempt(i):
        try:
            await store.create_task(make_task(f"t{i}", tok.id, charge=70))
            return True
        except InsufficientQuota:
            return False

    results = await asyncio.gather(*(attempt(i) for i in range(40)))
    assert sum(results) == 14
    assert (await store.token(tok.id)).used == 980
    assert sum(e.amount for e in await store.ledger()) == 980


async def test_refund_happens_once(store):
    tok = await store.create_token(name="t", key_hash="h", key_hint="x", group="default", quota=100)
    await store.create_task(make_task("a", tok.id, charge=40))
    results = await asyncio.gather(*(store.fail("a", code="vendor_failed", message="no") for _ in range(5)))
    assert results.count(True) == 1
    assert (await store.token(tok.id)).used == 0
    assert [e.kind for e in await store.ledger()] == ["charge", "refund"]
    # a finished task cannot be finished again, or completed afterwards
    assert not await store.complete("a", media={}, expires_at=0, settle_to=None)
    assert not await store.cancel("a", refund=True)


async def test_leases_are_exclusive_across_connections(store_url):
    a, b = await Store.open(store_url), await Store.open(store_url)
    try:
        tok = await a.create_token(name="t", key_hash="h", key_hint="x", group="default", quota=None)
        for i in range(30):
            await a.create_task(make_task(f"t{i}", tok.id))
        now = time.time()
        got_a, got_b = await asyncio.gather(
            a.lease_due("A", now=now, limit=20, lease_seconds=30), b.lease_due("B", now=now, limit=20, lease_seconds=30)
        )
        ids_a, ids_b = {t.id for t in got_a}, {t.id for t in got_b}
        assert not ids_a & ids_b
        assert len(ids_a | ids_b) == 30
        # nothing is due while leased; an expired lease comes back
        assert await a.lease_due("C", now=now, limit=50, lease_seconds=30) == []
        again = await a.lease_due("C", now=now + 31, limit=50, lease_seconds=30)
        assert len(again) == 30
    finally:
        await a.close()
        await b.close()


async def test_a_submitting_task_is_taken_over_only_after_the_grace(store):
    """A lapsed lease on a task still submitting may belong to a stalled process with its
    vendor call in flight: it is taken over ``submit_grace`` after the lease, not at once
    (a polling task is). The stalled holder's renewal then fails: the task is not its own."""
    tok = await store.create_token(name="t", key_hash="h", key_hint="x", group="default", quota=None)
    now = time.time()
    lapsed = dict(lease_owner="stalled", lease_until=now - 1)
    await store.create_task(make_task("sub", tok.id, phase="submitting", **lapsed))
    await store.create_task(make_task("pol", tok.id, **lapsed))
    got = await store.lease_due("W", now=now, limit=10, lease_seconds=30, submit_grace=5)
    assert [t.id for t in got] == ["pol"]
    assert await store.renew_lease("sub", "stalled", now + 40)  # still its own: it goes on
    got = await store.lease_due("W", now=now + 36, limit=10, lease_seconds=30, submit_grace=5)
    assert [t.id for t in got] == ["pol"]  # "pol" by W's own lapsed lease; "sub" renewed
    got = await store.lease_due("W", now=now + 36 + 31, limit=10, lease_seconds=30, submit_grace=5)
    assert {t.id for t in got} == {"sub", "pol"}
    assert not await store.renew_lease("sub", "stalled", now + 100)  # taken over


async def test_list_pagination_by_cursor(store):
    tok = await store.create_token(name="t", key_hash="h", key_hint="x", group="default", quota=None)
    base = time.time()
    for i in range(7):
        await store.create_task(make_task(f"t{i}", tok.id, created_at=base + i // 2))  # ties on created_at
    seen, after = [], None
    while True:
        page = await store.list_tasks(tok.id, after=after, limit=3, order="desc")
        if not page:
            break
        seen += [t.id for t in page]
        after = page[-1]
    assert sorted(seen) == [f"t{i}" for i in range(7)] and len(seen) == 7
