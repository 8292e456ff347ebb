"""Replicate models as data: one :class:`ReplicateModel` per public model, and unified
request -> prediction ``input``.

Replicate runs every model behind one predictions API (``client.py``); what differs per
model is its input schema and the shape of its ``output``. A :class:`ReplicateModel` says
that, so the built-in :data:`CATALOGUE` and an operator's
``[channels.options.models.NAME]`` tables are the same thing.

The reference (vendor-protocols-2026 §2.13) documents the predictions API, not the
models' schemas: the field names and values below come from the models' pages on
replicate.com and are **unconfirmed** there; an operator can correct any of them in config.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs
import cattrs

from vidgate import Channel, Model, Problem, RequestInvalid, VendorJob, VideoRequest

DURATION_FORMATS = ("integer", "string", "seconds")  # 5 | "5" | "5s"
TIERS = {"480p": 480, "512p": 512, "720p": 720, "768p": 768, "1080p": 1080}


def _optional(value: str | None) -> str | None:
    # TOML has no null: "" in an operator's table means "the model has no such input".
    return value or None


@attrs.frozen
class ReplicateModel:
    """How one public model maps onto a Replicate model.

    * ``model``: ``owner/name`` (an official model: ``POST /v1/models/{owner}/{name}/predictions``);
      ``version``: a version id, which makes it ``POST /v1/predictions {version}`` instead.
    * ``text_to_video``: whether it runs without an image (``image_field`` None = no images).
    * ``*_field``: input names (None = no such input); ``durations``/``resolutions``/
      ``aspect_ratios`` the allowed values (empty = any); ``default_*`` what the model
      makes when the field is left out (billed).
    * ``video_path``: where the video URL is in ``output``: empty = the output itself (a
      URL, or the first of a list); else a dotted path (``video``, ``0``).
    * ``input``: fixed extra input sent every time.
    """

    model: str
    version: str | None = attrs.field(default=None, converter=_optional)
    text_to_video: bool = True
    prompt_field: str = "prompt"
    image_field: str | None = attrs.field(default="image", converter=_optional)
    last_frame_field: str | None = attrs.field(default=None, converter=_optional)
    duration_field: str | None = attrs.field(default="duration", converter=_optional)
    duration_format: str = "integer"
    durations: tuple[int, ...] = ()
    default_duration: int = 5
    resolution_field: str | None = attrs.field(default=None, converter=_optional)
    resolutions: tuple[str, ...] = ()
    default_resolution: str | None = attrs.field(default=None, converter=_optional)
    aspect_ratio_field: str | None = attrs.field(default="aspect_ratio", converter=_optional)
    aspect_ratios: tuple[str, ...] = ()
    default_aspect_ratio: str | None = attrs.field(default=None, converter=_optional)
    video_path: str = ""
    input: dict[str, Any] = attrs.field(factory=dict)
    description: str = ""

    def problems(self) -> list[tuple[str, str]]:
        out = []
        parts = self.model.split("/")
        if len(parts) != 2 or not all(parts) or " " in self.model:
            out.append(("model", f"{self.model!r} is not a Replicate model (owner/name)"))
        if not self.text_to_video and not self.image_field:
            out.append(("image_field", "a model without text_to_video needs an image_field"))
        if self.duration_format not in DURATION_FORMATS:
            out.append(("duration_format", f"must be one of {', '.join(DURATION_FORMATS)}"))
        if self.durations and self.default_duration not in self.durations:
            out.append(("default_duration", f"must be one of {list(self.durations)}"))
        for key, values in (("default_resolution", self.resolutions), ("default_aspect_ratio", self.aspect_ratios)):
            value = getattr(self, key)
            if value is not None and values and value not in values:
                out.append((key, f"must be one of {list(values)}"))
        return out

    def as_model(self, name: str) -> Model:
        return Model(
            name,
            vendor_model=self.model,
            description=self.description,
            seconds=self.durations,
            default_seconds=self.default_duration,
            text_to_video=self.text_to_video,
            image_to_video=self.image_field is not None,
        )


_SEEDANCE_RATIOS = ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "9:21")

CATALOGUE: dict[str, ReplicateModel] = {
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


def strict_converter() -> cattrs.Converter:
    """A converter as strict as the gateway's config loader: unknown keys are errors, no
    bool where a number goes, no number where a string goes. (Not ``vidgate.config``'s own
    converter: there a bool field of a class structured later dispatches to its number
    hook, since ``bool`` subclasses ``int``, and ``true`` is refused.)"""
    conv = cattrs.Converter(forbid_extra_keys=True)

    def number(value: Any, cls: type) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"expected a number, got {value!r}")
        if cls is int and isinstance(value, float):
            raise TypeError(f"expected a whole number, got {value!r}")
        return cls(value)

    def exact(kind: type) -> Any:
        def check(value: Any, _: type) -> Any:
            if not isinstance(value, kind):
                raise TypeError(f"expected {kind.__name__}, got {value!r}")
            return value

        return check

    conv.register_structure_hook(int, number)
    conv.register_structure_hook(float, number)
    conv.register_structure_hook(bool, exact(bool))
    conv.register_structure_hook(str, exact(str))
    return conv


_CONVERTER = strict_converter()


def config_messages(exc: Exception, where: str) -> list[str]:
    """cattrs' messages as ``KEY: what is wrong``, each key relative to the channel."""
    out: list[str] = []
    for message in cattrs.transform_error(exc, path=where):
        text, _, path = message.rpartition(" @ ")
        if text.startswith("extra fields found (") and text.endswith(")"):
            out.extend(f"{path}.{name.strip()}: unknown key" for name in text[20:-1].split(","))
        else:
            out.append(f"{path}: {text}" if text else message)
    return out


