"""Unified request -> Ark ``POST /contents/generations/tasks`` body, the per-model rules
checked before any vendor call, Ark's status words and the usage it reports.

One wire protocol serves two platforms: BytePlus ModelArk (``dreamina-seedance-*`` model
ids) and Volcengine Ark (``doubao-seedance-*``); keys are region-bound, so the channel
says which one it is (``options.platform``). What we bill is what we send: ``duration``,
``resolution`` and ``ratio`` are always resolved here and sent explicitly (never left to
Ark's defaults), and the :class:`~vidgate.VendorJob` reports exactly them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from vidgate import Channel, Image, Model, Problem, Reference, VendorJob, VideoRequest
from vidgate.errors import RequestInvalid

BYTEPLUS = "byteplus"
VOLCENGINE = "volcengine"
#: ``options.platform`` -> default base URL (reference 2.6 "Hosts").
PLATFORMS: dict[str, str] = {
    BYTEPLUS: "https://ark.ap-southeast.bytepluses.com/api/v3",
    VOLCENGINE: "https://ark.cn-beijing.volces.com/api/v3",
}
DEFAULT_PLATFORM = BYTEPLUS

RATIOS = ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9")
#: Pixels per resolution tier and ratio. (unconfirmed) The reference gives only the token
#: formula (5 s at 720p = 108,000 tokens, i.e. 1280x720 at 16:9); the other cells follow
#: the same short side. The vendor's reported ``completion_tokens`` settle the charge.
_SHORT_SIDE = {"480p": 480, "720p": 720, "1080p": 1080, "4k": 2160}
_TIERS = ("480p", "720p", "1080p", "4k")


def pixels(resolution: str, ratio: str) -> tuple[int, int]:
    """``(width, height)`` Seedance makes for a tier and ratio (see :data:`_SHORT_SIDE`)."""
    short = _SHORT_SIDE[resolution]
    w, h = (int(x) for x in ratio.split(":"))
    if w >= h:
        return 2 * round(short * w / h / 2), short
    return short, 2 * round(short * h / w / 2)


def estimate_tokens(seconds: int, width: int, height: int) -> int:
    """Ark's token formula (reference 2.6): seconds x W x H x 24 / 1024 (output only)."""
    return math.ceil(seconds * width * height * 24 / 1024)


@attrs.frozen
class Spec:
    """What one public Seedance model can do (reference 2.6; unsure cells marked there).

    ``ids`` maps a platform to ``(text-to-video id, image-to-video id)`` (the same id
    twice for the unified models; 1.0 lite has one of each).
    """

    name: str
    ids: Mapping[str, tuple[str, str]]
    seconds: tuple[int, ...]
    resolutions: tuple[str, ...]
    default_resolution: str
    default_seconds: int = 5
    last_frame: bool = True  # first + last frame (two images)
    reference_images: int = 0  # most ``reference_image`` items (0 = none)
    reference_videos: int = 0
    reference_audio: int = 0
    audio: bool = False  # ``generate_audio``
    camera_fixed: bool = True
    flex: bool = True  # ``service_tier = "flex"`` (not for 2.x)
    draft: bool = False
    description: str = ""


def _ids(suffix: str, t2v: str | None = None, i2v: str | None = None) -> dict[str, tuple[str, str]]:
    # BytePlus names the same models dreamina-seedance-*, Volcengine doubao-seedance-*.
    # (unconfirmed) the reference gives the doubao ids and the BytePlus prefix only.
    return {
        VOLCENGINE: (f"doubao-seedance-{t2v or suffix}", f"doubao-seedance-{i2v or suffix}"),
        BYTEPLUS: (f"dreamina-seedance-{t2v or suffix}", f"dreamina-seedance-{i2v or suffix}"),
    }


