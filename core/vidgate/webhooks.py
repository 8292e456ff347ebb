"""Signed webhook deliveries (Standard Webhooks) from the store's outbox.

The store writes an event row in the same transaction as the task's status change (see
``Store._announce``), so a crash can neither lose an event nor announce a change that did
not commit. :class:`WebhookDelivery` leases due rows, as the poll worker leases tasks, so
two processes never deliver one event at once; delivery is at least once, with the
event id as ``webhook-id`` on every attempt so receivers can drop repeats.

Signatures are made with the ``standardwebhooks`` library: ``v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}">`` for every secret of the token that is still signing, space
separated, which is what the Standard Webhooks verifiers and the openai SDK accept.
"""

from __future__ import annotations

import asyncio
import base64
import random
import secrets
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import structlog
from standardwebhooks.webhooks import Webhook

from . import failpoints
from .net import parse_networks
from .store import Store, TokenRecord
from .store.records import WebhookEvent

log = structlog.get_logger("vidgate.webhooks")
SECRET_PREFIX = "whsec_"
# Longest Retry-After a receiver's 429 may ask for.
MAX_RETRY_AFTER = 24 * 3600.0


def new_secret() -> str:
    """A new signing secret in the Standard Webhooks format (``whsec_`` + base64)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signing_secrets(token: TokenRecord, now: float | None = None) -> list[str]:
    """The token's secrets that still sign, newest first."""
    now = time.time() if now is None else now
    return [s["secret"] for s in token.webhook_secrets or [] if s.get("expires_at") is None or s["expires_at"] > now]


async def webhook_secret(store: Store, token: TokenRecord, *, rotate: bool = False, overlap_hours: float = 24.0) -> str:
    """The token's current signing secret, made on first use; ``rotate`` makes a new one
    while the previous one keeps signing for ``overlap_hours``."""
    now = time.time()
    kept = [s for s in token.webhook_secrets or [] if s.get("expires_at") is None or s["expires_at"] > now]
    if kept and not rotate:
        current: str = kept[0]["secret"]
        return current
    if kept:
        kept[0] = {**kept[0], "expires_at": now + overlap_hours * 3600}
    secret = new_secret()
    fresh: dict[str, Any] = {"secret": secret, "expires_at": None, "created_at": now}
    await store.set_webhook_secrets(token.id, [fresh, *kept])
    token.webhook_secrets = [fresh, *kept]
    return secret


def sign(secrets_: list[str], msg_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` header: one ``v1,`` signature per secret, space separated."""
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    return " ".join(Webhook(s).sign(msg_id, when, body) for s in secrets_)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class WebhookDelivery:
    """The delivery loop: runs beside the poll worker (``vidgate serve`` / ``worker``)."""

    def __init__(self, gateway: Any) -> None:
        self.gw = gateway
        self.cfg = gateway.config.webhooks
        self.store: Store = gateway.store
        self.session: aiohttp.ClientSession = gateway.http.guarded_session(
            parse_networks(self.cfg.allow_networks), user_agent="vidgate-webhooks/0.1"
        )
        self._rng = random.Random()
        self.wakeup = asyncio.Event()

    async def run(self, stop: asyncio.Event, tick_seconds: float = 0.5) -> None:
        while not stop.is_set():
            try:
                busy = await self.tick()
            except Exception:
                log.exception("webhook_tick_failed")
                busy = False
            if busy:
                continue
            self.wakeup.clear()
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wakeup.wait())]
            await asyncio.wait(waiters, timeout=tick_seconds, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()

    async def tick(self, limit: int = 20) -> bool:
        """Deliver the due events; True if there may be more due."""
        events = await self.store.lease_webhook_events(
            self.gw.owner, now=time.time(), limit=limit, lease_seconds=self.cfg.lease_seconds
        )
        # In order per task (in_progress before completed); tasks side by side.
        by_task: dict[str, list[WebhookEvent]] = {}
        for e in events:
            by_task.setdefault(e.task_id, []).append(e)

        async def deliver_all(items: list[WebhookEvent]) -> None:
            for item in items:
                await self.deliver(item)

        await asyncio.gather(*(deliver_all(items) for items in by_task.values()))
        return len(events) == limit

    async def deliver(self, event: WebhookEvent) -> str:
        """One attempt at one event; returns the event's new state."""
        if await self.store.webhook_url_gone(event.url):
            # Leased together with an event whose delivery then got the 410.
            await self._record(event, "gone", None, "the endpoint answered 410 Gone earlier")
            return "gone"
        token = await self.store.token(event.token_id)
        if token is None:
            await self._record(event, "failed", None, "the token no longer exists")
            return "failed"
        keys = signing_secrets(token)
        if not keys:
            keys = [await webhook_secret(self.store, token, overlap_hours=self.cfg.secret_overlap_hours)]
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": event.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(keys, event.id, timestamp, event.body),
        }
        failpoints.hit("webhook.before_delivery")
        status: int | None = None
        retry_after: float | None = None
        try:
            async with self.session.post(
                event.url,
                data=event.body.encode(),
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_seconds),
            ) as resp:
                status = resp.status
                retry_after = _retry_after(resp.headers.get("Retry-After")) if status == 429 else None
                await resp.content.readany()  # the answer's body does not matter
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except TimeoutError:
            error = f"no answer within {self.cfg.timeout_seconds:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            error = "not an allowed address" if "not allowed" in str(exc) else f"{type(exc).__name__}: {exc}"
        bound = log.bind(event_id=event.id, task_id=event.task_id, type=event.type, attempt=event.attempts + 1)
        if error is None:
            await self._record(event, "delivered", status, None)
            bound.info("webhook_delivered", http_status=status)
            return "delivered"
        if status == 410:
            await self._record(event, "gone", status, "the endpoint answered 410 Gone")
            stopped = await self.store.mark_webhook_url_gone(event.url)
            bound.warning("webhook_endpoint_gone", stopped_events=stopped)
            return "gone"
        attempt = event.attempts + 1
        schedule = self.cfg.retry_schedule
        if attempt >= len(schedule):
            await self._record(event, "failed", status, error)
            bound.warning("webhook_failed", error=error)
            return "failed"
        delay = schedule[attempt] * (0.8 + 0.4 * self._rng.random())  # jitter
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
        await self._record(event, "pending", status, error, time.time() + delay)
        bound.info("webhook_retry", error=error, retry_in=round(delay, 2))
        return "pending"

    async def _record(
        self, event: WebhookEvent, state: str, status: int | None, error: str | None, next_at: float | None = None
    ) -> None:
        await self.store.record_webhook_attempt(
            event.id, self.gw.owner, state=state, http_status=status, error=error, next_attempt_at=next_at
        )
