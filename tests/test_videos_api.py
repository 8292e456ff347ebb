"""``/v1/videos`` over raw HTTP (what non-SDK clients send), and the OpenAPI document.

Uses the instant in-process ``scripted`` vendor; ``test_openai_sdk.py`` covers the
openai SDK against real renders.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
import jsonschema
import pytest
from openapi_spec_validator import validate as validate_spec
from scripted_vendor import VIDEO, Scripted, scripted_config

from vidgate.api.openapi import document
from vidgate.testing import run_gateway
from vidgate.thumbnail import THUMBNAIL_TYPE

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
PNG_DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


def schema(name: str) -> dict[str, Any]:
    """A component schema, resolvable on its own (refs point into the whole document)."""
    doc = document()
    return {**doc["components"]["schemas"][name], "components": doc["components"]}


def conforms(name: str, value: Any) -> None:
    jsonschema.validate(value, schema(name), cls=jsonschema.Draft202012Validator)


def form(**fields: Any) -> aiohttp.MultipartWriter:
    """A multipart/form-data body (aiohttp's FormData would send text-only forms urlencoded)."""
    writer = aiohttp.MultipartWriter("form-data")
    for name, value in fields.items():
        if isinstance(value, tuple):
            part = writer.append(value[1], {"Content-Type": value[2]})
            part.set_content_disposition("form-data", name=name, filename=value[0])
        else:
            part = writer.append(value)
            part.set_content_disposition("form-data", name=name)
    return writer


async def stored_request(gw, task_id: str) -> dict[str, Any]:
    return await gw.gateway.store.task_request(task_id)


# -- the OpenAPI document -----------------------------------------------------------------


async def test_openapi_document_is_valid_and_covers_every_route(tmp_path):
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        status, doc = await gw.get("/openapi.json")
        assert status == 200
        validate_spec(doc)
        assert doc["servers"] == [{"url": gw.url}]
        model = doc["components"]["schemas"]["VideoCreateMultipart"]["properties"]["model"]
        assert model["enum"] == ["scripted-1", "scripted-2"]
        from vidgate.api import create_app

        app = create_app(gw.gateway, run_worker=False)
        served = {(r.path, m.lower()) for r in app.routes for m in r.methods if m != "HEAD"}
        documented = {(p, m) for p, ops in doc["paths"].items() for m in ops}
        assert served == documented
    for name in ("Error", "Video", "VideoList", "VideoDeleted", "ModelList"):
        jsonschema.Draft202012Validator.check_schema(schema(name))


async def test_responses_match_the_document(tmp_path):
    vendor = Scripted()
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        status, task = await gw.post("/v1/videos", key, json={"model": "scripted-1", "prompt": "a fox"})
        assert status == 200
        conforms("Video", task)
        # Every field the document names is present, and nothing else.
        assert set(task) == set(schema("Video")["properties"])
        done = await gw.wait(task["id"], key)
        conforms("Video", done)
        assert done["url"].endswith(f"/v1/videos/{task['id']}/content")
        status, listing = await gw.get("/v1/videos", key)
        conforms("VideoList", listing)
        # The list shows a completed task's URL as retrieving it does (unfinished ones: null).
        assert listing["data"][0]["url"] == done["url"]
        assert task["url"] is None
        status, models = await gw.get("/v1/models", key)
        conforms("ModelList", models)
        assert {m["id"] for m in models["data"]} == {"scripted-1", "scripted-2"}
        status, error = await gw.get("/v1/videos/nope", key)
        assert status == 404
        conforms("Error", error)
        status, deleted = await gw.request("DELETE", f"/v1/videos/{task['id']}", key)
        conforms("VideoDeleted", deleted)
        vendor.fail_with = __import__("vidgate").TaskError("content_policy", "refused")
        status, task = await gw.post("/v1/videos", key, json={"model": "scripted-1", "prompt": "a fox"})
        failed = await gw.wait(task["id"], key)
        conforms("Video", failed)
        assert failed["error"] == {"code": "content_policy", "message": "refused"}


# -- create -------------------------------------------------------------------------------


async def test_json_multipart_and_unified_create_map_to_the_same_request(tmp_path):
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token()
        common = {"model": "scripted-1", "prompt": "a fox", "seconds": "8", "size": "1280x720"}
        s1, unified = await gw.post("/v1/video/generations", key, json={**common, "image": PNG_DATA_URL})
        s2, as_json = await gw.post("/v1/videos", key, json={**common, "input_reference": {"image_url": PNG_DATA_URL}})
        s3, as_file = await gw.post(
            "/v1/videos", key, data=form(**common, input_reference=("ref.png", PNG, "image/png"))
        )
        s4, as_flat = await gw.post(
            "/v1/videos", key, data=form(**common, **{"input_reference[image_url]": PNG_DATA_URL})
        )
        assert (s1, s2, s3, s4) == (200, 200, 200, 200), (unified, as_json, as_file, as_flat)
        requests = [await stored_request(gw, t["id"]) for t in (unified, as_json, as_file, as_flat)]
        for r in requests:
            # ``param`` names the client's field, which differs by surface (``image`` or an upload).
            r["images"] = [{k: v for k, v in img.items() if k not in ("filename", "param")} for img in r["images"]]
        assert requests[0] == requests[1] == requests[2] == requests[3]
        assert requests[0]["seconds"] == 8 and requests[0]["size"] == "1280x720"
        assert base64.b64decode(requests[0]["images"][0]["data"]) == PNG
        assert as_file["seconds"] == "8" and as_file["size"] == "1280x720"


async def test_multipart_accepts_a_large_data_url_text_part(tmp_path):
    # Text parts above starlette's default 1 MiB must pass: image_url may be 20 MiB.
    big = PNG + b"\x00" * (2 * 1024 * 1024)
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token()
        url = "data:image/png;base64," + base64.b64encode(big).decode()
        status, task = await gw.post(
            "/v1/videos", key, data=form(model="scripted-1", prompt="x", **{"input_reference[image_url]": url})
        )
        assert status == 200, task
        request = await stored_request(gw, task["id"])
        assert len(base64.b64decode(request["images"][0]["data"])) == len(big)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "scripted-1", "prompt": "x", "seconds": "5"}, "seconds"),
        ({"model": "scripted-1", "prompt": "x", "size": "big"}, "size"),
        ({"model": "scripted-1", "prompt": "x", "input_reference": {"file_id": "file_1"}}, "input_reference.file_id"),
        ({"model": "scripted-1", "prompt": "x", "input_reference": "bm90IGFuIGltYWdl"}, "input_reference"),
        ({"prompt": "x"}, "model"),
        ({"model": "scripted-1"}, "prompt"),
        ({"model": "nope", "prompt": "x"}, "model"),
    ],
)
async def test_bad_create_names_the_param(tmp_path, body, param):
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token()
        for kwargs in (
            {"json": body},
            {"data": form(**{k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()})},
        ):
            if "data" in kwargs and isinstance(body.get("input_reference"), dict):
                kwargs = {
                    "data": form(
                        **{
                            **{k: v for k, v in body.items() if k != "input_reference"},
                            "input_reference[file_id]": "file_1",
                        }
                    )
                }
            async with gw.http.post(
                gw.url + "/v1/videos", headers={"Authorization": f"Bearer {key}"}, **kwargs
            ) as resp:
                error = await resp.json()
                assert resp.status == 400, error
                assert resp.headers["x-should-retry"] == "false"
            assert error["error"]["param"] == param, error
            assert error["error"]["type"] == "invalid_request_error"


