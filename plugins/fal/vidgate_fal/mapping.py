"""fal apps as data: one :class:`FalApp` per public model, on the kit's
:mod:`vidgate.catalogue`.

fal serves every model behind one queue protocol (``client.py``); what differs per model
is only its input schema and where the video sits in its output. That is what a
:class:`FalApp` says, so the built-in :data:`CATALOGUE` and an operator's
``[channels.options.models.NAME]`` tables are the same thing, and an operator adds a fal
app the plugin does not know without code.

The reference (vendor-protocols-2026 §2.12) documents the queue, not the apps' schemas:
the field names and allowed values below come from fal's model pages and are
**unconfirmed** there; an operator can correct any of them in config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import attrs

from vidgate import Model, Problem, RequestInvalid, VendorJob, VideoRequest
from vidgate.catalogue import Catalogue, Entry, find_video, map_job, optional

__all__ = ["CATALOGUE", "FalApp", "find_video", "map_request"]


def _app_problem(app: str) -> str | None:
    if len(app.strip("/").split("/")) < 2 or " " in app:
        return f"{app!r} is not a fal app id (owner/name[/path])"
    return None


@attrs.frozen(kw_only=True)
class FalApp(Entry):
    """How one public model maps onto fal app(s): the keys of
    :class:`vidgate.catalogue.Entry` (fal's defaults: ``image_url``, a duration typed as
    a string, the video at ``video.url``) and

    * ``text_app`` / ``image_app``: the fal app ids (``owner/name[/subpath]``) for text to
      video and image to video; at least one. fal usually has one app per mode.
    """

    gateway_inputs: ClassVar[Mapping[str, str]] = {"fal_webhook": "is set by the gateway"}
    billed_inputs: ClassVar[tuple[str, ...]] = ("num_frames", "frames_per_second", "model", "model_name")

    text_app: str | None = attrs.field(default=None, converter=optional)
    image_app: str | None = attrs.field(default=None, converter=optional)
    image_field: str | None = attrs.field(default="image_url", converter=optional)
    duration_format: str = "string"
    video_path: str = "video.url"

    def problems(self) -> list[tuple[str, str]]:
        """(key, message) for what makes this entry unusable."""
        out = []
        if not self.text_app and not self.image_app:
            out.append(("text_app", "give text_app, image_app or both"))
        for key in ("text_app", "image_app"):
            app = getattr(self, key)
            if app is not None and (message := _app_problem(app)):
                out.append((key, message))
        out.extend(super().problems())
        if self.image_app and not self.image_field:
            out.append(("image_field", "an image_app needs an image_field"))
        if not self.video_path:
            out.append(("video_path", "required"))
        return out

    def as_model(self, name: str) -> Model:
        return self.model_rules(
            name, self.text_app or self.image_app, text=self.text_app is not None, image=self.image_app is not None
        )


_KLING_RATIOS = ("16:9", "9:16", "1:1")
_SEEDANCE_RATIOS = ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16")

_BUILT_IN: dict[str, FalApp] = {
    "kling-2.1-master": FalApp(
        text_app="fal-ai/kling-video/v2.1/master/text-to-video",
        image_app="fal-ai/kling-video/v2.1/master/image-to-video",
        durations=(5, 10),
        aspect_ratios=_KLING_RATIOS,
        default_aspect_ratio="16:9",
        default_resolution="1080p",
        description="Kling 2.1 Master on fal, 5/10 s, 1080p",
    ),
    "kling-2.1-pro": FalApp(
        image_app="fal-ai/kling-video/v2.1/pro/image-to-video",
        last_frame_field="tail_image_url",
        durations=(5, 10),
        aspect_ratio_field=None,
        default_resolution="1080p",
        description="Kling 2.1 Pro on fal, image to video with an optional last frame",
    ),
    "hailuo-02": FalApp(
        text_app="fal-ai/minimax/hailuo-02/standard/text-to-video",
        image_app="fal-ai/minimax/hailuo-02/standard/image-to-video",
        durations=(6, 10),
        default_duration=6,
        aspect_ratio_field=None,
        default_resolution="768p",
        description="MiniMax Hailuo 02 Standard on fal, 6/10 s, 768p",
    ),
    "seedance-1-pro": FalApp(
        text_app="fal-ai/bytedance/seedance/v1/pro/text-to-video",
        image_app="fal-ai/bytedance/seedance/v1/pro/image-to-video",
        last_frame_field="end_image_url",
        durations=(5, 10),
        resolution_field="resolution",
        resolutions=("480p", "720p", "1080p"),
        default_resolution="1080p",
        aspect_ratios=_SEEDANCE_RATIOS,
        default_aspect_ratio="16:9",
        description="ByteDance Seedance 1.0 Pro on fal, 480p-1080p",
    ),
    "pika-2.1": FalApp(
        text_app="fal-ai/pika/v2.1/text-to-video",
        image_app="fal-ai/pika/v2.1/image-to-video",
        duration_format="integer",
        durations=(5,),
        resolution_field="resolution",
        resolutions=("720p", "1080p"),
        default_resolution="720p",
        aspect_ratios=("16:9", "9:16", "1:1", "4:5", "5:4", "3:2", "2:3"),
        default_aspect_ratio="16:9",
        description="Pika 2.1 on fal (Pika's API is only on fal)",
    ),
    "veo3-fast": FalApp(
        text_app="fal-ai/veo3/fast",
        image_app="fal-ai/veo3/fast/image-to-video",
        duration_format="seconds",
        durations=(8,),
        default_duration=8,
        resolution_field="resolution",
        resolutions=("720p", "1080p"),
        default_resolution="720p",
        aspect_ratios=("16:9", "9:16"),
        default_aspect_ratio="16:9",
        description="Google Veo 3 Fast on fal, 8 s with audio",
    ),
    "wan-2.2": FalApp(
        text_app="fal-ai/wan/v2.2-a14b/text-to-video",
        image_app="fal-ai/wan/v2.2-a14b/image-to-video",
        duration_field=None,  # Wan takes num_frames (81 at 16 fps, about 5 s)
        durations=(5,),
        resolution_field="resolution",
        resolutions=("480p", "580p", "720p"),
        default_resolution="720p",
        aspect_ratios=("16:9", "9:16", "1:1"),
        default_aspect_ratio="16:9",
        description="Alibaba Wan 2.2 A14B on fal, about 5 s",
    ),
}


def generic(app_id: str) -> FalApp:
    """The mapping of a fal app known only from a ``model_map`` entry: fal's common
    field names (``prompt``, ``image_url``, ``duration``, ``aspect_ratio``, ``video.url``)."""
    if app_id.rstrip("/").endswith("image-to-video"):
        return FalApp(image_app=app_id, description=f"fal app {app_id}")
    return FalApp(text_app=app_id, description=f"fal app {app_id}")


def _ref_problem(app_id: str) -> str | None:
    # A model_map value only needs owner/name (fal answers 404 for an app it does not have).
    return None if len(app_id.strip("/").split("/")) >= 2 else f"{app_id!r} is not a fal app id (owner/name[/path])"


#: The built-in catalogue and what channels add; a ``model_map`` entry for a catalogue
#: name re-points that model's text app.
CATALOGUE = Catalogue(
    _BUILT_IN,
    FalApp,
    kind="fal app",
    from_ref=generic,
    repoint=lambda app, app_id: attrs.evolve(app, text_app=app_id),
    ref_problem=_ref_problem,
)


def map_request(request: VideoRequest, name: str, app: FalApp) -> VendorJob:
    """The fal input (images by index, resolved in ``submit``) and what is billed."""
    app_id = app.image_app if request.images else app.text_app
    job = map_job(request, app, {"app": app_id, "model": name})
    if app_id is None:  # the core refuses this first (Model.text_to_video/image_to_video)
        raise RequestInvalid([Problem("image", "this model needs an image" if not request.images else "no images")])
    return job
