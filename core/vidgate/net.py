"""Outbound HTTP: the shared session, result downloads, and safe fetching of client URLs.

Every URL the gateway did not choose itself (client image URLs, vendor result URLs) is
fetched through a *guarded* session: its connector checks the address of every socket
just before it connects (``socket_factory``), so no URL parsing difference, IDNA
normalisation, literal-IP form or DNS answer can reach an address the guard refuses;
the resolver drops refused addresses too, so a name with one public address still
works. Redirects are followed by hand, each hop through the same guard.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
import zlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from .errors import TaskFailed, VendorRejected, VendorUnavailable
from .request import MAX_IMAGE_BYTES, sniff_image_type
from .vendor import MediaSource

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)
DEFAULT_MAX_RESULT_BYTES = 512 * 1024 * 1024


def parse_networks(cidrs: Sequence[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def address_allowed(address: str, allowed: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if any(ip in net for net in allowed):
        return True
    return ip.is_global and not ip.is_multicast


class AddressNotAllowed(OSError):
    """The guard refused an address; the message never says which or why."""

    def __init__(self) -> None:
        super().__init__("address not allowed")


class GuardedResolver(AbstractResolver):
    """Resolves like the default resolver, then drops every refused address."""

    def __init__(self, allowed: Sequence[IPNetwork]) -> None:
        self._inner = DefaultResolver()
        self._allowed = tuple(allowed)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        safe = [r for r in results if address_allowed(r["host"], self._allowed)]
        if not safe:
            raise AddressNotAllowed()
        return safe

    async def close(self) -> None:
        await self._inner.close()


def _guarded_socket_factory(allowed: Sequence[IPNetwork]) -> Any:
    """A ``socket_factory`` that refuses to create a socket for a refused address.

    aiohttp does not call the resolver for literal IP hosts, so this is the one place
    that sees every address the connector is about to connect to."""

    def factory(addr_info: Any) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        if not address_allowed(str(sockaddr[0]), allowed):
            raise AddressNotAllowed()
        sock = socket.socket(family=family, type=type_, proto=proto)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    return factory


def _refused_by_guard(exc: BaseException) -> bool:
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, AddressNotAllowed) or "address not allowed" in str(e):
            return True
        stack += [e.__cause__, e.__context__, getattr(e, "os_error", None)]
        stack += list(getattr(e, "exceptions", ()) or ())
    return False


def _as_url(url: str) -> URL:
    """``url`` as a yarl URL that sends exactly the characters given when they are
    already a valid encoding (printable ASCII): presigned result URLs sign their query as
    the vendor escaped it (``%2F``, ``%7E``), and yarl would otherwise decode and re-encode
    it. Anything else (spaces, non-ASCII) is quoted by yarl as usual."""
    clean = url.isascii() and all(33 <= ord(c) < 127 for c in url)
    return URL(url, encoded=clean)


def _parse_url(url: str) -> URL | None:
    """The URL as aiohttp will see it (IDNA/NFKC-normalised host), or None if unusable."""
    try:
        parsed = _as_url(url)
        host = parsed.host
        if parsed.scheme not in ("http", "https") or not host:
            return None
        # Raises for a host that cannot be encoded (a label over 63 characters, ...).
        if not _is_ip(host):
            host.encode("idna")
        parsed.port  # noqa: B018 -- a bad port raises here, not inside the request
        return parsed
    except (ValueError, UnicodeError, TypeError):
        return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def _origin(url: URL) -> tuple[str, str, int | None]:
    return url.scheme, (url.host or "").lower(), url.port


class HTTP:
    """The process's outbound HTTP: one pooled session for vendors, and guarded sessions
    (one per allow-list) for client image URLs and vendor result downloads. Create inside
    the event loop; close on shutdown."""

    def __init__(
        self,
        *,
        total_timeout: float = 60.0,
        connect_timeout: float = 10.0,
        image_timeout: float = 20.0,
        download_idle_timeout: float = 60.0,
        download_timeout: float = 3600.0,
        download_min_bytes_per_second: float = 0.0,
        download_rate_window_seconds: float = 30.0,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        allowed_networks: Sequence[IPNetwork] = (),
        result_networks: Sequence[IPNetwork] = (),
    ) -> None:
        self.timeout = aiohttp.ClientTimeout(total=total_timeout, connect=connect_timeout)
        self.download_timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=download_idle_timeout
        )
        self.download_total_seconds = download_timeout
        self.download_min_rate = download_min_bytes_per_second
        self.download_rate_window = download_rate_window_seconds
        self.max_result_bytes = max_result_bytes
        self.image_timeout = aiohttp.ClientTimeout(total=image_timeout, connect=min(connect_timeout, image_timeout))
        self.allowed_networks = tuple(allowed_networks)
        self.result_networks = tuple(result_networks)
        self.session = aiohttp.ClientSession(
            timeout=self.timeout,
            connector=aiohttp.TCPConnector(limit=200, limit_per_host=50),
            headers={"User-Agent": "vidgate/0.1"},
        )
        # One session per allow-list: a pooled connection or cached DNS answer admitted
        # under one list must never be reused under a stricter one.
        self._guarded: dict[tuple[str, frozenset[IPNetwork]], aiohttp.ClientSession] = {}
        self._closed = False

    def _check_open(self) -> None:
        # Guarded sessions are made on first use; one made by a call still running when
        # close() ran would never be closed (an unclosed session and connector).
        if self._closed:
            raise RuntimeError("the gateway's HTTP client is closed")

    def _guarded_session(self, purpose: str, allowed: Sequence[IPNetwork]) -> aiohttp.ClientSession:
        key = (purpose, frozenset(allowed))
        session = self._guarded.get(key)
        if session is None:
            self._check_open()
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(allowed), socket_factory=_guarded_socket_factory(allowed), limit=50
            )
            if purpose == "image":
                session = aiohttp.ClientSession(
                    timeout=self.image_timeout,
                    connector=connector,
                    headers={"User-Agent": "vidgate/0.1 (image fetch)"},
                )
            else:
                # Media is stored byte for byte: never decompress behind our back (a small
                # gzip body must not become gigabytes on disk).
                session = aiohttp.ClientSession(
                    timeout=self.download_timeout,
                    connector=connector,
                    auto_decompress=False,
                    headers={"User-Agent": "vidgate/0.1 (result download)"},
                )
            self._guarded[key] = session
        return session

    @property
    def image_session(self) -> aiohttp.ClientSession:
        """The guarded session for client image URLs."""
        return self._guarded_session("image", self.allowed_networks)

    @property
    def connectors(self) -> list[aiohttp.BaseConnector]:
        """Every connector in use (for leak checks)."""
        return [s.connector for s in (self.session, *self._guarded.values()) if s.connector is not None]

    async def close(self) -> None:
        self._closed = True
        await self.session.close()
        for session in list(self._guarded.values()):
            await session.close()

    def guarded_session(
        self, allowed_networks: Sequence[IPNetwork], *, user_agent: str, limit: int = 50
    ) -> aiohttp.ClientSession:
        """A session behind the address guard with its own allowed networks, for other
        client-supplied URLs (webhook endpoints). Closed with this object."""
        key = (user_agent, frozenset(allowed_networks))
        session = self._guarded.get(key)
        if session is None:
            self._check_open()
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(allowed_networks),
                socket_factory=_guarded_socket_factory(allowed_networks),
                limit=limit,
            )
            session = aiohttp.ClientSession(connector=connector, headers={"User-Agent": user_agent})
            self._guarded[key] = session
        return session

    async def fetch_image(self, url: str, param: str = "image") -> tuple[bytes, str]:
        """Fetch a client image URL safely; raise ``VendorRejected`` naming ``param``.

        Every failure is the client's URL's (a bad host, a refused address, a dead
        server), so every failure is a ``VendorRejected``; refusals by the address guard
        say only "not allowed", so the answer reveals nothing about internal hosts."""
        try:
            return await self._fetch_image(url, param)
        except VendorRejected:
            raise
        except aiohttp.InvalidURL:
            raise VendorRejected(f"{param}: not a valid http(s) image URL", param=param) from None
        except Exception as exc:  # noqa: BLE001 -- whatever the URL made the client library raise
            if _refused_by_guard(exc):
                raise VendorRejected(f"{param}: the image URL's address is not allowed", param=param) from None
            reason = "timed out" if isinstance(exc, asyncio.TimeoutError) else "the host did not answer"
            raise VendorRejected(f"{param}: could not fetch the image URL ({reason})", param=param) from None

    async def _fetch_image(self, url: str, param: str) -> tuple[bytes, str]:
        session = self._guarded_session("image", self.allowed_networks)
        for _ in range(MAX_REDIRECTS + 1):
            parsed = _parse_url(url)
            if parsed is None:
                raise VendorRejected(f"{param}: not a valid http(s) image URL", param=param)
            if _is_ip(parsed.host or "") and not address_allowed(parsed.host.strip("[]"), self.allowed_networks):  # type: ignore[union-attr]
                raise VendorRejected(f"{param}: the image URL's address is not allowed", param=param)
            async with session.get(parsed, allow_redirects=False, headers={"Accept-Encoding": "identity"}) as resp:
                if resp.status in REDIRECTS and "Location" in resp.headers:
                    url = str(parsed.join(_as_url(resp.headers["Location"])))
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
            mime = sniff_image_type(bytes(data[:16]))
            if mime is None:
                raise VendorRejected(f"{param}: the URL did not return a PNG, JPEG, WebP or GIF image", param=param)
            return bytes(data), mime
        raise VendorRejected(f"{param}: too many redirects", param=param)

    async def download(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        allowed_networks: Sequence[IPNetwork] | None = None,
    ) -> MediaSource:
        """Open a streaming download of a vendor result (see ``CallContext.download``).

        The address guard applies (``allowed_networks``: private ranges the operator
        allowed for this channel's results); redirects are followed by hand, each hop
        guarded, and the caller's ``headers`` are dropped once the origin changes. The
        transfer is bounded by ``max_result_bytes`` (after decoding), a total time and a
        minimum rate."""
        allowed = self.result_networks if allowed_networks is None else tuple(allowed_networks)
        session = self._guarded_session("download", allowed)
        sent = dict(headers or {})
        first_origin: tuple[str, str, int | None] | None = None
        started = time.monotonic()
        for _ in range(MAX_REDIRECTS + 1):
            parsed = _parse_url(url)
            if parsed is None:
                raise TaskFailed("The vendor's result URL is not a valid http(s) URL.", code="result_unavailable")
            if first_origin is None:
                first_origin = _origin(parsed)
            elif sent and _origin(parsed) != first_origin:
                # Credentials are for the vendor's origin only (as browsers do for
                # Authorization): a CDN on another origin gets none of the plugin's headers.
                sent = {}
            try:
                resp = await session.get(parsed, headers={**sent, "Accept-Encoding": "identity"}, allow_redirects=False)
            except Exception as exc:  # noqa: BLE001
                if _refused_by_guard(exc):
                    raise TaskFailed(
                        "The vendor's result URL points at an address that is not allowed.", code="result_unavailable"
                    ) from None
                if not isinstance(exc, (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError)):
                    raise
                raise VendorUnavailable(f"result download failed: {type(exc).__name__}") from None
            if resp.status in REDIRECTS and "Location" in resp.headers:
                location = resp.headers["Location"]
                resp.release()
                try:
                    url = str(parsed.join(_as_url(location)))
                except (ValueError, UnicodeError, TypeError):
                    raise TaskFailed(
                        "The vendor's result redirect is not a valid URL.", code="result_unavailable"
                    ) from None
                continue
            return self._stream(resp, started)
        raise TaskFailed("The vendor's result URL redirected too many times.", code="result_unavailable")

    def _stream(self, resp: aiohttp.ClientResponse, started: float) -> MediaSource:
        if resp.status in (404, 410):
            resp.release()
            raise TaskFailed(f"the vendor's result is gone (HTTP {resp.status})", code="result_unavailable")
        if resp.status != 200:
            resp.release()
            raise VendorUnavailable(f"result download answered HTTP {resp.status}")
        limit = self.max_result_bytes
        expected = resp.content_length
        if expected is not None and expected > limit:
            resp.release()
            raise TaskFailed(
                f"The vendor's result is larger than the limit of {limit} bytes.", code="result_unavailable"
            )
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            decoder: Any = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            decoder = zlib.decompressobj(32 + zlib.MAX_WBITS)  # zlib or gzip header
        elif encoding in ("identity", ""):
            decoder = None
        else:
            resp.release()
            raise TaskFailed(
                f"The vendor sent the result in an unsupported encoding ({encoding[:40]}).", code="result_unavailable"
            )
        content_type = resp.headers.get("Content-Type", "video/mp4").split(";")[0].strip() or "video/mp4"
        deadline = started + self.download_total_seconds
        min_rate, window = self.download_min_rate, self.download_rate_window

        def too_large() -> TaskFailed:
            return TaskFailed(
                f"The vendor's result is larger than the limit of {limit} bytes.", code="result_unavailable"
            )

        async def chunks() -> AsyncIterator[bytes]:
            raw = produced = 0
            window_start, window_bytes = time.monotonic(), 0
            try:
                while True:
                    now = time.monotonic()
                    if now >= deadline:
                        raise VendorUnavailable("result download took longer than download_timeout_seconds")
                    if min_rate > 0 and now - window_start >= window:
                        if window_bytes < min_rate * (now - window_start):
                            raise VendorUnavailable("result download was slower than download_min_bytes_per_second")
                        window_start, window_bytes = now, 0
                    # Wake at the end of the rate window even if nothing arrives.
                    wait = deadline - now
                    if min_rate > 0:
                        wait = min(wait, window_start + window - now + 0.01)
                    try:
                        async with asyncio.timeout(wait):
                            chunk = await resp.content.read(1 << 16)
                    except aiohttp.ServerTimeoutError:
                        raise  # the idle (sock_read) timeout: the transfer stalled
                    except TimeoutError:
                        continue
                    if not chunk:
                        break
                    raw += len(chunk)
                    window_bytes += len(chunk)
                    if decoder is None:
                        produced += len(chunk)
                        if produced > limit:
                            raise too_large()
                        yield chunk
                        continue
                    data = chunk
                    # Bounded output per step: a small compressed chunk cannot expand into
                    # memory beyond one step, and the limit applies to what we store.
                    while data:
                        out = decoder.decompress(data, 1 << 16)
                        data = decoder.unconsumed_tail
                        produced += len(out)
                        if produced > limit:
                            raise too_large()
                        if out:
                            yield out
                if decoder is not None:
                    tail = decoder.flush()
                    produced += len(tail)
                    if produced > limit:
                        raise too_large()
                    if tail:
                        yield tail
            except (TimeoutError, aiohttp.ClientError, OSError, zlib.error) as exc:
                if isinstance(exc, zlib.error):
                    raise VendorUnavailable("result download was not valid compressed data") from None
                raise VendorUnavailable(f"result download was cut: {type(exc).__name__}") from None
            finally:
                resp.release()
            # Content-Length counts the bytes on the wire, i.e. before decoding.
            if expected is not None and raw != expected:
                raise VendorUnavailable(f"result download was cut at {raw} of {expected} bytes")

        return MediaSource(chunks(), content_type)


async def url_refusal(url: str, allowed: Sequence[IPNetwork]) -> str | None:
    """Why a client-supplied URL may not be called (None when it may): not http(s), a
    literal non-public address, or a name that does not resolve to an allowed address.

    The URL is read as aiohttp will read it (IDNA/NFKC-normalised host). The answer holds
    for now only: the guarded session checks the address again when the URL is called, so
    a name that changes its answer later gains nothing.
    """
    parsed = _parse_url(url)
    if parsed is None:
        return "must be a valid http(s) URL"
    if parsed.user or parsed.password:
        return "must not contain credentials"
    host = (parsed.host or "").strip("[]")
    if _is_ip(host):
        return None if address_allowed(host, allowed) else "points at an address that is not allowed"
    resolver = GuardedResolver(allowed)
    try:
        await asyncio.wait_for(resolver.resolve(host, parsed.port or 0, socket.AF_UNSPEC), 10)
    except (TimeoutError, OSError) as exc:
        if _refused_by_guard(exc):
            return "points at an address that is not allowed"
        return "has a host name that does not resolve"
    finally:
        await resolver.close()
    return None
