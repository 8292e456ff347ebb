"""Media storage: finished videos and their other artifacts, kept by the gateway.

Two implementations of one small interface (:class:`MediaStorage`):

* :class:`LocalMedia` (the default): files under ``[media] path`` as ``<task id>/<variant>``;
  for several replicas, a shared directory. All file I/O runs in threads.
* :class:`S3Media` (``[media] url = "s3://BUCKET/PREFIX"``): objects ``PREFIX/<task id>/<variant>``
  in any S3-compatible store (S3, R2, MinIO, GCS), through one aiobotocore client per process.
  Results are streamed in with multipart upload, so a video is never held whole in memory.

Both check what they store, whatever the vendor claimed (:class:`CheckedStream`): a video
must start like MP4, QuickTime, WebM or Matroska, a thumbnail, spritesheet or last frame
like PNG, JPEG, WebP or GIF, audio like MP3, M4A/AAC, WAV or Ogg, and the type recorded
(and later served) is the one sniffed; anything else (an HTML page, a JSON error) fails
the task instead of being served. Size is capped by
``media.max_result_bytes``, counted while the bytes flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from .errors import TaskFailed
from .request import sniff_image_type
from .vendor import ARTIFACTS

if TYPE_CHECKING:
    from .config import MediaConfig

VARIANTS = ARTIFACTS  # video, thumbnail, spritesheet, last_frame, audio
IMAGE_VARIANTS = frozenset({"thumbnail", "spritesheet", "last_frame"})
# S3's floor for every part but the last.
MIN_PART_BYTES = 5 * 1024 * 1024
_READ_CHUNK = 1024 * 1024
# The only types the content endpoint ever sends; anything else is octet-stream.
VIDEO_TYPES = frozenset({"video/mp4", "video/quicktime", "video/webm", "video/x-matroska"})
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
AUDIO_TYPES = frozenset({"audio/mpeg", "audio/mp4", "audio/wav", "audio/ogg"})
SERVABLE_TYPES = VIDEO_TYPES | IMAGE_TYPES | AUDIO_TYPES
#: File name extensions for downloads, by stored type.
EXTENSIONS = {
    "video/mp4": "mp4",
    "video/quicktime": "mov",
    "video/webm": "webm",
    "video/x-matroska": "mkv",
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "audio/mpeg": "mp3",
    "audio/mp4": "m4a",
    "audio/wav": "wav",
    "audio/ogg": "ogg",
}
_SNIFF_BYTES = 64


def sniff_video_type(head: bytes) -> str | None:
    """Return the MIME type of an MP4, QuickTime, WebM or Matroska file from its first bytes."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand == b"qt  ":
            return "video/quicktime"
        if brand[:3] in (b"hei", b"mif", b"avi", b"msf"):  # HEIF/AVIF stills share the box
            return None
        return "video/mp4"
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return "video/quicktime"  # old QuickTime files without an ftyp box
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm" if b"webm" in head[:_SNIFF_BYTES] else "video/x-matroska"
    return None


def sniff_audio_type(head: bytes) -> str | None:
    """Return the MIME type of an MP3, M4A (MP4 audio), WAV or Ogg file from its first bytes."""
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06):
        return "audio/mpeg"  # ID3 tag, or an MPEG audio frame sync with a layer set
    if len(head) >= 12 and head[4:8] == b"ftyp" and head[8:11] in (b"M4A", b"M4B", b"mp4", b"iso", b"dash"):
        return "audio/mp4"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:4] == b"OggS":
        return "audio/ogg"
    return None


def sniff_media_type(variant: str, head: bytes) -> str | None:
    if variant == "video":
        return sniff_video_type(head)
    if variant == "audio":
        return sniff_audio_type(head)
    return sniff_image_type(head)


