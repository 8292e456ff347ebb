"""Outbound HTTP: the shared session, result downloads, and safe fetching of client URLs.

Client-supplied image URLs are fetched through a separate session whose resolver refuses
private, loopback, link-local and other non-global addresses (so a DNS name cannot
smuggle an internal address past the check), with every redirect hop checked again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from .errors import TaskFailed, VendorRejected, VendorUnavailable
from .request import MAX_IMAGE_BYTES, sniff_image_type
from .vendor import MediaSource

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_REDIRECTS = 5


def parse_networks(cidrs: Sequence[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def address_allowed(address: str, allowed: Sequence[IPNetwork]) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if any(ip in net for net in allowed):
        return True
    return ip.is_global and not ip.is_multicast


class GuardedResolver(AbstractResolver):
    """Resolves like the default resolver, then drops every non-public address."""

    def __init__(self, allowed: Sequence[IPNetwork]) -> None:
        self._inner = DefaultResolver()
        self._allowed = tuple(allowed)

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        safe = [r for r in results if address_allowed(r["host"], self._allowed)]
        if not safe:
            raise OSError(f"{host} resolves only to addresses that are not allowed")
        return safe

    async def close(self) -> None:
        await self._inner.close()


class HTTP:
    """The process's outbound HTTP: one pooled session for vendors, one guarded session
    for client-supplied URLs. Create inside the event loop; close on shutdown."""

    def __init__(
        self,
        *,
        total_timeout: float = 60.0,
        connect_timeout: float = 10.0,
        image_timeout: float = 20.0,
        download_idle_timeout: float = 60.0,
        allowed_networks: Sequence[IPNetwork] = (),
    ) -> None:
        self.timeout = aiohttp.ClientTimeout(total=total_timeout, connect=connect_timeout)
        self.download_timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=download_idle_timeout
        )
        self.image_timeout = aiohttp.ClientTimeout(total=image_timeout, connect=min(connect_timeout, image_timeout))
        self.allowed_networks = tuple(allowed_networks)
        self.session = aiohttp.ClientSession(
            timeout=self.timeout,
            connector=aiohttp.TCPConnector(limit=200, limit_per_host=50),
            headers={"User-Agent": "vidgate/0.1"},
        )
        self._guarded = aiohttp.ClientSession(
            timeout=self.image_timeout,
            connector=aiohttp.TCPConnector(resolver=GuardedResolver(self.allowed_networks), limit=50),
            headers={"User-Agent": "vidgate/0.1 (image fetch)"},
        )
        self._extra_sessions: list[aiohttp.ClientSession] = []

    async def close(self) -> None:
        await self.session.close()
        await self._guarded.close()
        for extra in self._extra_sessions:
            await extra.close()

    def guarded_session(
        self, allowed_networks: Sequence[IPNetwork], *, user_agent: str, limit: int = 50
    ) -> aiohttp.ClientSession:
        """Another session behind the address guard, with its own allowed networks (for
        other client-supplied URLs, e.g. webhook endpoints). Closed with this object."""
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=GuardedResolver(tuple(allowed_networks)), limit=limit),
            headers={"User-Agent": user_agent},
        )
        self._extra_sessions.append(session)
        return session

    def _check_url(self, url: str, param: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise VendorRejected(f"{param}: only http(s) image URLs are accepted", param=param)
        try:
            literal = ipaddress.ip_address(parts.hostname.strip("[]"))
        except ValueError:
            return  # a name: the guarded resolver checks what it resolves to
        if not address_allowed(str(literal), self.allowed_networks):
            raise VendorRejected(f"{param}: image URL points at a private or local address", param=param)

    async def fetch_image(self, url: str, param: str = "image") -> tuple[bytes, str]:
        """Fetch a client image URL safely; raise ``VendorRejected`` naming ``param``."""
        for _ in range(MAX_REDIRECTS + 1):
            self._check_url(url, param)
            try:
                async with self._guarded.get(url, allow_redirects=False) as resp:
                    if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                        url = urljoin(url, resp.headers["Location"])
                        continue
                    if resp.status != 200:
                        raise VendorRejected(f"{param}: fetching the image URL gave HTTP {resp.status}", param=param)
                    if (resp.content_length or 0) > MAX_IMAGE_BYTES:
                        raise VendorRejected(f"{param}: image is larger than 20 MiB", param=param)
                    data = bytearray()
                    async for chunk in resp.content.iter_chunked(1 << 16):
                        data += chunk
                        if len(data) > MAX_IMAGE_BYTES:
                            raise VendorRejected(f"{param}: image is larger than 20 MiB", param=param)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                reason = "timed out" if isinstance(exc, asyncio.TimeoutError) else str(exc) or type(exc).__name__
                if "not allowed" in reason:
                    raise VendorRejected(f"{param}: image URL points at a private or local address", param=param) from None
                raise VendorRejected(f"{param}: could not fetch the image URL ({reason})", param=param) from None
            mime = sniff_image_type(bytes(data[:16]))
            if mime is None:
                raise VendorRejected(f"{param}: the URL did not return a PNG, JPEG, WebP or GIF image", param=param)
            return bytes(data), mime
        raise VendorRejected(f"{param}: too many redirects", param=param)

    async def download(self, url: str, headers: Mapping[str, str] | None = None) -> MediaSource:
        """Open a streaming download of a vendor result (see ``CallContext.download``)."""
        try:
            resp = await self.session.get(url, headers=dict(headers or {}), timeout=self.download_timeout)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise VendorUnavailable(f"result download failed: {type(exc).__name__}") from None
        if resp.status in (404, 410):
            resp.release()
            raise TaskFailed(f"the vendor's result is gone (HTTP {resp.status})", code="result_unavailable")
        if resp.status != 200:
            resp.release()
            raise VendorUnavailable(f"result download answered HTTP {resp.status}")
        content_type = resp.headers.get("Content-Type", "video/mp4").split(";")[0].strip() or "video/mp4"
        expected = resp.content_length

        async def chunks() -> AsyncIterator[bytes]:
            received = 0
            try:
                async for chunk in resp.content.iter_chunked(1 << 16):
                    received += len(chunk)
                    yield chunk
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                raise VendorUnavailable(f"result download was cut: {type(exc).__name__}") from None
            finally:
                resp.release()
            if expected is not None and received != expected:
                raise VendorUnavailable(f"result download was cut at {received} of {expected} bytes")

        return MediaSource(chunks(), content_type)


async def url_refusal(url: str, allowed: Sequence[IPNetwork]) -> str | None:
    """Why a client-supplied URL may not be called (None when it may): not http(s), a
    literal non-public address, or a name that does not resolve to an allowed address.

    The answer holds for now only: the guarded session checks the address again when the
    URL is called, so a name that changes its answer later gains nothing.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http(s) URL"
    if parts.username or parts.password:
        return "must not contain credentials"
    host = parts.hostname.strip("[]")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        return None if address_allowed(str(literal), allowed) else "points at a private or local address"
    resolver = GuardedResolver(allowed)
    try:
        await asyncio.wait_for(resolver.resolve(host, port or 0, socket.AF_UNSPEC), 10)
    except (OSError, asyncio.TimeoutError) as exc:
        if "not allowed" in str(exc):
            return "points at a private or local address"
        return "has a host name that does not resolve"
    finally:
        await resolver.close()
    return None
