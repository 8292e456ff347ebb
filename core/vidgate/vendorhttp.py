"""Plumbing every vendor plugin repeats, written once: transport errors, Retry-After,
JSON envelopes and base-URL joining.

A plugin's ``client.py`` typically becomes::

    from vidgate.vendorhttp import join_url, read_json, retry_after, transport_errors

    async def call(ctx, method, path, body=None):
        with transport_errors("Acme"):
            async with ctx.http.request(method, join_url(ctx.channel.base_url, path),
                                        json=body, timeout=ctx.timeout) as resp:
                status, data = resp.status, await read_json(resp, "Acme")
                wait = retry_after(resp.headers)
        ...classify status/data into a VendorError...

The helpers only translate; what an answer *means* (which code is a rate limit, which a
bad key) stays in the plugin, next to the vendor's documentation.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp

from .errors import VendorUnavailable, request_maybe_received
from .vendor import Channel

__all__ = ["TRANSPORT_ERRORS", "join_url", "parse_json", "read_json", "retry_after", "scrub", "transport_errors"]

#: What a failed HTTP exchange raises in aiohttp: connection refused/reset, DNS, TLS,
#: payload errors, and timeouts (``asyncio.TimeoutError`` is ``TimeoutError`` on 3.11+).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    # Only the class name: aiohttp messages can carry the URL, and URLs can carry keys.
    return type(exc).__name__


@contextlib.contextmanager
def transport_errors(vendor: str, what: str = "did not answer") -> Iterator[None]:
    """Turn transport failures inside the block into :class:`VendorUnavailable`.

    The message reads ``"<vendor> did not answer (timed out)"`` or names the aiohttp
    error class; never the exception text, which may contain a URL with a key in it.
    :class:`VendorError` raised inside the block passes through unchanged.
    """
    try:
        yield
    except TRANSPORT_ERRORS as exc:
        raise VendorUnavailable(
            f"{vendor} {what} ({_reason(exc)})", maybe_received=request_maybe_received(exc)
        ) from None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # aiohttp's headers are case-insensitive; a plain dict (in tests, say) may not be.
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def retry_after(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms``, ``Retry-After`` (seconds or an HTTP-date).

    Returns None when no header is present or none parses; never a negative number.
    ``retry-after-ms`` wins because it is the more precise (OpenAI-style APIs send both).
    """
    if headers is None:
        return None
    value = _header(headers, "retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = _header(headers, "retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def parse_json(raw: bytes, vendor: str, status: int) -> Any:
    """Decode a vendor body; a non-JSON body (a proxy's HTML page, a truncated reply)
    raises :class:`VendorUnavailable` naming the HTTP status, with ``http_status`` set."""
    try:
        return json.loads(raw)
    except ValueError:
        raise VendorUnavailable(f"{vendor} sent a malformed reply (HTTP {status})", http_status=status) from None


async def read_json(resp: aiohttp.ClientResponse, vendor: str, *, empty: Any = ...) -> Any:
    """Read and decode ``resp``'s body (see :func:`parse_json`).

    An empty body is malformed too, unless ``empty`` is given (returned instead).
    Transport failures while reading raise :class:`VendorUnavailable`.
    """
    with transport_errors(vendor, "reply was cut"):
        raw = await resp.read()
    if not raw.strip() and empty is not ...:
        return empty
    return parse_json(raw, vendor, resp.status)


def join_url(base: str, *parts: str) -> str:
    """``base`` and path ``parts`` joined with exactly one ``/`` between each.

    ``join_url("https://x/api/", "/v1", "videos")`` is ``"https://x/api/v1/videos"``.
    Unlike :func:`urllib.parse.urljoin`, a base path is kept, never replaced. The core
    has already resolved the channel's ``base_url`` (or the vendor's default), so pass
    ``ctx.channel.base_url``.
    """
    url = base.rstrip("/")
    for part in parts:
        part = part.strip("/")
        if part:
            url += "/" + part
    return url


def scrub(text: str, channel: Channel) -> str:
    """``text`` with every credential value of ``channel`` replaced by ``[redacted]``.

    The core scrubs the messages of errors a plugin raises; use this for what a plugin
    *logs* itself, since vendors' error messages can quote what they were sent.
    """
    from .plugins import scrub_text

    return scrub_text(text, channel)