def parse_models(raw: Any) -> tuple[dict[str, ReplicateModel], list[str]]:
    """``options.models`` -> ({name: ReplicateModel}, problems naming ``options.models.NAME.KEY``)."""
    if raw is None:
        return {}, []
    if not isinstance(raw, Mapping):
        return {}, ["options.models: must be a table of model name -> Replicate model mapping"]
    models: dict[str, ReplicateModel] = {}
    problems: list[str] = []
    for name, entry in raw.items():
        where = f"options.models.{name}"
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: must be a table")
            continue
        try:
            spec = _CONVERTER.structure(dict(entry), ReplicateModel)
        except (cattrs.BaseValidationError, TypeError, ValueError) as exc:
            problems.extend(config_messages(exc, where))
            continue
        bad = spec.problems()
        problems.extend(f"{where}.{key}: {message}" for key, message in bad)
        if not bad:
            models[str(name)] = spec
    return models, problems


def from_ref(ref: str) -> ReplicateModel:
    """A ``model_map`` value: ``owner/name`` or ``owner/name:version``, with the common
    field names (``prompt``, ``image``, ``duration``, ``aspect_ratio``; output = the URL)."""
    model, _, version = ref.partition(":")
    return ReplicateModel(model=model, version=version or None, description=f"Replicate model {model}")


def channel_models(channel: Channel) -> dict[str, ReplicateModel]:
    models, _ = parse_models(channel.options.get("models"))
    for name, ref in channel.model_map.items():
        if name not in CATALOGUE and name not in models:
            models[name] = from_ref(ref)
    return models


def spec_for(name: str, channel: Channel) -> ReplicateModel:
    own = channel_models(channel)
    if name in own:
        return own[name]
    spec = CATALOGUE[name]
    if name in channel.model_map:  # re-point a catalogue model (e.g. a pinned version)
        model, _, version = channel.model_map[name].partition(":")
        return attrs.evolve(spec, model=model, version=version or None)
    return spec


def _ratio(request: VideoRequest, spec: ReplicateModel) -> str | None:
    """The requested ratio; for a pixel size, the model's ratio it rounds to (854x480 is
    16:9) when within 2 %, so pixel sizes are not refused for a rounding."""
    size = request.size
    if size is None:
        return None
    exact = f"{size.ratio_w}:{size.ratio_h}"
    if size.width is None or not spec.aspect_ratios or exact in spec.aspect_ratios:
        return exact
    nearest = size.nearest_ratio(spec.aspect_ratios)
    w, h = (int(x) for x in nearest.split(":"))
    return nearest if abs(math.log(size.ratio / (w / h))) < 0.02 else exact


def _tier(request: VideoRequest) -> str | None:
    if request.size is None or request.size.width is None or request.size.height is None:
        return None
    return f"{min(request.size.width, request.size.height)}p"


def _pixels(tier: str | None, ratio: str | None) -> str | None:
    if tier not in TIERS or ratio is None:
        return None
    w, h = (int(x) for x in ratio.split(":"))
    short = TIERS[tier]
    long = round(short * max(w, h) / min(w, h) / 2) * 2
    return f"{long}x{short}" if w >= h else f"{short}x{long}"


