"""The kit's declarative model catalogues (``vidgate.catalogue``), through a small queue
vendor built on them and the gateway over HTTP, and through the module's own API."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import pytest
from scripted_vendor import Scripted, scripted_config

from vidgate import CallContext, Channel, Model, Problem, Submission, VendorJob, VendorRejected, VideoRequest, catalogue
from vidgate.errors import ConfigError
from vidgate.testing import run_gateway, tiny_png

PNG = tiny_png(32, 32)
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


@attrs.frozen(kw_only=True)
class AcmeModel(catalogue.Entry):
    """An Acme queue model: one ``app`` id, Acme's own defaults."""

    gateway_inputs: ClassVar[Mapping[str, str]] = {"acme_hook": "is set by the gateway"}
    billed_inputs: ClassVar[tuple[str, ...]] = ("num_frames", "steps")

    app: str
    image_field: str | None = attrs.field(default="image_url", converter=catalogue.optional)
    duration_format: str = "seconds"
    video_path: str = "result.video"

    def problems(self) -> list[tuple[str, str]]:
        own = [] if "/" in self.app else [("app", f"{self.app!r} is not an Acme app (owner/name)")]
        return own + super().problems()

    def as_model(self, name: str) -> Model:
        return self.model_rules(name, self.app, text=True, image=self.image_field is not None)


ACME = catalogue.Catalogue(
    {
        "acme-1": AcmeModel(
            app="acme/one",
            durations=(4, 8),
            default_duration=4,
            last_frame_field="end_image",
            resolution_field="res",
            resolutions=("480p", "720p"),
            default_resolution="720p",
            aspect_ratios=("16:9", "9:16"),
            default_aspect_ratio="16:9",
        )
    },
    AcmeModel,
    kind="Acme app",
    from_ref=lambda ref: AcmeModel(app=ref, description=f"Acme app {ref}"),
    repoint=lambda entry, ref: attrs.evolve(entry, app=ref),
    ref_problem=lambda ref: None if "/" in ref else f"{ref!r} is not an Acme app",
)


class Acme(Scripted):
    """A queue vendor whose models are all :data:`ACME` entries: it records the input
    it would send (images resolved) and refuses an input named ``bad`` like a vendor 422."""

    name = "acme"
    models = ACME.models()

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[dict[str, Any]] = []

    def validate_channel(self, channel: Channel) -> list[str]:
        return ACME.channel_problems(channel)

    def channel_models(self, channel: Channel) -> list[Model]:
        return ACME.channel_models(channel)

    def validate(self, request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
        return catalogue.validate(request, ACME.entry_for(model.name, channel))

    def map_request(self, request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
        entry = ACME.entry_for(model.name, channel)
        return catalogue.map_job(request, entry, {"app": entry.app})

    async def submit(self, job: VendorJob, ctx: CallContext) -> Submission:
        body = await catalogue.vendor_input(job, ctx)
        if "bad" in body.get("prompt", ""):
            field = next(f for f, param in job.payload["params"].items() if param == "seconds")
            raise catalogue.unified_error(VendorRejected(f"{field} is out of range", param=field), job)
        self.inputs.append({"app": job.payload["app"], **body})
        return await super().submit(job, ctx)


def acme_config(**channel: Any) -> dict[str, Any]:
    return scripted_config([{"name": "a", "vendor": "acme", **channel}])


async def test_a_built_in_entry_maps_the_unified_request_and_bills_what_it_makes(tmp_path):
    vendor = Acme()
    async with run_gateway(acme_config(), tmp_path, extra_plugins={"acme": vendor}) as gw:
        key = await gw.token()
        status, task = await gw.post(
            "/v1/video/generations",
            key,
            json={"model": "acme-1", "prompt": "a fox", "seconds": 8, "size": "9:16", "metadata": {"seed": 3}},
        )
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        # Billed on the model's default resolution tier at the requested ratio.
        assert done["seconds"] == "8" and done["size"] == "720x1280", done
        assert vendor.inputs == [
            {"app": "acme/one", "seed": 3, "prompt": "a fox", "duration": "8s", "aspect_ratio": "9:16", "res": "720p"}
        ]


async def test_images_are_passed_as_urls_or_data_uris_with_the_last_frame(tmp_path):
    vendor = Acme()
    async with run_gateway(acme_config(), tmp_path, extra_plugins={"acme": vendor}) as gw:
        key = await gw.token()
        status, task = await gw.post(
            "/v1/video/generations",
            key,
            json={"model": "acme-1", "prompt": "moves", "images": [DATA_URL, DATA_URL], "size": "854x480"},
        )
        assert status == 200, task
        assert (await gw.wait(task["id"], key))["status"] == "completed"
        (sent,) = vendor.inputs
        assert sent["image_url"].startswith("data:image/png;base64,") and sent["end_image"] == sent["image_url"]
        assert base64.b64decode(sent["image_url"].split(",", 1)[1]) == PNG
        # 854x480 rounds to the model's 16:9 and its short side picks the tier; the
        # default duration is sent since the model lists its durations.
        assert sent["aspect_ratio"] == "16:9" and sent["res"] == "480p" and sent["duration"] == "4s"


async def test_image_to_video_sends_no_default_ratio(tmp_path):
    vendor = Acme()
    async with run_gateway(acme_config(), tmp_path, extra_plugins={"acme": vendor}) as gw:
        key = await gw.token()
        status, task = await gw.post(
            "/v1/video/generations", key, json={"model": "acme-1", "prompt": "moves", "image": DATA_URL}
        )
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        (sent,) = vendor.inputs
        assert "aspect_ratio" not in sent and sent["res"] == "720p"  # the image decides the ratio
        assert done["size"] == "1280x720"  # billed at the model's default ratio


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"seconds": 5}, "seconds"),  # the core enforces the entry's durations
        ({"size": "1:1"}, "size"),
        ({"size": "1920x1080"}, "size"),  # 1080p is not offered
        ({"metadata": {"duration": "8s"}}, "metadata.duration"),
        ({"metadata": {"acme_hook": "x"}}, "metadata.acme_hook"),
        ({"metadata": {"steps": 50}}, "metadata.steps"),
        ({"images": [DATA_URL, DATA_URL, DATA_URL]}, "images[2]"),
        ({"prompt": "bad"}, "seconds"),  # the vendor's refusal names its input: the client's field
    ],
)
async def test_what_the_entry_refuses_is_a_400_naming_the_clients_field(tmp_path, body, param):
    vendor = Acme()
    async with run_gateway(acme_config(), tmp_path, extra_plugins={"acme": vendor}) as gw:
        key = await gw.token()
        status, err = await gw.post("/v1/video/generations", key, json={"model": "acme-1", "prompt": "x", **body})
        assert status == 400 and err["error"]["param"] == param, err
        assert vendor.inputs == []


