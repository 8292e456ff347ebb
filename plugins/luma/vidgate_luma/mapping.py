"""Unified request -> Luma create bodies, the per-model rules checked first, and the state
vocabularies, for both of Luma's surfaces (reference 2.10).

**Agents API** (current, ``https://agents.lumalabs.ai/v1``, the ``luma-agents`` SDK 0.5.0):
``POST /generations {model: "ray-3.2", type: video|video_edit|video_reframe, prompt,
aspect_ratio, video{resolution, duration, hdr, exr_export, loop, start_frame, end_frame,
keyframes[], keyframe_indexes[], edit{...}, source_position}, source, user_id}``. Image and
video references are ``{url}``, ``{data, media_type}`` or ``{generation_id}``. See the
second half of this module.

**Dream Machine** (legacy, ``https://api.lumalabs.ai/dream-machine/v1``, the ``lumaai`` SDK):
``POST /generations/video {prompt, model, resolution, duration, aspect_ratio, loop,
keyframes{frame0, frame1}, callback_url}``. ``duration`` is a string (``"5s"``/``"9s"``).
Keyframes are ``{type: "image", url}`` (images by URL only: Dream Machine has no upload)
or ``{type: "generation", id}`` (extend a finished generation).
"""

from __future__ import annotations

import math
import mimetypes
from collections.abc import Callable, Mapping
from typing import Any

from vidgate import Channel, Model, Problem, RequestInvalid, Size, VendorJob, VideoRequest

ASPECT_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "9:21")
DEFAULT_RATIO = "16:9"
#: Resolution tier -> the short side in pixels (the reported size is nominal).
RESOLUTIONS = {"540p": 540, "720p": 720, "1080p": 1080, "4k": 2160}
DEFAULT_RESOLUTION = "720p"
MAX_PROMPT = 5000  # unconfirmed: the reference gives no Dream Machine prompt limit

_EXTEND = frozenset({"extend"})

#: Public name = Luma's model name. ray-1-6 takes neither duration nor resolution in
#: Luma's SDK types (only ray-2 and ray-flash-2 are listed there): it makes 5 s at its
#: own resolution (unconfirmed).
MODELS = (
    Model("ray-2", seconds=(5, 9), default_seconds=5, operations=_EXTEND, description="Luma Ray 2: 5 or 9 s, 540p-4k"),
    Model(
        "ray-flash-2",
        seconds=(5, 9),
        default_seconds=5,
        operations=_EXTEND,
        description="Luma Ray Flash 2: faster, cheaper Ray 2",
    ),
    Model("ray-1-6", seconds=(5,), default_seconds=5, operations=_EXTEND, description="Luma Ray 1.6: 5 s"),
)
TIERED = frozenset({"ray-2", "ray-flash-2"})

#: Dream Machine ``state`` -> vidgate status.
STATUS = {"queued": "queued", "dreaming": "in_progress", "completed": "completed", "failed": "failed"}
UNFINISHED = frozenset({"queued", "dreaming"})


def _is_str(v: Any) -> bool:
    return isinstance(v, str) and bool(v)


_METADATA_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "loop": (lambda v: isinstance(v, bool), "must be true or false"),
    "resolution": (lambda v: v in RESOLUTIONS, f"must be one of {', '.join(RESOLUTIONS)}"),
    "concepts": (
        lambda v: isinstance(v, list) and all(isinstance(c, dict) and _is_str(c.get("key")) for c in v),
        'must be a list of {"key": "..."} objects',
    ),
}
_REFUSED = {
    "model": "cannot change the billed model; choose the model with the top-level model field",
    "duration": "use the top-level seconds field; it decides what is billed",
    "aspect_ratio": "use the top-level size field (e.g. 16:9)",
    "keyframes": "use image/images (first and last frame) or POST /v1/videos/extensions",
    "callback_url": "is set by the gateway",
    "prompt": "use the top-level prompt field",
    "generation_type": "only video generations are supported",
}