_2X = tuple(range(4, 16))
SPECS: tuple[Spec, ...] = (
    Spec(
        "seedance-2.0",
        _ids("2-0-260128"),
        seconds=_2X,
        resolutions=("480p", "720p", "1080p"),
        default_resolution="720p",
        reference_images=9,
        reference_videos=3,
        reference_audio=3,
        audio=True,
        camera_fixed=False,
        flex=False,
        draft=True,  # (unconfirmed) the reference documents draft for 1.5 pro only
        description="Seedance 2.0: 4-15 s, 480p-1080p, audio, references (9 images, 3 videos, 3 audio)",
    ),
    Spec(
        "seedance-2.0-fast",
        _ids("2-0-fast-260128"),
        seconds=_2X,
        resolutions=("480p", "720p"),
        default_resolution="720p",
        reference_images=9,
        reference_videos=3,
        reference_audio=3,
        audio=True,
        camera_fixed=False,
        flex=False,
        draft=True,  # (unconfirmed) as for seedance-2.0
        description="Seedance 2.0 Fast: 4-15 s, 480p/720p, audio, references",
    ),
    Spec(
        "seedance-2.5",
        _ids("2-5-260628"),
        seconds=tuple(range(4, 31)),
        resolutions=("480p", "720p", "1080p", "4k"),
        default_resolution="720p",
        reference_images=9,
        reference_videos=3,
        reference_audio=3,
        audio=True,
        camera_fixed=False,
        flex=False,
        description="Seedance 2.5: 4-30 s, up to 4k, audio, references",
    ),
    Spec(
        "seedance-1.0-pro",
        _ids("1-0-pro-250528"),
        seconds=tuple(range(2, 13)),  # (unconfirmed) reference: 1.x 2-12 s
        resolutions=("480p", "720p", "1080p"),
        default_resolution="1080p",
        description="Seedance 1.0 Pro: 2-12 s, 480p-1080p, first/last frame",
    ),
    Spec(
        "seedance-1.0-lite",
        # (unconfirmed) the -250428 date suffix of the lite ids; the reference abbreviates them.
        _ids("1-0-lite", t2v="1-0-lite-t2v-250428", i2v="1-0-lite-i2v-250428"),
        seconds=tuple(range(2, 13)),
        resolutions=("480p", "720p", "1080p"),
        default_resolution="720p",
        reference_images=4,
        description="Seedance 1.0 Lite: 2-12 s, 480p-1080p, first/last frame, 1-4 reference images",
    ),
)
SPEC_BY_NAME: dict[str, Spec] = {s.name: s for s in SPECS}

#: The vidgate models (public names); the core checks ``seconds`` and references from them.
MODELS: tuple[Model, ...] = tuple(
    Model(
        s.name,
        vendor_model=s.ids[DEFAULT_PLATFORM][0],
        seconds=s.seconds,
        default_seconds=s.default_seconds,
        reference_videos=s.reference_videos > 0,
        reference_audio=s.reference_audio > 0,
        # A final render made from a finished draft task (see plugin.derive).
        operations=frozenset({"remix"}) if s.draft else frozenset(),
        description=s.description,
    )
    for s in SPECS
)

#: Ark ``status`` -> vidgate status (reference 3.6). ``expired`` is a failure.
STATUS = {
    "queued": "queued",
    "running": "in_progress",
    "succeeded": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
    "expired": "failed",
}


def platform_of(channel: Channel) -> str:
    return str(channel.options.get("platform") or DEFAULT_PLATFORM)


def vendor_model(spec: Spec, channel: Channel, image_to_video: bool) -> str:
    """The Ark model id: ``model_map`` wins, else the platform's id for the mode."""
    if mapped := channel.model_map.get(spec.name):
        return mapped
    t2v, i2v = spec.ids[platform_of(channel)]
    return i2v if image_to_video else t2v


# -- metadata -----------------------------------------------------------------------


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (lambda v: _is_int(v) and -1 <= v <= 2**32 - 1, "must be an integer from -1 to 4294967295"),
    "watermark": (_is_bool, "must be true or false"),
    "generate_audio": (_is_bool, "must be true or false"),
    "camera_fixed": (_is_bool, "must be true or false"),
    "return_last_frame": (_is_bool, "must be true or false"),
    "draft": (_is_bool, "must be true or false"),
    "service_tier": (lambda v: v in ("default", "flex"), 'must be "default" or "flex"'),
    "execution_expires_after": (
        lambda v: _is_int(v) and 3600 <= v <= 259200,
        "must be an integer number of seconds from 3600 to 259200",
    ),
    "priority": (lambda v: _is_int(v) and 0 <= v <= 9, "must be an integer from 0 to 9"),
    "output_format": (lambda v: v in ("mp4", "mov"), 'must be "mp4" or "mov"'),
    "resolution": (lambda v: v in _TIERS, f"must be one of {', '.join(_TIERS)}"),
    "safety_identifier": (lambda v: isinstance(v, str) and 0 < len(v) <= 64, "must be a string of 1-64 characters"),
    "omni_reference_task_type": (lambda v: isinstance(v, str) and bool(v), "must be a non-empty string"),
    "tools": (lambda v: isinstance(v, list), "must be a list"),
}

# Keys the gateway owns: what decides the model, the length, the pixels or the routing.
_REFUSED = {
    "model": "cannot change the billed model; choose the model with the top-level model field",
    "content": "is built by the gateway from prompt, image(s) and input_reference",
    "duration": "use the top-level seconds (or duration) field; it decides what is billed",
    "frames": "use the top-level seconds field; it decides what is billed",
    "ratio": "use the top-level size field (e.g. 16:9 or 1280x720)",
    "callback_url": "is set by the gateway",
    "draft_task": "make the final render with POST /v1/videos/{draft id}/remix",
}