async def test_models_added_in_config_complete_on_their_channel(tmp_path):
    vendor = Acme()
    models = {"zoom-2": {"app": "zoom/two", "durations": [6], "default_duration": 6, "aspect_ratio_field": ""}}
    cfg = acme_config(options={"models": models}, model_map={"bare-1": "bare/one", "acme-1": "acme/one-v2"})
    async with run_gateway(cfg, tmp_path, extra_plugins={"acme": vendor}) as gw:
        key = await gw.token()
        _, listed = await gw.get("/v1/models", key)
        assert {"zoom-2", "bare-1", "acme-1"} <= {m["id"] for m in listed["data"]}
        for model in ("zoom-2", "bare-1", "acme-1"):
            status, task = await gw.post("/v1/video/generations", key, json={"model": model, "prompt": model})
            assert status == 200, task
            assert (await gw.wait(task["id"], key))["status"] == "completed"
        zoom, bare, repointed = vendor.inputs
        assert zoom == {"app": "zoom/two", "prompt": "zoom-2", "duration": "6s"}  # no ratio input at all
        assert bare == {"app": "bare/one", "prompt": "bare-1"}  # the common names, nothing sent unasked
        assert repointed["app"] == "acme/one-v2" and repointed["res"] == "720p"  # same rules, new app
        status, err = await gw.post("/v1/video/generations", key, json={"model": "zoom-2", "prompt": "x", "seconds": 4})
        assert status == 400 and err["error"]["param"] == "seconds", err


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"app": "z/z", "promt_field": "p"}, "options.models.z.promt_field: unknown key"),
        ({"app": "z/z", "durations": [True]}, "options.models.z.durations[0]: invalid value for type, expected int"),
        ({"app": "z/z", "default_duration": 5.5}, "options.models.z.default_duration: invalid value for type"),
        ({"app": "z/z", "durations": [4], "default_duration": 5}, "options.models.z.default_duration: must be one"),
        ({"app": "z/z", "duration_format": "ms"}, "duration_format: must be one of seconds, integer, string"),
        ({"app": "zz"}, "options.models.z.app: 'zz' is not an Acme app (owner/name)"),
        ({"durations": [4]}, "options.models.z.app: required field missing"),
    ],
)
async def test_a_bad_config_entry_stops_the_gateway_naming_the_key(tmp_path, entry, message):
    with pytest.raises(ConfigError) as info:
        async with run_gateway(acme_config(options={"models": {"z": entry}}), tmp_path, extra_plugins={"acme": Acme()}):
            pass
    assert message in str(info.value), str(info.value)


def test_channel_problems_name_model_map_and_non_tables():
    ch = Channel(name="a", vendor="acme", options={"models": {"x": 1}}, model_map={"y": "nope"})
    assert ACME.channel_problems(ch) == ["options.models.x: must be a table", "model_map.y: 'nope' is not an Acme app"]
    assert ACME.parse([1]) == ({}, ["options.models: must be a table of model name -> Acme app mapping"])
    entries, problems = ACME.parse({"t": {"app": "t/t", "resolution_field": "", "image_field": ""}})
    assert problems == [] and entries["t"].resolution_field is None and entries["t"].image_field is None
    assert entries["t"].as_model("t").image_to_video is False


def test_find_video_follows_paths_lists_and_file_objects():
    out = {"result": {"video": {"url": "https://cdn/a.mp4"}}, "videos": ["https://cdn/b.mp4"]}
    assert catalogue.find_video(out, "result.video") == "https://cdn/a.mp4"
    assert catalogue.find_video(out, "result.video.url") == "https://cdn/a.mp4"
    assert catalogue.find_video(out, "videos") == "https://cdn/b.mp4"
    assert catalogue.find_video(out, "videos.0") == "https://cdn/b.mp4"
    assert catalogue.find_video(out, "videos.1") is None
    assert catalogue.find_video(["https://cdn/c.mp4"], "") == "https://cdn/c.mp4"
    assert catalogue.find_video("https://cdn/d.mp4", "") == "https://cdn/d.mp4"
    assert catalogue.find_video({"result": None}, "result.video") is None
    assert catalogue.find_video({"result": ""}, "result") is None


def test_unified_params_name_the_clients_fields():
    assert catalogue.unified_params(ACME["acme-1"]) == {
        "prompt": "prompt",
        "image_url": "image",
        "end_image": "images[1]",
        "duration": "seconds",
        "res": "size",
        "aspect_ratio": "size",
    }
