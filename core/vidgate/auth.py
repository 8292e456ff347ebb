"""API token keys: generated with enough entropy that a plain SHA-256 is a safe store."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "vg-"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_hint(key: str) -> str:
    return f"{key[:5]}...{key[-4:]}"
