"""Media in an S3-compatible bucket: a real S3 API server (moto in server mode) on 127.0.0.1."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
import tracemalloc
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from processes import free_port
from scripted_vendor import Scripted, scripted_config

from vidgate import MediaSource
from vidgate.config import parse_config
from vidgate.media import MIN_PART_BYTES, S3Media
from vidgate.testing import run_gateway
from vidgate.worker import Worker


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """``moto_server`` in its own process (so its memory is not ours), on a free port."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    import socket

    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


@pytest.fixture
async def bucket(s3_endpoint):
    """A fresh bucket; yields a config [media] table pointing into it under a prefix."""
    name = "vg-" + secrets.token_hex(6)
    media = {
        "url": f"s3://{name}/some/prefix",
        "endpoint_url": s3_endpoint,
        "region": "us-east-1",
        "access_key_id": "testing",
        "secret_access_key": "testing",
        "addressing_style": "path",
    }
    storage = await S3Media.open(parse_config({"media": media}).media)
    await storage.client.create_bucket(Bucket=name)
    try:
        yield media, storage
    finally:
        await storage.close()


async def keys(storage: S3Media) -> list[str]:
    answer = await storage.client.list_objects_v2(Bucket=storage.bucket)
    return sorted(o["Key"] for o in answer.get("Contents", []))


