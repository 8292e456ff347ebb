import contextlib
import os
import secrets

import pytest

POSTGRES_ADMIN_URL = os.environ.get("VIDGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.asynccontextmanager
async def fresh_postgres():
    """A new, empty PostgreSQL database, dropped afterwards. Skips (fails in CI) without a server."""
    import asyncpg

    try:
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        if os.environ.get("CI"):
            raise RuntimeError(f"CI needs PostgreSQL at {POSTGRES_ADMIN_URL}: {exc}") from exc
        pytest.skip(f"no PostgreSQL at {POSTGRES_ADMIN_URL}")
    name = "vidgate_test_" + secrets.token_hex(6)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


@pytest.fixture
async def postgres_url():
    async with fresh_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
async def store_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    async with fresh_postgres() as url:
        yield url