def ratio_name(size: Size, ratios: tuple[str, ...]) -> str | None:
    """The vendor's name among ``ratios`` for the aspect of ``size``, or None.

    ``Size`` reduces its ratio (``21:9`` and ``1680x720`` are both ``7:3``), so the names
    are compared reduced too."""
    for name in ratios:
        w, h = (int(x) for x in name.split(":"))
        g = math.gcd(w, h)
        if (w // g, h // g) == (size.ratio_w, size.ratio_h):
            return name
    return None


def aspect_and_tier(
    size: Size | None,
    resolution: str | None,
    ratios: tuple[str, ...] = ASPECT_RATIOS,
    resolutions: Mapping[str, int] = RESOLUTIONS,
) -> tuple[str | None, str | None]:
    """Luma's ``aspect_ratio`` and resolution tier for a requested size (None = no match),
    from a surface's ``ratios`` and ``resolutions`` (Dream Machine's by default).

    A ``WxH`` size must be exactly a tier of an aspect ratio (``1280x720`` = 16:9 720p);
    a bare ratio takes ``resolution`` (metadata) or 720p."""
    if size is None:
        return DEFAULT_RATIO, resolution or DEFAULT_RESOLUTION
    ratio = ratio_name(size, ratios)
    if ratio is None:
        return None, None
    if size.width is None:
        return ratio, resolution or DEFAULT_RESOLUTION
    short = min(size.width, size.height or 0)
    tier = next((t for t, px in resolutions.items() if px == short), None)
    if tier is None or (resolution is not None and resolution != tier):
        return ratio, None
    return ratio, tier


def pixels(ratio: str, tier: str, resolutions: Mapping[str, int] = RESOLUTIONS) -> str:
    """The nominal ``WxH`` of a ratio at a tier of ``resolutions`` (short side = the tier)."""
    w, h = (int(x) for x in ratio.split(":"))
    short = resolutions[tier]
    if w >= h:
        return f"{round(short * w / h / 2) * 2}x{short}"
    return f"{short}x{round(short * h / w / 2) * 2}"


def validate(request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
    """Everything Dream Machine would refuse, as problems naming the client's field."""
    if model.name not in {m.name for m in MODELS}:
        return [
            Problem("model", f"{model.name} is a Luma Agents API model; channel {channel.name} speaks Dream Machine")
        ]
    vendor_model = channel.vendor_model(model)
    problems: list[Problem] = []
    if len(request.prompt) > MAX_PROMPT:
        problems.append(Problem("prompt", f"Luma takes at most {MAX_PROMPT} characters", "too_long"))
    if not request.prompt.strip() and not request.images and request.operation is None:
        problems.append(Problem("prompt", "Luma needs a prompt or an image", "missing_required_parameter"))
    for key, value in request.metadata.items():
        if key in _REFUSED:
            problems.append(Problem(f"metadata.{key}", _REFUSED[key]))
        elif key in _METADATA_CHECKS:
            check, message = _METADATA_CHECKS[key]
            if not check(value):
                problems.append(Problem(f"metadata.{key}", message))
    if request.metadata.get("resolution") is not None and vendor_model not in TIERED:
        problems.append(Problem("metadata.resolution", f"{vendor_model} has one resolution"))
    if len(request.images) > 2:
        problems.append(Problem(request.images[2].param, "Luma takes a first and a last frame (two images)"))
    if request.operation == "extend" and len(request.images) > 1:
        problems.append(Problem(request.images[1].param, "an extension starts from the source video"))
    for image in request.images[:2]:
        if image.url is None or not image.url.lower().startswith(("https://", "http://")):
            problems.append(
                Problem(image.param, "Luma Dream Machine fetches keyframe images by URL only; send an https URL")
            )
    resolution = request.metadata.get("resolution")
    ratio, tier = aspect_and_tier(request.size, resolution if isinstance(resolution, str) else None)
    if ratio is None or (tier is None and vendor_model in TIERED):
        shown = request.size.text if request.size is not None else ""
        problems.append(
            Problem(
                "size",
                f"Luma makes the aspect ratios {', '.join(ASPECT_RATIOS)} at 540p, 720p, 1080p or 4k "
                f"(e.g. 1280x720 or 16:9), not {shown}",
            )
        )
    if (
        vendor_model not in TIERED
        and request.size is not None
        and request.size.width is not None
        and request.operation is None
    ):
        problems.append(Problem("size", f"{vendor_model} takes an aspect ratio (e.g. 16:9), not pixels"))
    return problems


def map_request(request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
    """Build the job: ``payload`` = ``{"body": {...}}``; ``submit`` adds ``callback_url``
    and ``derive`` the ``frame0`` generation keyframe of an extension."""
    problems = validate(request, model, channel)
    if problems:
        raise RequestInvalid(problems)
    vendor_model = channel.vendor_model(model)
    resolution = request.metadata.get("resolution")
    ratio, tier = aspect_and_tier(request.size, resolution if isinstance(resolution, str) else None)
    assert ratio is not None
    seconds = request.seconds if request.seconds is not None else (model.default_seconds or 5)
    body: dict[str, Any] = {k: v for k, v in request.metadata.items() if k not in _REFUSED}
    body.update({"model": vendor_model, "aspect_ratio": ratio})
    if request.prompt:
        body["prompt"] = request.prompt
    if vendor_model in TIERED:
        assert tier is not None
        body["resolution"] = tier
        body["duration"] = f"{seconds}s"
    else:
        tier = None
    keyframes: dict[str, Any] = {}
    if request.operation == "extend" and request.images:
        keyframes["frame1"] = {"type": "image", "url": request.images[0].url}
    elif request.images:
        keyframes["frame0"] = {"type": "image", "url": request.images[0].url}
        if len(request.images) > 1:
            keyframes["frame1"] = {"type": "image", "url": request.images[1].url}
    if keyframes:
        body["keyframes"] = keyframes
    size = pixels(ratio, tier) if tier else ratio
    return VendorJob(payload={"body": body}, seconds=seconds, size=size, resolution=tier)


# -- the Agents API (options.surface = "agents") ----------------------------------------

#: Ray 3.2's rules (SDK ``video_options_param``, ``video_resolution``, ``video_duration``;
#: the aspect ratios are the reference's, the SDK's wider list being the image models').
AGENTS_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9")
AGENTS_RESOLUTIONS = {"360p": 360, "540p": 540, "720p": 720, "1080p": 1080}
AGENTS_SECONDS = (5, 10)
HDR_RESOLUTIONS = ("720p", "1080p")  # 360p is SDR-only (SDK); 540p too (Luma's guides)
FPS = 24  # keyframe_indexes live on the duration x 24 fps grid (SDK)
MAX_AGENTS_PROMPT = 6000
MAX_KEYFRAMES = 64
MAX_SOURCE_SECONDS = 18  # a video_edit source is at most 18 s; the output is as long
EDIT_STRENGTHS = tuple(f"{kind}_{n}" for kind in ("adhere", "flex", "reimagine") for n in (1, 2, 3))
#: Luma ``type`` values an input video may ask for with ``metadata.type``.
VIDEO_TYPES = ("video_edit", "video_reframe")

#: Public name = Luma's. Seconds are checked by :func:`validate_agents` (5 or 10 for a
#: new video; the source's length for edits and reframes), so the model declares none.
AGENTS_MODELS = (
    Model(
        "ray-3.2",
        default_seconds=5,
        operations=frozenset({"extend", "edit"}),
        reference_videos=True,
        description="Luma Ray 3.2 (Agents API): 5 or 10 s, 360p-1080p, HDR, keyframes; video edit and reframe",
    ),
)
AGENTS_NAMES = frozenset(m.name for m in AGENTS_MODELS)
DREAM_MACHINE_NAMES = frozenset(m.name for m in MODELS)

#: Agents ``state`` -> vidgate status.
AGENTS_STATUS = {"queued": "queued", "processing": "in_progress", "completed": "completed", "failed": "failed"}

_AGENTS_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "resolution": (lambda v: v in AGENTS_RESOLUTIONS, f"must be one of {', '.join(AGENTS_RESOLUTIONS)}"),
    "hdr": (lambda v: isinstance(v, bool), "must be true or false"),
    "exr_export": (lambda v: isinstance(v, bool), "must be true or false"),
    "loop": (lambda v: isinstance(v, bool), "must be true or false"),
    "type": (lambda v: v in ("video", *VIDEO_TYPES), "must be video, video_edit or video_reframe"),
    "strength": (lambda v: v in EDIT_STRENGTHS, f"must be one of {', '.join(EDIT_STRENGTHS)}"),
    "auto_controls": (lambda v: isinstance(v, bool), "must be true or false"),
    "controls": (lambda v: isinstance(v, dict), "must be an object (depth, face, normals, pose, trajectory)"),
    "source_position": (
        lambda v: (
            isinstance(v, dict)
            and all(isinstance(v.get(k), (int, float)) for k in ("x_norm", "y_norm", "w_norm", "h_norm"))
        ),
        "must be {x_norm, y_norm, w_norm, h_norm} numbers",
    ),
    "user_id": (_is_str, "must be a non-empty string"),
}
_AGENTS_REFUSED = {
    "duration": "use the top-level seconds field; it decides what is billed",
    "aspect_ratio": "use the top-level size field (e.g. 16:9)",
    "prompt": "use the top-level prompt field",
    "video": "set its keys as metadata keys (resolution, hdr, loop, strength, ...)",
    "source": "use input_reference (a video), or POST /v1/videos/edits for a finished task",
    "start_frame": "use image/images (first and last frame)",
    "end_frame": "use image/images (first and last frame)",
    "keyframes": "use images: more than two, or with 10 s or HDR, become keyframes",
    "keyframe_indexes": "the gateway spaces the images evenly over the clip",
    "image_ref": "image references are for Luma's image models",
    "callback_url": "the Agents API has no callbacks",
}
#: Keys that go under ``video`` / ``video.edit`` rather than at the top level.
_VIDEO_KEYS = ("resolution", "hdr", "exr_export", "loop", "source_position")
_EDIT_KEYS = ("strength", "auto_controls", "controls")
_ONLY_FOR = {
    "loop": ("video",),
    "strength": ("video_edit",),
    "auto_controls": ("video_edit",),
    "controls": ("video_edit",),
    "source_position": ("video_reframe",),
}


def agents_type(request: VideoRequest) -> str:
    """The Luma ``type`` of a request: ``video`` (text or images, and extensions),
    ``video_edit`` (an edit, or an input video) or ``video_reframe`` (an input video with
    ``metadata.type = "video_reframe"``)."""
    if request.operation == "edit":
        return "video_edit"
    if request.operation is None and any(r.kind == "video" for r in request.references):
        wanted = request.metadata.get("type")
        return "video_reframe" if wanted == "video_reframe" else "video_edit"
    return "video"


def _metadata_problems(request: VideoRequest, kind: str) -> list[Problem]:
    problems: list[Problem] = []
    for key, value in request.metadata.items():
        if key in _AGENTS_REFUSED:
            problems.append(Problem(f"metadata.{key}", _AGENTS_REFUSED[key]))
        elif key in _AGENTS_CHECKS:
            check, message = _AGENTS_CHECKS[key]
            if not check(value):
                problems.append(Problem(f"metadata.{key}", message))
            elif key in _ONLY_FOR and kind not in _ONLY_FOR[key]:
                problems.append(Problem(f"metadata.{key}", f"is only for {' or '.join(_ONLY_FOR[key])} generations"))
    wanted = request.metadata.get("type")
    if wanted is not None and request.operation is None and wanted != kind and wanted in ("video", *VIDEO_TYPES):
        needs = "an input video (input_reference)" if wanted in VIDEO_TYPES else "no input video"
        problems.append(Problem("metadata.type", f"{wanted} needs {needs}"))
    return problems


def _option_problems(request: VideoRequest, kind: str, seconds: int, tier: str | None) -> list[Problem]:
    """HDR, EXR and loop rules (SDK ``VideoOptionsParam``)."""
    if request.operation is not None:
        return []  # a derived task ignores the source's options (map_agents)
    meta = request.metadata
    hdr = meta.get("hdr") is True
    problems: list[Problem] = []
    if hdr and kind == "video_reframe":
        problems.append(Problem("metadata.hdr", "Luma does not make HDR reframes"))
    elif hdr and tier is not None and tier not in HDR_RESOLUTIONS:
        problems.append(Problem("metadata.hdr", f"HDR needs {' or '.join(HDR_RESOLUTIONS)}, not {tier}"))
    if meta.get("exr_export") is True and not hdr:
        problems.append(Problem("metadata.exr_export", "needs metadata.hdr = true"))
    if meta.get("loop") is True and kind == "video":
        if seconds != 5:
            problems.append(Problem("metadata.loop", "a loop is 5 seconds long"))
        elif hdr:
            problems.append(Problem("metadata.loop", "a loop cannot be HDR"))
        elif len(request.images) > 2:
            problems.append(Problem("metadata.loop", "a loop takes a first and a last frame, not keyframes"))
    return problems


def _input_video_problems(request: VideoRequest, kind: str) -> list[Problem]:
    """An input video (``input_reference``) to edit or reframe: one, by http(s) URL or
    inline, with its length stated (what is billed) and the output's size."""
    videos = [r for r in request.references if r.kind == "video"]
    problems: list[Problem] = []
    if len(videos) > 1:
        problems.append(Problem(videos[1].param, "Luma edits or reframes one video"))
    if videos[0].url is not None and not videos[0].url.lower().startswith(("https://", "http://")):
        problems.append(Problem(videos[0].param, "Luma fetches video URLs over http(s) only"))
    if request.images:
        problems.append(Problem(request.images[0].param, f"a {kind} takes no images"))
    if request.seconds is None or not 1 <= request.seconds <= MAX_SOURCE_SECONDS:
        # The output is as long as the input, which the gateway cannot measure before the
        # call: the client states it, and is billed for it.
        problems.append(
            Problem("seconds", f"state the input video's length, 1 to {MAX_SOURCE_SECONDS} seconds (what is billed)")
        )
    if request.size is None:
        what = "the output's aspect ratio" if kind == "video_reframe" else "the input video's size"
        problems.append(Problem("size", f"state {what} (e.g. 1280x720 or 16:9)", "missing_required_parameter"))
    return problems


def validate_agents(request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
    """Everything the Agents API would refuse, as problems naming the client's field."""
    if model.name not in AGENTS_NAMES:
        said = f"{model.name} is a Luma Dream Machine model; channel {channel.name} speaks the Agents API"
        return [Problem("model", said)]
    kind = agents_type(request)
    problems = _metadata_problems(request, kind)
    if not request.prompt.strip():
        problems.append(Problem("prompt", "Luma needs a prompt for every generation", "missing_required_parameter"))
    elif len(request.prompt) > MAX_AGENTS_PROMPT:
        problems.append(Problem("prompt", f"Luma takes at most {MAX_AGENTS_PROMPT} characters", "too_long"))
    seconds = request.seconds if request.seconds is not None else (model.default_seconds or 5)
    if request.operation is None and kind != "video":
        problems.extend(_input_video_problems(request, kind))
    elif request.operation in (None, "extend") and seconds not in AGENTS_SECONDS:
        problems.append(Problem("seconds", f"{model.name} makes 5 or 10 second videos, not {seconds}"))
    if request.operation is not None and request.images:
        problems.append(Problem(request.images[0].param, f"an {request.operation} takes no images"))
    if len(request.images) > MAX_KEYFRAMES:
        problems.append(Problem(request.images[MAX_KEYFRAMES].param, f"Luma takes at most {MAX_KEYFRAMES} keyframes"))
    for image in request.images:
        if image.url is not None and not image.url.lower().startswith(("https://", "http://")):
            problems.append(Problem(image.param, "Luma fetches image URLs over http(s) only"))
    ratio, tier = _agents_shape(request)
    if request.size is not None and (ratio is None or tier is None):
        problems.append(
            Problem(
                "size",
                f"Luma Ray 3.2 makes the aspect ratios {', '.join(AGENTS_RATIOS)} at 360p, 540p, 720p or 1080p "
                f"(e.g. 1280x720 or 16:9), not {request.size.text}",
            )
        )
    problems.extend(_option_problems(request, kind, seconds, tier))
    return problems


def _agents_shape(request: VideoRequest) -> tuple[str | None, str | None]:
    """``(aspect_ratio, resolution)`` of a request (None where it matches nothing): a
    ``WxH`` size must be a tier of a ratio exactly; a ratio takes ``metadata.resolution``
    or 720p. A derived task ignores inherited metadata and keeps the source's shape."""
    wanted = request.metadata.get("resolution") if request.operation is None else None
    resolution = wanted if isinstance(wanted, str) and wanted in AGENTS_RESOLUTIONS else None
    return aspect_and_tier(request.size, resolution, AGENTS_RATIOS, AGENTS_RESOLUTIONS)


#: Placeholder for the source generation, filled in by ``derive``.
SOURCE = {"source_task": True}


def _image_ref(request: VideoRequest, index: int) -> dict[str, Any]:
    image = request.images[index]
    # Inline bytes are not stored twice: submit encodes ctx.request.images[index].
    return {"url": image.url} if image.url is not None else {"request_image": index}


def frames(refs: list[dict[str, Any]], seconds: int, hdr: bool) -> dict[str, Any]:
    """Anchor frames under ``video``: ``start_frame``/``end_frame`` (the SDK's "legacy
    2-frame surface": 5 s and SDR only), else ``keyframes`` + ``keyframe_indexes`` spread
    evenly over the ``seconds x 24`` frame grid (1-64 anchors, 10 s and HDR allowed)."""
    if not refs:
        return {}
    if len(refs) <= 2 and seconds == 5 and not hdr:
        return dict(zip(("start_frame", "end_frame"), refs, strict=False))
    last = seconds * FPS
    if len(refs) == 1:
        return {"keyframes": refs, "keyframe_indexes": [0]}
    return {"keyframes": refs, "keyframe_indexes": [round(i * last / (len(refs) - 1)) for i in range(len(refs))]}


def _video_source(request: VideoRequest) -> dict[str, Any]:
    index, video = next((i, r) for i, r in enumerate(request.references) if r.kind == "video")
    if video.url is None:
        return {"request_reference": index}
    # media_type is required with a video source.url (SDK ImageRefParam).
    guessed = mimetypes.guess_type(video.url.split("?", 1)[0])[0]
    return {"url": video.url, "media_type": guessed if guessed and guessed.startswith("video/") else "video/mp4"}


def map_agents(request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
    """Build the job: ``payload`` = ``{"surface": "agents", "body": {...}}``; ``submit``
    inlines the request's own images and videos, ``derive`` names the source generation."""
    problems = validate_agents(request, model, channel)
    if problems:
        raise RequestInvalid(problems)
    kind = agents_type(request)
    ratio, tier = _agents_shape(request)
    assert ratio is not None and tier is not None
    meta = request.metadata if request.operation is None else {}
    seconds = request.seconds if request.seconds is not None else (model.default_seconds or 5)
    body: dict[str, Any] = {k: v for k, v in meta.items() if k not in _AGENTS_CHECKS and k not in _AGENTS_REFUSED}
    body.update({"model": channel.vendor_model(model), "type": kind, "prompt": request.prompt})
    if isinstance(request.metadata.get("user_id"), str):
        body["user_id"] = request.metadata["user_id"]
    video: dict[str, Any] = {"resolution": tier, **{k: meta[k] for k in _VIDEO_KEYS[1:] if k in meta}}
    edit = {k: meta[k] for k in _EDIT_KEYS if k in meta}
    if edit:
        video["edit"] = edit
    if kind == "video":
        body["aspect_ratio"] = ratio
        video["duration"] = f"{seconds}s"
        refs = [_image_ref(request, i) for i in range(len(request.images))]
        if request.operation == "extend":
            refs = [dict(SOURCE)]  # the source's last frame starts the new clip
        video.update(frames(refs, seconds, meta.get("hdr") is True))
    else:
        if kind == "video_reframe":
            body["aspect_ratio"] = ratio
        body["source"] = dict(SOURCE) if request.operation == "edit" else _video_source(request)
    body["video"] = video
    size = pixels(ratio, tier, AGENTS_RESOLUTIONS)  # nominal: short side = the tier
    return VendorJob(
        payload={"surface": "agents", "body": body},
        seconds=seconds,
        size=size,
        resolution=tier,
        usage={"fps": FPS, "frames": seconds * FPS},
    )
