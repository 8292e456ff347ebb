"""Replicate models as data: one :class:`ReplicateModel` per public model, on the kit's
:mod:`vidgate.catalogue`.

Replicate runs every model behind one predictions API (``client.py``); what differs per
model is its input schema and the shape of its ``output``. A :class:`ReplicateModel` says
that, so the built-in :data:`CATALOGUE` and an operator's
``[channels.options.models.NAME]`` tables are the same thing.

The reference (vendor-protocols-2026 §2.13) documents the predictions API, not the
models' schemas: the field names and values below come from the models' pages on
replicate.com and are **unconfirmed** there; an operator can correct any of them in config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import attrs

from vidgate import Model, VendorJob, VideoRequest
from vidgate.catalogue import Catalogue, Entry, find_video, map_job, optional

__all__ = ["CATALOGUE", "ReplicateModel", "find_video", "from_ref", "map_request"]


@attrs.frozen(kw_only=True)
class ReplicateModel(Entry):
    """How one public model maps onto a Replicate model: the keys of
    :class:`vidgate.catalogue.Entry` (Replicate's defaults: ``image``, a duration typed
    as an integer, the video as the output itself: ``video_path`` empty) and

    * ``model``: ``owner/name`` (an official model: ``POST /v1/models/{owner}/{name}/predictions``);
      ``version``: a version id, which makes it ``POST /v1/predictions {version}`` instead.
    * ``text_to_video``: whether it runs without an image (``image_field`` None = no images).
    """

    tiers: ClassVar[Mapping[str, int]] = {"480p": 480, "512p": 512, "720p": 720, "768p": 768, "1080p": 1080}
    billed_inputs: ClassVar[tuple[str, ...]] = ("num_frames", "frames_per_second", "fps", "mode", "model", "version")

    model: str
    version: str | None = attrs.field(default=None, converter=optional)
    text_to_video: bool = True

    def problems(self) -> list[tuple[str, str]]:
        out = []
        parts = self.model.split("/")
        if len(parts) != 2 or not all(parts) or " " in self.model:
            out.append(("model", f"{self.model!r} is not a Replicate model (owner/name)"))
        if not self.text_to_video and not self.image_field:
            out.append(("image_field", "a model without text_to_video needs an image_field"))
        return out + super().problems()

    def as_model(self, name: str) -> Model:
        return self.model_rules(name, self.model, text=self.text_to_video, image=self.image_field is not None)


_SEEDANCE_RATIOS = ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "9:21")

_BUILT_IN: dict[str, ReplicateModel] = {
    "seedance-1-pro": ReplicateModel(
        model="bytedance/seedance-1-pro",
        last_frame_field="last_frame_image",
        durations=(5, 10),
        resolution_field="resolution",
        resolutions=("480p", "1080p"),
        default_resolution="1080p",
        aspect_ratios=_SEEDANCE_RATIOS,
        default_aspect_ratio="16:9",
        description="ByteDance Seedance 1.0 Pro on Replicate, 480p/1080p",
    ),
    "kling-v2.1": ReplicateModel(
        model="kwaivgi/kling-v2.1",
        text_to_video=False,
        image_field="start_image",
        last_frame_field="end_image",
        durations=(5, 10),
        aspect_ratio_field=None,
        default_resolution="720p",
        description="Kling 2.1 on Replicate, image to video (standard mode, 720p)",
    ),
    "hailuo-02": ReplicateModel(
        model="minimax/hailuo-02",
        image_field="first_frame_image",
        last_frame_field="last_frame_image",
        durations=(6, 10),
        default_duration=6,
        resolution_field="resolution",
        resolutions=("512p", "768p", "1080p"),
        default_resolution="1080p",
        aspect_ratio_field=None,
        description="MiniMax Hailuo 02 on Replicate, 6/10 s",
    ),
    "veo-3": ReplicateModel(
        model="google/veo-3",
        durations=(8,),
        default_duration=8,
        resolution_field="resolution",
        resolutions=("720p", "1080p"),
        default_resolution="1080p",
        aspect_ratios=("16:9", "9:16"),
        default_aspect_ratio="16:9",
        description="Google Veo 3 on Replicate, 8 s with audio",
    ),
    "wan-2.2-i2v-fast": ReplicateModel(
        model="wan-video/wan-2.2-i2v-fast",
        text_to_video=False,
        duration_field=None,  # fixed frame count (81 frames at 16 fps, about 5 s)
        durations=(5,),
        resolution_field="resolution",
        resolutions=("480p", "720p"),
        default_resolution="480p",
        aspect_ratio_field=None,
        description="Wan 2.2 image to video (fast) on Replicate, about 5 s",
    ),
}


def from_ref(ref: str) -> ReplicateModel:
    """A ``model_map`` value: ``owner/name`` or ``owner/name:version``, with the common
    field names (``prompt``, ``image``, ``duration``, ``aspect_ratio``; output = the URL)."""
    model, _, version = ref.partition(":")
    return ReplicateModel(model=model, version=version or None, description=f"Replicate model {model}")


def _repoint(spec: ReplicateModel, ref: str) -> ReplicateModel:
    # A model_map value for a catalogue name: another model or a pinned version, same rules.
    model, _, version = ref.partition(":")
    return attrs.evolve(spec, model=model, version=version or None)


def _ref_problem(ref: str) -> str | None:
    model = ref.partition(":")[0].split("/")
    if len(model) != 2 or not all(model):
        return f"{ref!r} is not a Replicate model (owner/name[:version])"
    return None


#: The built-in catalogue and what channels add.
CATALOGUE = Catalogue(
    _BUILT_IN, ReplicateModel, kind="Replicate model", from_ref=from_ref, repoint=_repoint, ref_problem=_ref_problem
)


def map_request(request: VideoRequest, name: str, spec: ReplicateModel) -> VendorJob:
    """The prediction ``input`` (images by index, resolved in ``submit``) and what is billed."""
    return map_job(request, spec, {"model": spec.model, "version": spec.version, "public": name})
