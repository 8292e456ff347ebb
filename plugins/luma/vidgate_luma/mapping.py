"""Unified request -> Luma Dream Machine create body, the per-model rules checked first,
and the state vocabulary.

Dream Machine (reference 2.10, legacy surface; the default here because it is the surface
the issue's default base URL, the ``lumaai`` SDK, cancel and callbacks belong to):
``POST /generations/video {prompt, model, resolution, duration, aspect_ratio, loop,
keyframes{frame0, frame1}, callback_url}``. ``duration`` is a string (``"5s"``/``"9s"``).
Keyframes are ``{type: "image", url}`` (images by URL only: Dream Machine has no upload)
or ``{type: "generation", id}`` (extend a finished generation).
"""

from __future__ import annotations

from collections.abc import Callable
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


def aspect_and_tier(size: Size | None, resolution: str | None) -> tuple[str | None, str | None]:
    """Luma's ``aspect_ratio`` and resolution tier for a requested size (None = no match).

    A ``WxH`` size must be exactly a tier of an aspect ratio (``1280x720`` = 16:9 720p);
    a bare ratio takes ``resolution`` (metadata) or 720p."""
    if size is None:
        return DEFAULT_RATIO, resolution or DEFAULT_RESOLUTION
    ratio = f"{size.ratio_w}:{size.ratio_h}"
    if ratio not in ASPECT_RATIOS:
        return None, None
    if size.width is None:
        return ratio, resolution or DEFAULT_RESOLUTION
    short = min(size.width, size.height or 0)
    tier = next((t for t, px in RESOLUTIONS.items() if px == short), None)
    if tier is None or (resolution is not None and resolution != tier):
        return ratio, None
    return ratio, tier


def pixels(ratio: str, tier: str) -> str:
    """The nominal ``WxH`` of a ratio at a tier (short side = the tier)."""
    w, h = (int(x) for x in ratio.split(":"))
    short = RESOLUTIONS[tier]
    if w >= h:
        return f"{round(short * w / h / 2) * 2}x{short}"
    return f"{short}x{round(short * h / w / 2) * 2}"


def validate(request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
    """Everything Dream Machine would refuse, as problems naming the client's field."""
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