#: Ark's request fields a metadata key passes through to (all listed keys).
PASSED = frozenset(_CHECKS)


def _choice(values: tuple[int, ...]) -> str:
    return f"{values[0]} to {values[-1]}" if len(values) > 2 else " or ".join(map(str, values))


def _frames_and_references(request: VideoRequest) -> tuple[list[tuple[int, Image]], list[tuple[int, Image]]]:
    frames: list[tuple[int, Image]] = []
    refs: list[tuple[int, Image]] = []
    for i, image in enumerate(request.images):
        (refs if image.param.startswith("input_reference") else frames).append((i, image))
    return frames, refs


def _resolve_size(request: VideoRequest, spec: Spec, problems: list[Problem]) -> tuple[str, str]:
    """``(resolution, ratio)`` from ``size``, ``metadata.resolution`` and the first image."""
    meta_res = request.metadata.get("resolution")
    resolution = meta_res if meta_res in _TIERS else spec.default_resolution
    ratio = "16:9"
    size = request.size
    if size is not None:
        ratio = size.nearest_ratio(RATIOS)
        if size.width is not None and size.height is not None:
            short = min(size.width, size.height)
            tier = next((t for t in _TIERS if short <= _SHORT_SIDE[t]), "4k")
            if meta_res in _TIERS and meta_res != tier:
                problems.append(Problem("metadata.resolution", f"disagrees with size {size.text} ({tier})"))
            resolution = tier
    else:
        frames, _ = _frames_and_references(request)
        first = frames[0][1] if frames else None
        if first is not None and first.width and first.height:
            # Ark's "adaptive" follows the first frame; we send that ratio explicitly so
            # the size we bill is the size it makes.
            ratio = min(RATIOS, key=lambda r: abs(math.log(first.width / first.height) - math.log(_ratio(r))))  # type: ignore[operator]
    if resolution not in spec.resolutions:
        param = "size" if size is not None and size.width is not None else "metadata.resolution"
        problems.append(Problem(param, f"{spec.name} makes {', '.join(spec.resolutions)} videos, not {resolution}"))
    return resolution, ratio


def _ratio(r: str) -> float:
    w, h = (int(x) for x in r.split(":"))
    return w / h


