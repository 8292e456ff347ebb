"""API token keys: generated with enough entropy that a plain SHA-256 is a safe store;
and the short-lived cache of key lookups every authenticated request goes through."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store.records import TokenRecord

KEY_PREFIX = "vg-"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_hint(key: str) -> str:
    return f"{key[:5]}...{key[-4:]}"


class TokenCache:
    """Tokens found by key hash, kept for ``ttl`` seconds (``[server] auth_cache_seconds``).

    Every request authenticates; without this each one costs a store read before any
    work. A token changed by another process (``vidgate tokens revoke`` or ``set-quota``,
    another replica) is seen within ``ttl``; the store drops the whole cache when this
    process changes a token, so such a change counts at once here. Only tokens that were
    found are kept (an unknown key is looked up every time: a key made a moment ago by
    another process works at once, and random keys cannot fill the cache). Expiry and
    revocation are checked on every request against what is cached; quotas are enforced by
    the store's atomic reservation, never by a cached balance. ``ttl`` 0 turns it off.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, ttl: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[float, TokenRecord]] = {}

    def get(self, key_hash: str) -> TokenRecord | None:
        """The cached token, or None when absent or stale. It is shared by every request of
        the key until then: read it, never change it (a copy costs as much as the rest of
        the lookup)."""
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[key_hash]
            return None
        return entry[1]

    def put(self, key_hash: str, token: TokenRecord) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.MAX_ENTRIES:
            # More live keys than this in one second is unusual: start over rather than
            # keep an eviction order on every hit.
            self._entries.clear()
        self._entries[key_hash] = (self._clock() + self.ttl, token)

    def clear(self) -> None:
        self._entries.clear()
