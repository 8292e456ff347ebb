"""fal apps as data: one :class:`FalApp` per public model, and unified request -> app input.

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

import math
from collections.abc import Mapping
from typing import Any

import attrs
import cattrs

from vidgate import Channel, Model, Problem, RequestInvalid, VendorJob, VideoRequest

DURATION_FORMATS = ("string", "integer", "seconds")  # "5" | 5 | "5s"
#: Short side in pixels of fal's resolution tiers, for the billed size.
TIERS = {"360p": 360, "480p": 480, "512p": 512, "540p": 540, "580p": 580, "720p": 720, "768p": 768, "1080p": 1080}


def _optional(value: str | None) -> str | None:
    # TOML has no null: "" in an operator's table means "the model has no such input".
    return value or None


@attrs.frozen
class FalApp:
    """How one public model maps onto fal app(s).

    * ``text_app`` / ``image_app``: the fal app ids (``owner/name[/subpath]``) for text to
      video and image to video; at least one. fal usually has one app per mode.
    * ``*_field``: the app's input field names (None = the app has no such input).
    * ``durations`` / ``resolutions`` / ``aspect_ratios``: allowed values (empty = any,
      and then nothing is sent unless the client asks); ``default_*``: what the app makes
      when the field is left out (billed).
    * ``duration_format``: ``string`` (``"5"``), ``integer`` (``5``) or ``seconds`` (``"5s"``).
    * ``video_path``: dotted path of the video URL in the result (``video.url``).
    * ``input``: fixed extra input sent with every request (e.g. ``{generate_audio = false}``).
    """

    text_app: str | None = attrs.field(default=None, converter=_optional)
    image_app: str | None = attrs.field(default=None, converter=_optional)
    prompt_field: str = "prompt"
    image_field: str | None = attrs.field(default="image_url", converter=_optional)
    last_frame_field: str | None = attrs.field(default=None, converter=_optional)
    duration_field: str | None = attrs.field(default="duration", converter=_optional)
    duration_format: str = "string"
    durations: tuple[int, ...] = ()
    default_duration: int = 5
    resolution_field: str | None = attrs.field(default=None, converter=_optional)
    resolutions: tuple[str, ...] = ()
    default_resolution: str | None = attrs.field(default=None, converter=_optional)
    aspect_ratio_field: str | None = attrs.field(default="aspect_ratio", converter=_optional)
    aspect_ratios: tuple[str, ...] = ()
    default_aspect_ratio: str | None = attrs.field(default=None, converter=_optional)
    video_path: str = "video.url"
    input: dict[str, Any] = attrs.field(factory=dict)
    description: str = ""

    def problems(self) -> list[tuple[str, str]]:
        """(key, message) for what makes this entry unusable."""
        out = []
        if not self.text_app and not self.image_app:
            out.append(("text_app", "give text_app, image_app or both"))
        for key in ("text_app", "image_app"):
            app = getattr(self, key)
            if app is not None and (len(app.strip("/").split("/")) < 2 or " " in app):
                out.append((key, f"{app!r} is not a fal app id (owner/name[/path])"))
        if self.duration_format not in DURATION_FORMATS:
            out.append(("duration_format", f"must be one of {', '.join(DURATION_FORMATS)}"))
        if self.durations and self.default_duration not in self.durations:
            out.append(("default_duration", f"must be one of {list(self.durations)}"))
        for key, values in (("default_resolution", self.resolutions), ("default_aspect_ratio", self.aspect_ratios)):
            value = getattr(self, key)
            if value is not None and values and value not in values:
                out.append((key, f"must be one of {list(values)}"))
        if self.image_app and not self.image_field:
            out.append(("image_field", "an image_app needs an image_field"))
        if not self.video_path:
            out.append(("video_path", "required"))
        return out

    def model(self, name: str) -> Model:
        return Model(
            name,
            vendor_model=self.text_app or self.image_app,
            description=self.description,
            seconds=self.durations,
            default_seconds=self.default_duration,
            text_to_video=self.text_app is not None,
            image_to_video=self.image_app is not None,
        )


_KLING_RATIOS = ("16:9", "9:16", "1:1")
_SEEDANCE_RATIOS = ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16")

#: The built-in catalogue: public name -> app mapping.
CATALOGUE: dict[str, FalApp] = {
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


def parse_models(raw: Any) -> tuple[dict[str, FalApp], list[str]]:
    """``options.models`` -> ({name: FalApp}, problems naming ``options.models.NAME.KEY``)."""
    if raw is None:
        return {}, []
    if not isinstance(raw, Mapping):
        return {}, ["options.models: must be a table of model name -> fal app mapping"]
    apps: dict[str, FalApp] = {}
    problems: list[str] = []
    for name, entry in raw.items():
        where = f"options.models.{name}"
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: must be a table")
            continue
        try:
            app = _CONVERTER.structure(dict(entry), FalApp)
        except (cattrs.BaseValidationError, TypeError, ValueError) as exc:
            problems.extend(config_messages(exc, where))
            continue
        bad = app.problems()
        problems.extend(f"{where}.{key}: {message}" for key, message in bad)
        if not bad:
            apps[str(name)] = app
    return apps, problems


def generic(app_id: str) -> FalApp:
    """The mapping of a fal app known only from a ``model_map`` entry: fal's common
    field names (``prompt``, ``image_url``, ``duration``, ``aspect_ratio``, ``video.url``)."""
    if app_id.rstrip("/").endswith("image-to-video"):
        return FalApp(image_app=app_id, description=f"fal app {app_id}")
    return FalApp(text_app=app_id, description=f"fal app {app_id}")


def channel_apps(channel: Channel) -> dict[str, FalApp]:
    """The apps a channel adds: its ``options.models`` and ``model_map`` entries naming an
    app not in the catalogue (valid channels only)."""
    apps, _ = parse_models(channel.options.get("models"))
    for name, app_id in channel.model_map.items():
        if name not in CATALOGUE and name not in apps:
            apps[name] = generic(app_id)
    return apps


def app_for(name: str, channel: Channel) -> FalApp:
    """The mapping for public ``name`` on ``channel``: the channel's own entry wins;
    a ``model_map`` entry re-points a catalogue model's text app."""
    own = channel_apps(channel)
    if name in own:
        return own[name]
    app = CATALOGUE[name]
    if name in channel.model_map:
        return attrs.evolve(app, text_app=channel.model_map[name])
    return app