class CheckedStream:
    """A result stream checked while it flows to storage.

    Iterating it yields the source's chunks; meanwhile :attr:`content_type` is sniffed
    from the first bytes (set before the chunk that completes them is yielded, so a
    storage may use it for an upload it starts later) and :attr:`size` counts against
    ``max_bytes``. Raises ``TaskFailed`` (``result_unavailable``) for bytes that are not
    a video (``variant="video"``), audio (``"audio"``) or an image (the others), or too
    many of them; the
    source is closed then, so a download's connection goes back to its pool.
    """

    def __init__(self, variant: str, chunks: AsyncIterator[bytes], max_bytes: int | None) -> None:
        self.variant = variant
        self.max_bytes = max_bytes
        self.content_type: str | None = None
        self.size = 0
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        head = b""
        try:
            async for chunk in self._chunks:
                self.size += len(chunk)
                if self.max_bytes is not None and self.size > self.max_bytes:
                    raise TaskFailed(
                        f"The vendor's {self.variant} is larger than the limit of {self.max_bytes} bytes.",
                        code="result_unavailable",
                    )
                if self.content_type is None:
                    head += chunk[: _SNIFF_BYTES - len(head)]
                    if len(head) >= _SNIFF_BYTES:
                        self.content_type = self._sniff(head)
                yield chunk
            if self.content_type is None:
                self.content_type = self._sniff(head) if self.size else "application/octet-stream"
        except BaseException:
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
            raise

    def _sniff(self, head: bytes) -> str:
        mime = sniff_media_type(self.variant, head)
        if mime is None:
            kind = {
                "video": "an MP4, QuickTime, WebM or Matroska video",
                "audio": "MP3, M4A, WAV or Ogg audio",
            }.get(self.variant, "a PNG, JPEG, WebP or GIF image")
            raise TaskFailed(f"The vendor's {self.variant} is not {kind}.", code="result_unavailable")
        return mime


@attrs.frozen
class StoredMedia:
    variant: str
    size: int
    content_type: str


@attrs.frozen
class MediaInfo:
    """What is stored for one variant: enough to answer HEAD, Range and If-Range."""

    size: int
    mtime: float
    content_type: str | None = None
    # Set when the bytes are a local file the server may send directly (the fast path).
    path: Path | None = None


class MediaReader(Protocol):
    async def read(self, n: int) -> bytes:
        """The next ``n`` bytes (fewer only at the end of the range)."""

    async def aclose(self) -> None: ...


class MediaStorage(Protocol):
    """Where finished media lives. Task ids and variants are checked by every method."""

    async def put(self, task_id: str, variant: str, chunks: AsyncIterator[bytes], content_type: str) -> StoredMedia:
        """Store a stream atomically: readers see the whole object or none."""

    async def put_file(self, task_id: str, variant: str, path: Path, content_type: str) -> StoredMedia:
        """Store a local file (consumed: it may be moved)."""

    async def stat(self, task_id: str, variant: str) -> MediaInfo | None:
        """Size, time and type of a stored variant, or None when it is not there."""

    async def open_range(self, task_id: str, variant: str, start: int = 0, end: int | None = None) -> MediaReader:
        """Read bytes ``[start, end)`` (to the end when ``end`` is None)."""

    def local_copy(self, task_id: str, variant: str) -> contextlib.AbstractAsyncContextManager[Path]:
        """A local file with the variant's bytes for the duration of the block."""

    async def presigned_url(
        self, task_id: str, variant: str, *, expires_seconds: int, filename: str, content_type: str
    ) -> str | None:
        """A short-lived URL that serves the bytes without the gateway, or None if unsupported."""

    async def delete(self, task_id: str) -> None:
        """Remove every variant of a task; no error if nothing is stored."""

    async def close(self) -> None: ...


def _check(task_id: str, variant: str) -> None:
    # Task ids are generated by us, but never trust a path component.
    if not task_id or "/" in task_id or "\\" in task_id or task_id.startswith("."):
        raise ValueError("bad task id")
    if variant not in VARIANTS:
        raise ValueError("bad variant")


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    f = await asyncio.to_thread(open, path, "rb")
    try:
        while chunk := await asyncio.to_thread(f.read, _READ_CHUNK):
            yield chunk
    finally:
        await asyncio.to_thread(f.close)


@contextlib.asynccontextmanager
async def temp_dir() -> AsyncIterator[Path]:
    """A private temporary directory, made and removed off the event loop."""
    path = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="vidgate-"))
    try:
        yield path
    finally:
        await asyncio.to_thread(shutil.rmtree, path, True)


class _FileReader:
    def __init__(self, f: Any, remaining: int | None) -> None:
        self._f = f
        self._remaining = remaining

    async def read(self, n: int) -> bytes:
        if self._remaining is not None:
            n = min(n, self._remaining)
        data = await asyncio.to_thread(self._f.read, n) if n > 0 else b""
        if self._remaining is not None:
            self._remaining -= len(data)
        return data

    async def aclose(self) -> None:
        await asyncio.to_thread(self._f.close)