class BigResult(Scripted):
    """Streams a deterministic result of ``size`` bytes in 1 MiB chunks, never whole."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    async def fetch_result(self, handle: dict[str, Any], result: dict[str, Any], variant: str, ctx: Any):
        if variant == "thumbnail":
            return None

        async def chunks():
            for i in range(0, self.size, 1 << 20):
                yield pattern(i, min(1 << 20, self.size - i))

        return MediaSource(chunks=chunks(), content_type="video/mp4")


MP4_HEAD = b"\x00\x00\x00\x18ftypisom"  # the storage sniffs what it stores: start like an MP4


def pattern(offset: int, n: int) -> bytes:
    block = bytes((offset // (1 << 20) + j) % 251 for j in range(251))
    data = (block * (n // 251 + 1))[:n]
    return MP4_HEAD + data[len(MP4_HEAD) :] if offset == 0 else data


def expected(size: int) -> bytes:
    return b"".join(pattern(i, min(1 << 20, size - i)) for i in range(0, size, 1 << 20))


async def test_local_task_keeps_video_and_thumbnail_in_s3_and_streams_them(tmp_path, bucket):
    media, storage = bucket
    async with run_gateway({"media": media}, tmp_path) as gw:
        key = await gw.token()
        status, task = await gw.post("/v1/videos", key, json={"model": "local-v1", "prompt": "a red ball"})
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        assert await keys(storage) == [
            f"some/prefix/{task['id']}/{variant}" for variant in ("last_frame", "thumbnail", "video")
        ]
        assert not (tmp_path / "data" / "media").exists()

        auth = {"Authorization": f"Bearer {key}"}
        url = f"{gw.url}/v1/videos/{task['id']}/content"
        async with gw.http.get(url, headers=auth) as r:
            assert r.status == 200
            body = await r.read()
            assert r.headers["Content-Type"] == "video/mp4"
            assert int(r.headers["Content-Length"]) == len(body)
            etag = r.headers["ETag"]
        stored = await storage.client.get_object(Bucket=storage.bucket, Key=f"some/prefix/{task['id']}/video")
        assert body == await stored["Body"].read()
        assert body[4:8] == b"ftyp"

        async with gw.http.get(url, headers={**auth, "Range": "bytes=10-109"}) as r:
            assert r.status == 206
            assert r.headers["Content-Range"] == f"bytes 10-109/{len(body)}"
            assert await r.read() == body[10:110]
        async with gw.http.get(url, headers={**auth, "Range": "bytes=-50"}) as r:
            assert r.status == 206 and await r.read() == body[-50:]
        async with gw.http.get(url, headers={**auth, "Range": "bytes=0-9,20-29"}) as r:
            assert r.status == 206 and r.headers["Content-Type"].startswith("multipart/byteranges")
            raw = await r.read()
            assert body[0:10] in raw and body[20:30] in raw
        # If-Range with a stale validator: the whole file, not the range.
        async with gw.http.get(url, headers={**auth, "Range": "bytes=0-9", "If-Range": '"stale"'}) as r:
            assert r.status == 200 and await r.read() == body
        async with gw.http.get(url, headers={**auth, "Range": "bytes=0-9", "If-Range": etag}) as r:
            assert r.status == 206 and await r.read() == body[:10]
        async with gw.http.get(url, headers={**auth, "Range": f"bytes={len(body)}-"}) as r:
            assert r.status == 416
            assert r.headers["Content-Range"] == f"bytes */{len(body)}"
            assert (await r.json())["error"]["code"] == "range_not_satisfiable"
        async with gw.http.head(url, headers=auth) as r:
            assert r.status == 200
            assert int(r.headers["Content-Length"]) == len(body)
            assert await r.read() == b""
        async with gw.http.get(url + "?variant=thumbnail", headers=auth) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "image/webp"
            assert (await r.read())[8:12] == b"WEBP"

        status, _ = await gw.request("DELETE", f"/v1/videos/{task['id']}", key)
        assert status == 200
        assert await keys(storage) == []
        status, answer = await gw.get(f"/v1/videos/{task['id']}/content", key)
        assert status == 404


async def test_object_deleted_behind_the_gateway_is_a_404(tmp_path, bucket):
    media, storage = bucket
    async with run_gateway(scripted_config(media=media), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token()
        _, task = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p"})
        await gw.wait(task["id"], key)
        await storage.client.delete_object(Bucket=storage.bucket, Key=storage.key(task["id"], "video"))
        status, answer = await gw.get(f"/v1/videos/{task['id']}/content", key)
        assert status == 404 and answer["error"]["param"] == "variant"


async def test_redirect_mode_answers_302_to_a_presigned_url(tmp_path, bucket):
    media, storage = bucket
    media = {**media, "serve": "redirect", "presign_seconds": 120}
    async with run_gateway(scripted_config(media=media), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token()
        _, task = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p"})
        await gw.wait(task["id"], key)
        url = f"{gw.url}/v1/videos/{task['id']}/content"
        async with gw.http.get(url, headers={"Authorization": f"Bearer {key}"}, allow_redirects=False) as r:
            assert r.status == 302
            assert "no-store" in r.headers["Cache-Control"]
            location = r.headers["Location"]
        parts = urlsplit(location)
        assert f"{parts.scheme}://{parts.netloc}" == media["endpoint_url"]
        assert "X-Amz-Expires=120" in parts.query and "X-Amz-Signature=" in parts.query
        from scripted_vendor import VIDEO

        # The presigned URL works without the gateway's key (moto does not check signatures).
        async with aiohttp.ClientSession() as plain:
            async with plain.get(location) as r:
                assert r.status == 200 and await r.read() == VIDEO
                assert r.headers["Content-Type"] == "video/mp4"
        # Auth and state checks still come first.
        status, _ = await gw.get(f"/v1/videos/{task['id']}/content", "sk-wrong")
        assert status == 401


async def test_large_result_is_uploaded_in_parts_without_holding_it(bucket):
    media, storage = bucket
    size = 7 * MIN_PART_BYTES + 12345  # eight parts at the minimum part size
    storage.part_size = MIN_PART_BYTES
    source = BigResult(size)
    result = await source.fetch_result({}, {}, "video", None)
    tracemalloc.start()
    try:
        stored = await storage.put("video_big", "video", result.chunks, "video/mp4")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stored.size == size
    # A part being sent (and its copy in the HTTP client) and the next one filling: a
    # bound set by the part size, half the video here, whatever the video's size.
    assert peak < 4 * MIN_PART_BYTES, peak
    head = await storage.client.head_object(Bucket=storage.bucket, Key=storage.key("video_big", "video"), PartNumber=1)
    assert head["PartsCount"] == 8
    reader = await storage.open_range("video_big", "video")
    got = bytearray()
    while chunk := await reader.read(1 << 20):
        got += chunk
    await reader.aclose()
    assert bytes(got) == expected(size)


async def test_failed_upload_is_aborted(bucket):
    media, storage = bucket
    storage.part_size = MIN_PART_BYTES

    async def broken():
        for _ in range(7):
            yield MP4_HEAD + b"x" * ((1 << 20) - len(MP4_HEAD))
        raise ConnectionResetError("vendor went away")

    with pytest.raises(ConnectionResetError):
        await storage.put("video_broken", "video", broken(), "video/mp4")
    uploads = await storage.client.list_multipart_uploads(Bucket=storage.bucket)
    assert uploads.get("Uploads", []) == []
    assert await keys(storage) == []


async def test_large_result_through_the_gateway_and_a_ranged_read_across_parts(tmp_path, bucket):
    media, storage = bucket
    size = 2 * MIN_PART_BYTES + 777
    media = {**media, "part_size_bytes": MIN_PART_BYTES}
    async with run_gateway(scripted_config(media=media), tmp_path, extra_plugins={"scripted": BigResult(size)}) as gw:
        key = await gw.token()
        _, task = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p"})
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        head = await storage.client.head_object(
            Bucket=storage.bucket, Key=storage.key(task["id"], "video"), PartNumber=1
        )
        assert head["PartsCount"] == 3
        want = expected(size)
        start, end = MIN_PART_BYTES - 100, MIN_PART_BYTES + 100
        async with gw.http.get(
            f"{gw.url}/v1/videos/{task['id']}/content",
            headers={"Authorization": f"Bearer {key}", "Range": f"bytes={start}-{end - 1}"},
        ) as r:
            assert r.status == 206 and await r.read() == want[start:end]
        async with gw.http.get(
            f"{gw.url}/v1/videos/{task['id']}/content", headers={"Authorization": f"Bearer {key}"}
        ) as r:
            assert await r.read() == want


async def test_expiry_sweep_deletes_from_s3(tmp_path, bucket):
    media, storage = bucket
    config = scripted_config(media={**media, "retention_hours": 0.0})
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token()
        _, task = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p"})
        await gw.wait(task["id"], key)
        assert storage.key(task["id"], "video") in await keys(storage)
        assert await Worker(gw.gateway).sweep_expired_media() == 1
        assert [k for k in await keys(storage) if task["id"] in k] == []
        status, answer = await gw.get(f"/v1/videos/{task['id']}/content", key)
        assert status == 410 and answer["error"]["code"] == "video_expired"


@pytest.mark.parametrize(
    ("media", "message"),
    [
        ({"url": "https://bucket/x"}, "media.url: must start with s3://"),
        ({"url": "s3:///x"}, "media.url: names no bucket"),
        ({"url": "s3://b", "access_key_id": "a"}, "access_key_id and secret_access_key together"),
        ({"serve": "redirect"}, "media.serve: 'redirect' needs an S3 url"),
        ({"url": "s3://b", "serve": "sideways"}, "media.serve: must be 'stream' or 'redirect'"),
        ({"url": "s3://b", "part_size_bytes": 1024}, "media.part_size_bytes: must be at least"),
        ({"url": "s3://b", "presign_seconds": 0}, "media.presign_seconds"),
    ],
)
def test_bad_media_config_names_the_key(media, message):
    from vidgate.errors import ConfigError

    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_config({"media": media})


def test_secret_interpolated_from_the_environment_and_not_in_repr(monkeypatch):
    monkeypatch.setenv("VG_TEST_S3_SECRET", "s3cr3t-value")
    config = parse_config(
        {"media": {"url": "s3://b/p", "access_key_id": "AK", "secret_access_key": "${VG_TEST_S3_SECRET}"}}
    )
    assert config.media.secret_access_key == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(config)


async def test_extend_reads_the_source_from_object_storage(tmp_path, bucket):
    """A derived task gets the source's media as local files for the derive call, also
    when they live in the bucket (the local vendor copies what its render reads later)."""
    media, storage = bucket
    async with run_gateway({"media": media}, tmp_path) as gw:
        key = await gw.token()
        status, source = await gw.post(
            "/v1/videos", key, json={"model": "local-v1", "prompt": "a red ball", "seconds": "2"}
        )
        assert status == 200, source
        assert (await gw.wait(source["id"], key))["status"] == "completed"
        status, task = await gw.post(
            "/v1/videos/extensions", key, json={"prompt": "it rolls on", "seconds": "2", "video": {"id": source["id"]}}
        )
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        assert f"some/prefix/{task['id']}/video" in await keys(storage)