def _ratio(request: VideoRequest, spec: FalApp) -> str | None:
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


# Keys the gateway owns; a client may not set them through metadata (they are billed,
# or they carry the unified fields).
def _owned(app: FalApp) -> dict[str, str]:
    owned = {
        app.prompt_field: "use the top-level prompt field",
        "fal_webhook": "is set by the gateway",
    }
    for field in (app.image_field, app.last_frame_field):
        if field:
            owned[field] = "use the top-level image/images/input_reference fields"
    for field, top in (
        (app.duration_field, "seconds"),
        (app.resolution_field, "size"),
        (app.aspect_ratio_field, "size"),
    ):
        if field:
            owned[field] = f"use the top-level {top} field; it decides what is billed"
    for field in ("num_frames", "frames_per_second", "model", "model_name"):
        owned.setdefault(field, "changes what is billed; not settable through metadata")
    return owned


def unified_params(app: FalApp) -> dict[str, str]:
    """The client's field for each input the vendor may name in a refusal."""
    names = {app.prompt_field: "prompt"}
    for field, param in (
        (app.image_field, "image"),
        (app.last_frame_field, "images[1]"),
        (app.duration_field, "seconds"),
        (app.resolution_field, "size"),
        (app.aspect_ratio_field, "size"),
    ):
        if field:
            names[field] = param
    return names


def validate(request: VideoRequest, app: FalApp) -> list[Problem]:
    problems = []
    for key, why in _owned(app).items():
        if key in request.metadata:
            problems.append(Problem(f"metadata.{key}", why))
    if len(request.images) > 1:
        if not app.last_frame_field:
            problems.append(Problem(request.images[1].param, "this model takes one image (no last frame)"))
        elif len(request.images) > 2:
            problems.append(Problem(request.images[2].param, "at most two images: the first and the last frame"))
    ratio, tier = _ratio(request, app), _tier(request)
    if request.size is not None and ratio is not None:
        if app.aspect_ratio_field:
            if app.aspect_ratios and ratio not in app.aspect_ratios:
                problems.append(Problem("size", f"aspect ratio must be one of {', '.join(app.aspect_ratios)}"))
        elif tier is None:
            problems.append(Problem("size", "this model takes no aspect ratio; leave size out"))
    if tier is not None:
        offered = app.resolutions if app.resolution_field else tuple(filter(None, [app.default_resolution]))
        if offered and tier not in offered:
            sides = ", ".join(t.removesuffix("p") for t in offered)
            problems.append(Problem("size", f"resolution {tier} is not offered: the short side must be {sides}"))
    return problems


def _duration(app: FalApp, seconds: int) -> Any:
    if app.duration_format == "integer":
        return seconds
    if app.duration_format == "seconds":
        return f"{seconds}s"
    return str(seconds)


def map_request(request: VideoRequest, name: str, app: FalApp) -> VendorJob:
    """The fal input (images by index, resolved in ``submit``) and what is billed."""
    if problems := validate(request, app):
        raise RequestInvalid(problems)
    image_mode = bool(request.images)
    app_id = app.image_app if image_mode else app.text_app
    if app_id is None:  # the core refuses this first (Model.text_to_video/image_to_video)
        raise RequestInvalid([Problem("image", "this model needs an image" if not image_mode else "no images")])
    seconds = request.seconds or app.default_duration
    body: dict[str, Any] = {**app.input, **request.metadata, app.prompt_field: request.prompt}
    if app.duration_field and (request.seconds is not None or app.durations):
        body[app.duration_field] = _duration(app, seconds)
    ratio, tier = _ratio(request, app), _tier(request)
    ratio = ratio if app.aspect_ratio_field else None
    if app.aspect_ratio_field and (ratio or app.default_aspect_ratio) and not image_mode:
        body[app.aspect_ratio_field] = ratio or app.default_aspect_ratio
    elif app.aspect_ratio_field and ratio:
        body[app.aspect_ratio_field] = ratio
    resolution = tier if app.resolution_field and tier else app.default_resolution
    if app.resolution_field and resolution:
        body[app.resolution_field] = resolution
    images: dict[str, int] = {}
    if image_mode:
        assert app.image_field is not None
        images[app.image_field] = 0
        if len(request.images) > 1 and app.last_frame_field:
            images[app.last_frame_field] = 1
    size = _pixels(resolution, ratio or app.default_aspect_ratio) or (ratio or app.default_aspect_ratio or "")
    return VendorJob(
        payload={
            "app": app_id,
            "input": body,
            "images": images,
            "video_path": app.video_path,
            "model": name,
            "params": unified_params(app),
        },
        seconds=seconds,
        size=size,
        resolution=resolution,
    )


def find_video(output: Any, path: str) -> str | None:
    """The URL at dotted ``path`` (``video.url``; a numeric part indexes a list)."""
    node = output
    for part in path.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return None
    if isinstance(node, dict):  # a path ending at the file object
        node = node.get("url")
    return node if isinstance(node, str) and node else None