class LocalMedia:
    """Files under one directory; the gateway serves them with large reads."""

    def __init__(self, root: Path, max_bytes: int | None = None) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def _dir(self, task_id: str) -> Path:
        _check(task_id, "video")
        return self.root / task_id

    def path(self, task_id: str, variant: str) -> Path:
        _check(task_id, variant)
        return self.root / task_id / variant

    async def put(self, task_id: str, variant: str, chunks: AsyncIterator[bytes], content_type: str) -> StoredMedia:
        """Write a stream to storage atomically (temp file, then rename), checked by
        :class:`CheckedStream` (``content_type``, the source's claim, is not trusted)."""
        final = self.path(task_id, variant)
        tmp = final.with_name(f".{variant}.part")
        await asyncio.to_thread(final.parent.mkdir, parents=True, exist_ok=True)
        f = await asyncio.to_thread(open, tmp, "wb")
        stream = CheckedStream(variant, chunks, self.max_bytes)
        try:
            async for chunk in stream:
                await asyncio.to_thread(f.write, chunk)
            await asyncio.to_thread(f.flush)
            await asyncio.to_thread(os.fsync, f.fileno())
        except BaseException:
            await asyncio.to_thread(f.close)
            await asyncio.to_thread(tmp.unlink, missing_ok=True)
            raise
        await asyncio.to_thread(f.close)
        await asyncio.to_thread(os.replace, tmp, final)
        return StoredMedia(variant, stream.size, stream.content_type or "application/octet-stream")

    async def put_file(self, task_id: str, variant: str, path: Path, content_type: str) -> StoredMedia:
        final = self.path(task_id, variant)
        await asyncio.to_thread(final.parent.mkdir, parents=True, exist_ok=True)
        try:
            await asyncio.to_thread(os.replace, path, final)
        except OSError:  # another filesystem: copy instead
            return await self.put(task_id, variant, _file_chunks(path), content_type)
        return StoredMedia(variant, (await asyncio.to_thread(final.stat)).st_size, content_type)

    async def stat(self, task_id: str, variant: str) -> MediaInfo | None:
        path = self.path(task_id, variant)
        try:
            st = await asyncio.to_thread(os.stat, path)
        except FileNotFoundError:
            return None
        return MediaInfo(size=st.st_size, mtime=st.st_mtime, path=path)

    async def open_range(self, task_id: str, variant: str, start: int = 0, end: int | None = None) -> MediaReader:
        f = await asyncio.to_thread(open, self.path(task_id, variant), "rb")
        await asyncio.to_thread(f.seek, start)
        return _FileReader(f, None if end is None else end - start)

    @contextlib.asynccontextmanager
    async def local_copy(self, task_id: str, variant: str) -> AsyncIterator[Path]:
        yield self.path(task_id, variant)

    async def presigned_url(
        self, task_id: str, variant: str, *, expires_seconds: int, filename: str, content_type: str
    ) -> str | None:
        return None

    async def delete(self, task_id: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self._dir(task_id), True)

    async def close(self) -> None:
        pass


# The name this class had before S3 storage existed.
MediaStore = LocalMedia