async def test_bad_bodies(tmp_path):
    config = scripted_config(server={"max_body_bytes": 4096})
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token()
        status, error = await gw.post(
            "/v1/videos", key, data=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert status == 400 and error["error"]["code"] == "invalid_json"
        status, error = await gw.post(
            "/v1/videos", key, data=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data"}
        )
        assert status == 400 and error["error"]["code"] == "invalid_multipart", error
        status, error = await gw.post("/v1/videos", key, data=form(model="scripted-1", prompt="x" * 5000))
        assert status == 413 and error["error"]["code"] == "request_too_large"
        status, error = await gw.post("/v1/videos", key, json={"model": "scripted-1", "prompt": "x" * 5000})
        assert status == 413
        # Content types are matched case-insensitively; urlencoded forms work too.
        body = form(model="scripted-1", prompt="ok")
        status, task = await gw.post(
            "/v1/videos",
            key,
            data=body,
            headers={"Content-Type": body.content_type.replace("multipart/form-data", "Multipart/Form-Data")},
        )
        assert status == 200, task
        status, task = await gw.post("/v1/videos", key, data={"model": "scripted-1", "prompt": "ok", "seconds": "8"})
        assert status == 200 and task["seconds"] == "8", task


async def test_auth_and_unknown_routes_use_the_error_shape(tmp_path):
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        for headers in ({}, {"Authorization": "Bearer vg-wrong"}, {"Authorization": "Basic abc"}):
            status, error = await gw.get("/v1/videos", headers=headers)
            assert status == 401 and error["error"]["code"] == "invalid_api_key", error
            conforms("Error", error)
        key = await gw.token()
        status, error = await gw.get("/v1/nothing-here", key)
        assert status == 404
        conforms("Error", error)
        status, error = await gw.request("PUT", "/v1/videos", key)
        assert status == 405
        conforms("Error", error)


# -- retrieve, list -----------------------------------------------------------------------


async def test_poll_hint_follows_the_channel(tmp_path):
    vendor = Scripted()
    vendor.polls_to_finish = 10_000
    config = scripted_config([{"name": "main", "vendor": "scripted", "options": {"poll_interval": 2.5}}])
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        _, task = await gw.post("/v1/videos", key, json={"model": "scripted-1", "prompt": "a fox"})
        async with gw.http.get(f"{gw.url}/v1/videos/{task['id']}", headers={"Authorization": f"Bearer {key}"}) as resp:
            assert resp.headers["openai-poll-after-ms"] == "2500"
        vendor.polls_to_finish = 1
        await gw.gateway.store.make_due(task["id"])
        await gw.wait(task["id"], key, timeout=10)
        async with gw.http.get(f"{gw.url}/v1/videos/{task['id']}", headers={"Authorization": f"Bearer {key}"}) as resp:
            assert "openai-poll-after-ms" not in resp.headers


async def test_list_pages_walk_every_task_once(tmp_path):
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token("a")
        other = await gw.token("b")
        status, empty = await gw.get("/v1/videos", key)
        assert empty == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
        ids = []
        for i in range(7):
            _, task = await gw.post("/v1/videos", key, json={"model": "scripted-1", "prompt": f"clip {i}"})
            ids.append(task["id"])
        _, foreign = await gw.post("/v1/videos", other, json={"model": "scripted-1", "prompt": "theirs"})
        for order, expected in (("desc", ids[::-1]), ("asc", ids)):
            seen, after = [], None
            while True:
                query = f"?limit=3&order={order}" + (f"&after={after}" if after else "")
                status, page = await gw.get("/v1/videos" + query, key)
                assert status == 200
                assert page["first_id"] == page["data"][0]["id"] and page["last_id"] == page["data"][-1]["id"]
                seen += [v["id"] for v in page["data"]]
                after = page["last_id"]
                if not page["has_more"]:
                    break
            assert seen == expected
        _, page = await gw.get("/v1/videos?limit=7", key)
        assert len(page["data"]) == 7 and page["has_more"] is False
        for query in (
            "limit=0",
            "limit=101",
            "limit=abc",
            "limit=%C2%B2",
            "limit=-1",
            "order=up",
            f"after={foreign['id']}",
            "after=video_missing",
        ):
            status, error = await gw.get("/v1/videos?" + query, key)
            assert status == 400, (query, error)
            assert error["error"]["param"] == query.split("=")[0]


# -- content, delete, remix ---------------------------------------------------------------


async def test_content_variants_ranges_and_states(tmp_path):
    vendor = Scripted()
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        auth = {"Authorization": f"Bearer {key}"}
        _, task = await gw.post("/v1/videos", key, json={"model": "scripted-1", "prompt": "a fox"})
        await gw.wait(task["id"], key)
        url = f"{gw.url}/v1/videos/{task['id']}/content"
        async with gw.http.get(url, headers={**auth, "Range": "bytes=0-9"}) as resp:
            assert resp.status == 206 and await resp.read() == VIDEO[:10]
            assert resp.headers["Content-Range"] == f"bytes 0-9/{len(VIDEO)}"
        async with gw.http.get(url, headers={**auth, "Range": "bytes=2-1,zz"}) as resp:
            assert resp.status == 200 and await resp.read() == VIDEO  # unparsable: ignored
        async with gw.http.get(url, headers={**auth, "Range": f"bytes={len(VIDEO)}-"}) as resp:
            error = await resp.json()
            assert resp.status == 416 and error["error"]["code"] == "range_not_satisfiable"
            assert resp.headers["Content-Range"] == f"bytes */{len(VIDEO)}"
        async with gw.http.head(url, headers=auth) as resp:
            assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(VIDEO)
            assert resp.headers["Content-Type"] == "video/mp4"
        # The scripted video does not decode, so there is no thumbnail: a 404, not a 500.
        status, error = await gw.get(f"/v1/videos/{task['id']}/content?variant=thumbnail", key)
        assert status == 404 and error["error"]["param"] == "variant"
        # A variant the vendor did not make is absent (404); one nobody makes is a 400.
        status, error = await gw.get(f"/v1/videos/{task['id']}/content?variant=spritesheet", key)
        assert status == 404 and error["error"]["param"] == "variant"
        status, error = await gw.get(f"/v1/videos/{task['id']}/content?variant=poster", key)
        assert status == 400 and error["error"]["param"] == "variant"

        vendor.polls_to_finish = 10_000
        _, pending = await gw.post("/v1/videos", key, json={"model": "scripted-1", "prompt": "slow"})
        async with gw.http.get(f"{gw.url}/v1/videos/{pending['id']}/content", headers=auth) as resp:
            error = await resp.json()
            assert resp.status == 409 and resp.headers["x-should-retry"] == "false"
            assert error["error"]["code"] == "video_not_ready"
        vendor.polls_to_finish = 1
        vendor.fail_with = __import__("vidgate").TaskError("content_policy", "no")
        _, failing = await gw.post("/v1/videos", key, json={"model": "scripted-1", "prompt": "bad"})
        await gw.wait(failing["id"], key)
        status, error = await gw.get(f"/v1/videos/{failing['id']}/content", key)
        assert status == 409 and error["error"]["code"] == "video_failed"


async def test_thumbnail_is_made_from_a_real_video(tmp_path):
    import io

    import av

    from vidgate import MediaSource

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        for _ in range(4):
            frame = av.VideoFrame(320, 180, "yuv420p")
            for plane in frame.planes:
                plane.update(b"\x80" * plane.buffer_size)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    mp4 = buffer.getvalue()

    class RealVideo(Scripted):
        async def fetch_result(self, handle, result, variant, ctx):
            return None if variant == "thumbnail" else MediaSource.from_bytes(mp4)

    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": RealVideo()}) as gw:
        key = await gw.token()
        _, task = await gw.post("/v1/videos", key, json={"model": "scripted-1", "prompt": "a fox"})
        await gw.wait(task["id"], key)
        async with gw.http.get(
            f"{gw.url}/v1/videos/{task['id']}/content?variant=thumbnail", headers={"Authorization": f"Bearer {key}"}
        ) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == THUMBNAIL_TYPE
            data = await resp.read()
        with av.open(io.BytesIO(data)) as container:
            frame = next(container.decode(video=0))
        assert (frame.width, frame.height) == (320, 180)


async def test_delete(tmp_path):
    vendor = Scripted()
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        other = await gw.token("other")
        _, task = await gw.post("/v1/videos", key, json={"model": "scripted-1", "prompt": "a fox"})
        await gw.wait(task["id"], key)
        assert (gw.gateway.media.root / task["id"] / "video").is_file()
        status, error = await gw.request("DELETE", f"/v1/videos/{task['id']}", other)
        assert status == 404
        status, body = await gw.request("DELETE", f"/v1/videos/{task['id']}", key)
        assert (status, body) == (200, {"id": task["id"], "object": "video.deleted", "deleted": True})
        assert not (gw.gateway.media.root / task["id"]).exists()
        for method, path in (("GET", ""), ("GET", "/content"), ("DELETE", "")):
            status, error = await gw.request(method, f"/v1/videos/{task['id']}{path}", key)
            assert status == 404, (method, path)
        vendor.polls_to_finish = 10_000
        _, pending = await gw.post("/v1/videos", key, json={"model": "scripted-1", "prompt": "slow"})
        status, error = await gw.request("DELETE", f"/v1/videos/{pending['id']}", key)
        assert status == 409 and error["error"]["code"] == "video_not_finished"
        status, _ = await gw.get(f"/v1/videos/{pending['id']}", key)
        assert status == 200


async def test_remix(tmp_path):
    vendor = Scripted()
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        _, source = await gw.post("/v1/videos", key, json={"model": "scripted-1", "prompt": "a fox", "seconds": 8})
        path = f"/v1/videos/{source['id']}/remix"
        status, error = await gw.post(path, key, json={"prompt": "at night"})
        assert status == 409 and error["error"]["code"] == "video_not_finished"
        await gw.wait(source["id"], key)
        for body in ({}, {"prompt": "  "}, {"prompt": 3}, {"prompt": "x" * 32_001}):
            status, error = await gw.post(path, key, json=body)
            assert status == 400 and error["error"]["param"] == "prompt", body
        status, remixed = await gw.post(path, key, json={"prompt": "at night"})
        assert status == 200, remixed
        assert remixed["remixed_from_video_id"] == source["id"] and remixed["seconds"] == "8"
        status, again = await gw.post(path, key, data=form(prompt="in the rain"))
        assert status == 200 and again["prompt"] == "in the rain"
        assert [p for _, p in vendor.submitted if "remix" in p][0]["remix"] == "s-1"
        done = await gw.wait(remixed["id"], key)
        assert done["status"] == "completed"

        _, plain = await gw.post("/v1/videos", key, json={"model": "scripted-2", "prompt": "a fox"})
        await gw.wait(plain["id"], key)
        status, error = await gw.post(f"/v1/videos/{plain['id']}/remix", key, json={"prompt": "x"})
        assert status == 400 and error["error"]["code"] == "remix_not_supported"
        assert "scripted-2" in error["error"]["message"]
        status, error = await gw.post("/v1/videos/video_nope/remix", key, json={"prompt": "x"})
        assert status == 404


async def test_multipart_metadata_forms(tmp_path):
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token()
        fields = {
            "model": "scripted-1",
            "prompt": "x",
            "metadata[fps]": "12",
            "metadata[style][name]": "noir",
            "metadata[tags][]": "a",
            "metadata[flag]": "true",
        }
        status, task = await gw.post("/v1/videos", key, data=form(**fields))
        assert status == 200, task
        request = await stored_request(gw, task["id"])
        assert request["metadata"] == {"fps": 12, "style": {"name": "noir"}, "tags": ["a"], "flag": True}
        status, task = await gw.post(
            "/v1/videos", key, data=form(model="scripted-1", prompt="x", metadata='{"a": [1]}')
        )
        assert status == 200 and (await stored_request(gw, task["id"]))["metadata"] == {"a": [1]}
        for bad in ("[1, 2]", "not json", "[" * 100_000 + "]" * 100_000, '{"a":' * 100 + "1" + "}" * 100):
            status, error = await gw.post("/v1/videos", key, data=form(model="scripted-1", prompt="x", metadata=bad))
            assert status == 400 and error["error"]["param"] == "metadata", (bad[:20], error)


async def test_idempotent_multipart_create(tmp_path):
    vendor = Scripted()
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        headers = {"Idempotency-Key": "k-1"}
        fields = {"model": "scripted-1", "prompt": "a fox", "input_reference": ("r.png", PNG, "image/png")}
        _, first = await gw.post("/v1/videos", key, data=form(**fields), headers=headers)
        _, again = await gw.post("/v1/videos", key, data=form(**fields), headers=headers)
        assert first["id"] == again["id"] and len(vendor.submitted) == 1
        other = {**fields, "input_reference": ("r.png", PNG + b"\x00", "image/png")}
        status, error = await gw.post("/v1/videos", key, data=form(**other), headers=headers)
        assert status == 409 and error["error"]["code"] == "idempotency_key_reused"


# -- core bugs found by these tests, fixed in the core --


async def test_deleting_while_paginating_keeps_the_cursor(tmp_path):
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token()
        for i in range(4):
            _, task = await gw.post("/v1/videos", key, json={"model": "scripted-1", "prompt": f"clip {i}"})
            await gw.wait(task["id"], key)
        _, page = await gw.get("/v1/videos?limit=2", key)
        for video in page["data"]:  # the usual "delete everything" loop
            await gw.request("DELETE", f"/v1/videos/{video['id']}", key)
        status, rest = await gw.get(f"/v1/videos?limit=2&after={page['last_id']}", key)
        assert status == 200 and len(rest["data"]) == 2


async def test_non_ascii_digit_seconds_is_a_400(tmp_path):
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token()
        status, error = await gw.post("/v1/videos", key, json={"model": "scripted-1", "prompt": "x", "seconds": "²"})
        assert status == 400 and error["error"]["param"] == "seconds"


async def test_405_names_the_allowed_methods(tmp_path):
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        async with gw.http.put(gw.url + "/v1/videos/video_x") as resp:
            assert resp.status == 405
            assert set(resp.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "DELETE"}