def _owned(spec: ReplicateModel) -> dict[str, str]:
    owned = {spec.prompt_field: "use the top-level prompt field"}
    for field in (spec.image_field, spec.last_frame_field):
        if field:
            owned[field] = "use the top-level image/images/input_reference fields"
    for field, top in (
        (spec.duration_field, "seconds"),
        (spec.resolution_field, "size"),
        (spec.aspect_ratio_field, "size"),
    ):
        if field:
            owned[field] = f"use the top-level {top} field; it decides what is billed"
    for field in ("num_frames", "frames_per_second", "fps", "mode", "model", "version"):
        owned.setdefault(field, "changes what is billed; not settable through metadata")
    return owned


def unified_params(spec: ReplicateModel) -> dict[str, str]:
    """The client's field for each input the vendor may name in a refusal."""
    names = {spec.prompt_field: "prompt"}
    for field, param in (
        (spec.image_field, "image"),
        (spec.last_frame_field, "images[1]"),
        (spec.duration_field, "seconds"),
        (spec.resolution_field, "size"),
        (spec.aspect_ratio_field, "size"),
    ):
        if field:
            names[field] = param
    return names


def validate(request: VideoRequest, spec: ReplicateModel) -> list[Problem]:
    problems = [Problem(f"metadata.{k}", why) for k, why in _owned(spec).items() if k in request.metadata]
    if len(request.images) > 1:
        if not spec.last_frame_field:
            problems.append(Problem(request.images[1].param, "this model takes one image (no last frame)"))
        elif len(request.images) > 2:
            problems.append(Problem(request.images[2].param, "at most two images: the first and the last frame"))
    ratio, tier = _ratio(request, spec), _tier(request)
    if ratio is not None:
        if spec.aspect_ratio_field:
            if spec.aspect_ratios and ratio not in spec.aspect_ratios:
                problems.append(Problem("size", f"aspect ratio must be one of {', '.join(spec.aspect_ratios)}"))
        elif tier is None:
            problems.append(Problem("size", "this model takes no aspect ratio; leave size out"))
    if tier is not None:
        offered = spec.resolutions if spec.resolution_field else tuple(filter(None, [spec.default_resolution]))
        if offered and tier not in offered:
            sides = ", ".join(t.removesuffix("p") for t in offered)
            problems.append(Problem("size", f"resolution {tier} is not offered: the short side must be {sides}"))
    return problems


def _duration(spec: ReplicateModel, seconds: int) -> Any:
    if spec.duration_format == "string":
        return str(seconds)
    if spec.duration_format == "seconds":
        return f"{seconds}s"
    return seconds


def map_request(request: VideoRequest, name: str, spec: ReplicateModel) -> VendorJob:
    if problems := validate(request, spec):
        raise RequestInvalid(problems)
    seconds = request.seconds or spec.default_duration
    body: dict[str, Any] = {**spec.input, **request.metadata, spec.prompt_field: request.prompt}
    if spec.duration_field and (request.seconds is not None or spec.durations):
        body[spec.duration_field] = _duration(spec, seconds)
    ratio, tier = _ratio(request, spec), _tier(request)
    if spec.aspect_ratio_field and ratio:
        body[spec.aspect_ratio_field] = ratio
    elif spec.aspect_ratio_field and spec.default_aspect_ratio and not request.images:
        body[spec.aspect_ratio_field] = spec.default_aspect_ratio
    resolution = tier if spec.resolution_field and tier else spec.default_resolution
    if spec.resolution_field and resolution:
        body[spec.resolution_field] = resolution
    images: dict[str, int] = {}
    if request.images:
        assert spec.image_field is not None  # the core refuses images first otherwise
        images[spec.image_field] = 0
        if len(request.images) > 1 and spec.last_frame_field:
            images[spec.last_frame_field] = 1
    shown = ratio if spec.aspect_ratio_field else None
    size = _pixels(resolution, shown or spec.default_aspect_ratio) or (shown or spec.default_aspect_ratio or "")
    return VendorJob(
        payload={
            "model": spec.model,
            "version": spec.version,
            "input": body,
            "images": images,
            "video_path": spec.video_path,
            "public": name,
            "params": unified_params(spec),
        },
        seconds=seconds,
        size=size,
        resolution=resolution,
    )


def find_video(output: Any, path: str) -> str | None:
    """The URL in ``output``: the output itself (or its first item) for an empty path,
    else the value at dotted ``path`` (a numeric part indexes a list)."""
    node = output
    for part in path.split(".") if path else ():
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return None
    if isinstance(node, list):
        node = node[0] if node else None
    if isinstance(node, dict):
        node = node.get("url")
    return node if isinstance(node, str) and node else None