class _S3Reader:
    def __init__(self, body: Any) -> None:
        self._body = body

    async def read(self, n: int) -> bytes:
        # The body's read may return less than asked; callers want full chunks until the end.
        out = bytearray()
        while len(out) < n:
            data = await self._body.read(n - len(out))
            if not data:
                break
            out += data
        return bytes(out)

    async def aclose(self) -> None:
        self._body.close()


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``."""
    if not url.startswith("s3://"):
        raise ValueError("must start with s3://")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError("names no bucket")
    return bucket, prefix.strip("/")


class S3Media:
    """Objects in an S3-compatible bucket, through one aiobotocore client.

    Create it with :meth:`open` inside the running event loop; :meth:`close` on shutdown.
    """

    def __init__(
        self,
        client: Any,
        stack: contextlib.AsyncExitStack,
        bucket: str,
        prefix: str,
        part_size: int,
        max_bytes: int | None = None,
    ) -> None:
        self.client = client
        self.max_bytes = max_bytes
        self._stack = stack
        self.bucket = bucket
        self.prefix = prefix
        self.part_size = part_size

    @classmethod
    async def open(cls, config: MediaConfig) -> S3Media:
        try:
            from aiobotocore.config import AioConfig
            from aiobotocore.session import get_session
        except ImportError:
            from .errors import ConfigError

            raise ConfigError("media.url: S3 storage needs aiobotocore: pip install 'vidgate[s3]'") from None

        assert config.url is not None
        bucket, prefix = parse_s3_url(config.url)
        kwargs: dict[str, Any] = {}
        if config.access_key_id:
            # Otherwise botocore's usual chain: AWS_* environment, shared files, instance role.
            kwargs["aws_access_key_id"] = config.access_key_id
            kwargs["aws_secret_access_key"] = config.secret_access_key
        stack = contextlib.AsyncExitStack()
        client = await stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=config.endpoint_url,
                region_name=config.region,
                config=AioConfig(
                    connect_timeout=10,
                    read_timeout=60,
                    signature_version="s3v4",
                    retries={"max_attempts": 3, "mode": "standard"},
                    # Checksums only where the API demands them: several S3-compatible
                    # stores reject botocore's newer default trailers.
                    request_checksum_calculation="when_required",
                    s3={"addressing_style": config.addressing_style},
                ),
                **kwargs,
            )
        )
        return cls(client, stack, bucket, prefix, config.part_size_bytes, config.max_result_bytes)

    def key(self, task_id: str, variant: str) -> str:
        _check(task_id, variant)
        return f"{self.prefix}/{task_id}/{variant}" if self.prefix else f"{task_id}/{variant}"

    async def put(self, task_id: str, variant: str, chunks: AsyncIterator[bytes], content_type: str) -> StoredMedia:
        """Stream into the bucket (multipart above one part), checked by :class:`CheckedStream`."""
        key = self.key(task_id, variant)
        buf = bytearray()
        stream = CheckedStream(variant, chunks, self.max_bytes)
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in stream:
                buf += chunk
                while len(buf) >= self.part_size:
                    if upload_id is None:
                        created = await self.client.create_multipart_upload(
                            Bucket=self.bucket, Key=key, ContentType=stream.content_type
                        )
                        upload_id = created["UploadId"]
                    # One copy for the part; the bytearray then keeps only the remainder.
                    part = bytes(memoryview(buf)[: self.part_size])
                    del buf[: self.part_size]
                    answer = await self.client.upload_part(
                        Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=len(parts) + 1, Body=part
                    )
                    parts.append({"PartNumber": len(parts) + 1, "ETag": answer["ETag"]})
            if upload_id is None:
                # Smaller than one part: one plain PUT.
                await self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=bytes(buf), ContentType=stream.content_type
                )
            else:
                if buf:
                    answer = await self.client.upload_part(
                        Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=len(parts) + 1, Body=bytes(buf)
                    )
                    parts.append({"PartNumber": len(parts) + 1, "ETag": answer["ETag"]})
                buf = bytearray()
                await self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
                upload_id = None
        except BaseException:
            if upload_id is not None:
                # Unfinished parts are billed until aborted.
                with contextlib.suppress(Exception):
                    await asyncio.shield(
                        self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                    )
            raise
        return StoredMedia(variant, stream.size, stream.content_type or "application/octet-stream")

    async def put_file(self, task_id: str, variant: str, path: Path, content_type: str) -> StoredMedia:
        try:
            return await self.put(task_id, variant, _file_chunks(path), content_type)
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)

    async def stat(self, task_id: str, variant: str) -> MediaInfo | None:
        from botocore.exceptions import ClientError

        try:
            head = await self.client.head_object(Bucket=self.bucket, Key=self.key(task_id, variant))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        modified = head.get("LastModified")
        return MediaInfo(
            size=int(head["ContentLength"]),
            mtime=modified.timestamp() if modified is not None else time.time(),
            content_type=head.get("ContentType"),
        )

    async def open_range(self, task_id: str, variant: str, start: int = 0, end: int | None = None) -> MediaReader:
        wanted = f"bytes={start}-{'' if end is None else end - 1}"
        answer = await self.client.get_object(Bucket=self.bucket, Key=self.key(task_id, variant), Range=wanted)
        return _S3Reader(answer["Body"])

    @contextlib.asynccontextmanager
    async def local_copy(self, task_id: str, variant: str) -> AsyncIterator[Path]:
        async with temp_dir() as tmp:
            path = tmp / variant
            reader = await self.open_range(task_id, variant)
            f = await asyncio.to_thread(open, path, "wb")
            try:
                while chunk := await reader.read(_READ_CHUNK):
                    await asyncio.to_thread(f.write, chunk)
            finally:
                await asyncio.to_thread(f.close)
                await reader.aclose()
            yield path

    async def presigned_url(
        self, task_id: str, variant: str, *, expires_seconds: int, filename: str, content_type: str
    ) -> str | None:
        url: str = await self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": self.key(task_id, variant),
                "ResponseContentDisposition": f'inline; filename="{filename}"',
                "ResponseContentType": content_type,
            },
            ExpiresIn=expires_seconds,
        )
        return url

    async def delete(self, task_id: str) -> None:
        await self.client.delete_objects(
            Bucket=self.bucket,
            Delete={"Objects": [{"Key": self.key(task_id, v)} for v in VARIANTS], "Quiet": True},
        )

    async def close(self) -> None:
        await self._stack.aclose()


async def open_media(config: MediaConfig) -> MediaStorage:
    """The storage ``[media]`` names: S3 when ``url`` is set, else the local directory."""
    if config.url:
        return await S3Media.open(config)
    return LocalMedia(Path(config.path), config.max_result_bytes)