def validate(request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
    """Everything Ark would refuse for this model, as problems naming the client's field."""
    problems: list[Problem] = []
    spec = SPEC_BY_NAME.get(model.name)
    if spec is None:
        return [Problem("model", f"{model.name} is not a Seedance model")]
    derived = request.operation is not None
    seconds = request.seconds if request.seconds is not None else spec.default_seconds
    if seconds not in spec.seconds:
        problems.append(
            Problem("seconds", f"{spec.name} makes videos of {_choice(spec.seconds)} seconds, not {seconds}")
        )
    for key, value in request.metadata.items():
        if key in _REFUSED:
            problems.append(Problem(f"metadata.{key}", _REFUSED[key]))
        elif key in _CHECKS:
            check, message = _CHECKS[key]
            if not check(value):
                problems.append(Problem(f"metadata.{key}", message))
    meta = request.metadata
    if meta.get("generate_audio") is True and not spec.audio:
        problems.append(Problem("metadata.generate_audio", f"{spec.name} makes no audio"))
    if "camera_fixed" in meta and not spec.camera_fixed:
        problems.append(Problem("metadata.camera_fixed", f"{spec.name} does not take camera_fixed"))
    if meta.get("service_tier") == "flex" and not spec.flex:
        problems.append(Problem("metadata.service_tier", f"the flex tier is not offered for {spec.name}"))
    if meta.get("draft") is True and not spec.draft and not derived:
        problems.append(Problem("metadata.draft", f"{spec.name} has no draft mode"))
    if meta.get("draft") is True and meta.get("service_tier") == "flex":
        problems.append(Problem("metadata.service_tier", "a draft runs on the default tier"))
    frames, refs = _frames_and_references(request)
    if len(frames) > 2:
        problems.append(Problem("images", "Seedance takes at most two frames: the first and the last"))
    if len(frames) == 2 and not spec.last_frame:
        problems.append(Problem(frames[1][1].param, f"{spec.name} takes no last frame"))
    if refs and frames:
        problems.append(
            Problem(refs[0][1].param, "reference images cannot be combined with first/last frames (image, images)")
        )
    if refs and not spec.reference_images:
        problems.append(Problem(refs[0][1].param, f"{spec.name} takes no reference images"))
    elif len(refs) > spec.reference_images:
        problems.append(
            Problem("input_reference", f"{spec.name} takes at most {spec.reference_images} reference images")
        )
    videos = [r for r in request.references if r.kind == "video"]
    audio = [r for r in request.references if r.kind == "audio"]
    if len(videos) > spec.reference_videos and spec.reference_videos:
        problems.append(
            Problem(videos[spec.reference_videos].param, f"at most {spec.reference_videos} reference videos")
        )
    if len(audio) > spec.reference_audio and spec.reference_audio:
        problems.append(
            Problem(audio[spec.reference_audio].param, f"at most {spec.reference_audio} reference audio clips")
        )
    if audio and not (videos or request.images):
        # (unconfirmed) Ark wants a visual input beside reference audio.
        problems.append(Problem(audio[0].param, "reference audio needs a reference image or video beside it"))
    for _, image in frames + refs:
        if image.mime_type is not None and image.mime_type not in ("image/png", "image/jpeg", "image/webp"):
            problems.append(Problem(image.param, f"Seedance takes PNG, JPEG or WebP images, not {image.mime_type}"))
    _resolve_size(request, spec, problems)
    return problems


def map_request(request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
    """The job. ``payload["body"]`` is the Ark create body, with images and references
    named by index (``{"request_image": i}`` / ``{"request_reference": i}``) and resolved
    in ``submit``; a final render (``request.operation``) gets its ``draft_task`` there."""
    spec = SPEC_BY_NAME[model.name]
    problems: list[Problem] = []
    if request.operation is not None and request.metadata.get("draft") is not True:
        raise RequestInvalid([Problem("video_id", "only a finished Seedance draft (metadata.draft) can be rendered")])
    resolution, ratio = _resolve_size(request, spec, problems)
    if problems:
        raise RequestInvalid(problems)
    seconds = request.seconds if request.seconds is not None else spec.default_seconds
    frames, refs = _frames_and_references(request)
    width, height = pixels(resolution, ratio)
    body: dict[str, Any] = {k: v for k, v in request.metadata.items() if k not in _REFUSED}
    body["resolution"] = resolution
    if request.operation is not None:
        # The final render of a draft: Ark takes the prompt, inputs, ratio and length from
        # the draft task; submit adds the {"type": "draft_task"} item. (unconfirmed) which
        # other fields a final may set; we send resolution and the passed-through keys.
        body.pop("draft", None)
        body["model"] = vendor_model(spec, channel, False)
        payload: dict[str, Any] = {"final_of_draft": True, "body": body}
    else:
        content: list[dict[str, Any]] = []
        if request.prompt:
            content.append({"type": "text", "text": request.prompt})
        for n, (i, _) in enumerate(frames):
            role = "first_frame" if n == 0 else "last_frame"
            content.append({"type": "image_url", "image_url": {"request_image": i}, "role": role})
        for i, _ in refs:
            content.append({"type": "image_url", "image_url": {"request_image": i}, "role": "reference_image"})
        for i, ref in enumerate(request.references):
            kind = "video_url" if ref.kind == "video" else "audio_url"
            role = "reference_video" if ref.kind == "video" else "reference_audio"
            content.append({"type": kind, kind: {"request_reference": i}, "role": role})
        body["model"] = vendor_model(spec, channel, bool(frames or refs))
        body["content"] = content
        body["ratio"] = ratio
        body["duration"] = seconds
        payload = {"body": body}
    return VendorJob(
        payload=payload,
        seconds=seconds,
        size=f"{width}x{height}",
        resolution=resolution,
        usage={"tokens": estimate_tokens(seconds, width, height)},
    )


def _data_url(mime: str | None, data: bytes) -> str:
    import base64

    return f"data:{mime or 'application/octet-stream'};base64,{base64.b64encode(data).decode('ascii')}"


def _image_url(image: Image) -> str:
    return image.url if image.url is not None else image.data_url()


def _reference_url(ref: Reference) -> str:
    # (unconfirmed) whether Ark takes base64 data URLs for video/audio; URLs are documented.
    assert ref.url is not None or ref.data is not None
    return ref.url if ref.url is not None else _data_url(ref.mime_type, ref.data or b"")


def resolve_content(body: dict[str, Any], request: VideoRequest | None) -> dict[str, Any]:
    """``body`` with ``{"request_image": i}`` / ``{"request_reference": i}`` replaced by
    the URL or base64 data URL of the request's input (blocking: run it in a thread)."""
    out = dict(body)
    items = []
    for item in out.get("content") or []:
        item = dict(item)
        for key in ("image_url", "video_url", "audio_url"):
            ref = item.get(key)
            if not isinstance(ref, dict):
                continue
            if request is None:
                raise ValueError("the job refers to inputs but the request is not known")
            if "request_image" in ref:
                item[key] = {"url": _image_url(request.images[ref["request_image"]])}
            elif "request_reference" in ref:
                item[key] = {"url": _reference_url(request.references[ref["request_reference"]])}
        items.append(item)
    if "content" in out:
        out["content"] = items
    return out
