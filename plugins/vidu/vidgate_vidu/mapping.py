"""Unified request -> Vidu create body, the per-model rules, status words and error codes.

Vidu has one create endpoint per mode, all under ``/ent/v2/``: ``text2video`` (no image),
``img2video`` (one image: the first frame), ``start-end2video`` (two images: first and
last frame) and ``reference2video`` (reference images, from ``input_reference``). The body
is the same flat object for all: ``model``, ``prompt``, ``images[]``, ``duration``,
``resolution``, ``movement_amplitude``, ``bgm``, ``seed``, and ``aspect_ratio`` for the
modes without a first frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from vidgate import Channel, Model, Problem, Size, VendorJob, VideoRequest

TEXT2VIDEO, IMG2VIDEO, START_END, REFERENCE = "text2video", "img2video", "start-end2video", "reference2video"
MODES = (TEXT2VIDEO, IMG2VIDEO, START_END, REFERENCE)
RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4")
MAX_PROMPT = 1500  # Vidu: prompts up to 1500 characters (viduq2 pages say 2000; unconfirmed)
MAX_REFERENCE_IMAGES = 7  # (unconfirmed: "several" in the reference)
MAX_IMAGE_BYTES = 10 * 1024 * 1024  # decoded base64 images under 10 MB
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
MAX_SEED = 2147483647

#: Short side in pixels of each Vidu resolution name.
SHORT_SIDE = {"360p": 360, "540p": 540, "720p": 720, "1080p": 1080}


def pixels(resolution: str, ratio: str) -> tuple[int, int]:
    """The ``(width, height)`` of ``resolution`` at ``ratio`` (short side = the name;
    Vidu does not publish the exact pixel sizes: unconfirmed, rounded to even)."""
    short = SHORT_SIDE[resolution]
    w, h = (int(x) for x in ratio.split(":"))
    if w >= h:
        return round(short * w / h / 2) * 2, short
    return short, round(short * h / w / 2) * 2


@attrs.frozen
class Rules:
    """One Vidu model. ``resolutions`` maps each duration to its allowed resolutions,
    the first being the default."""

    seconds: tuple[int, ...]
    default_seconds: int
    resolutions: dict[int, tuple[str, ...]]
    modes: tuple[str, ...] = MODES
    #: durations at which ``bgm`` is refused
    no_bgm: tuple[int, ...] = ()


_Q2 = ("720p", "540p", "1080p")
RULES: dict[str, Rules] = {
    # viduq2: 1-10 s, 540p/720p/1080p (default 720p); no BGM on 9-10 s clips.
    "viduq2": Rules(tuple(range(1, 11)), 5, {s: _Q2 for s in range(1, 11)}, no_bgm=(9, 10)),
    # viduq1: 5 s at 1080p only.
    "viduq1": Rules((5,), 5, {5: ("1080p",)}),
    # vidu2.0: 4 s at 360p (default)/720p/1080p, 8 s at 720p; no text-to-video.
    "vidu2.0": Rules((4, 8), 4, {4: ("360p", "720p", "1080p"), 8: ("720p",)}, modes=(IMG2VIDEO, START_END, REFERENCE)),
    "vidu1.5": Rules((4, 8), 4, {4: ("360p", "720p", "1080p"), 8: ("720p",)}),
}

MODELS = tuple(
    Model(
        name,
        seconds=rules.seconds,
        default_seconds=rules.default_seconds,
        text_to_video=TEXT2VIDEO in rules.modes,
        description=description,
    )
    for name, rules, description in (
        ("viduq2", RULES["viduq2"], "Vidu Q2: 1-10 s, 540p/720p/1080p, all four modes"),
        ("viduq1", RULES["viduq1"], "Vidu Q1: 5 s, 1080p, all four modes"),
        ("vidu2.0", RULES["vidu2.0"], "Vidu 2.0: 4 s (360p-1080p) or 8 s (720p), image/start-end/reference"),
        ("vidu1.5", RULES["vidu1.5"], "Vidu 1.5: 4 s (360p-1080p) or 8 s (720p), all four modes"),
    )
)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


METADATA_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "movement_amplitude": (lambda v: v in ("auto", "small", "medium", "large"), "must be auto, small, medium or large"),
    "bgm": (_is_bool, "must be true or false"),
    "seed": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_SEED,
        f"must be an integer between 0 and {MAX_SEED}",
    ),
    "resolution": (lambda v: isinstance(v, str) and v.lower() in SHORT_SIDE, "must be 360p, 540p, 720p or 1080p"),
    "off_peak": (_is_bool, "must be true or false"),
    "watermark": (_is_bool, "must be true or false"),
}

REFUSED = {
    "model": "cannot change the billed model; choose the model with the top-level model field",
    "duration": "use the top-level seconds field; it decides what is billed",
    "aspect_ratio": "use the top-level size field (e.g. 16:9)",
    "prompt": "use the top-level prompt field",
    "images": "use image, images (first/last frame) or input_reference (reference images)",
    "callback_url": "is set by the gateway",
    "payload": "is set by the gateway (its task id)",
}


def split_images(request: VideoRequest) -> tuple[list[int], list[int]]:
    """Indexes of the frame images (``image``/``images``) and of the reference images
    (``input_reference``)."""
    frames: list[int] = []
    refs: list[int] = []
    for i, image in enumerate(request.images):
        (refs if image.param.startswith("input_reference") else frames).append(i)
    return frames, refs


def mode_of(request: VideoRequest) -> str:
    frames, refs = split_images(request)
    if refs:
        return REFERENCE
    return {0: TEXT2VIDEO, 1: IMG2VIDEO}.get(len(frames), START_END)


def _seconds(request: VideoRequest, rules: Rules) -> int:
    return request.seconds if request.seconds is not None else rules.default_seconds


def _shape(request: VideoRequest, model: Model, problems: list[Problem]) -> tuple[str, str]:
    """The (resolution, ratio) asked for; problems for what the model cannot make."""
    rules = RULES[model.name]
    seconds = _seconds(request, rules)
    allowed = rules.resolutions.get(seconds, ())
    meta = request.metadata.get("resolution")
    resolution = meta.lower() if isinstance(meta, str) and meta.lower() in SHORT_SIDE else None
    ratio = None
    size = request.size
    if size is not None:
        if size.width is not None and size.height is not None:
            found = [
                (r, q) for r in SHORT_SIDE for q in RATIOS if pixels(r, q) == (size.width, size.height) and r in allowed
            ]
            if not found:
                shown = ", ".join(f"{w}x{h}" for r in allowed for w, h in (pixels(r, q) for q in RATIOS))
                problems.append(
                    Problem("size", f"{model.name} makes {shown} at {seconds} s, not {size.width}x{size.height}")
                )
            else:
                if resolution is not None and resolution != found[0][0]:
                    problems.append(Problem("metadata.resolution", f"conflicts with size {size.text}"))
                resolution, ratio = found[0]
        else:
            ratio = f"{size.ratio_w}:{size.ratio_h}"
            if ratio not in RATIOS:
                problems.append(Problem("size", f"Vidu makes the ratios {', '.join(RATIOS)}, not {ratio}"))
    if resolution is not None and allowed and resolution not in allowed:
        problems.append(
            Problem("metadata.resolution", f"{model.name} makes {', '.join(allowed)} at {seconds} s, not {resolution}")
        )
    return resolution or (allowed[0] if allowed else "720p"), ratio or "16:9"


def validate(request: VideoRequest, model: Model) -> list[Problem]:
    """Everything Vidu would refuse, as problems naming the client's field."""
    rules = RULES[model.name]
    problems: list[Problem] = []
    if len(request.prompt) > MAX_PROMPT:
        problems.append(Problem("prompt", f"Vidu accepts at most {MAX_PROMPT} characters", "too_long"))
    seconds = _seconds(request, rules)
    _shape(request, model, problems)
    for key, value in request.metadata.items():
        if key in REFUSED:
            problems.append(Problem(f"metadata.{key}", REFUSED[key]))
        elif key in METADATA_CHECKS:
            check, message = METADATA_CHECKS[key]
            if not check(value):
                problems.append(Problem(f"metadata.{key}", message))
    if request.metadata.get("bgm") is True and seconds in rules.no_bgm:
        problems.append(Problem("metadata.bgm", f"{model.name} adds no background music to {seconds} s videos"))
    frames, refs = split_images(request)
    mode = mode_of(request)
    if mode not in rules.modes:
        problems.append(Problem("image", f"{model.name} has no {mode}", "missing_required_parameter"))
    if refs and frames:
        problems.append(
            Problem(request.images[frames[0]].param, "Vidu cannot combine reference images with first/last frames")
        )
    if len(frames) > 2:
        problems.append(Problem("images", "Vidu takes at most two frames: the first and the last"))
    if len(refs) > MAX_REFERENCE_IMAGES:
        problems.append(Problem("input_reference", f"Vidu takes at most {MAX_REFERENCE_IMAGES} reference images"))
    if request.references:
        problems.append(Problem(request.references[0].param, "Vidu takes no reference videos or audio"))
    if mode == TEXT2VIDEO and not request.prompt:
        problems.append(Problem("prompt", "Vidu text-to-video needs a prompt", "missing_required_parameter"))
    if mode == REFERENCE and not request.prompt:
        problems.append(Problem("prompt", "Vidu reference-to-video needs a prompt", "missing_required_parameter"))
    for image in request.images:
        if image.data is None:
            continue
        if len(image.data) > MAX_IMAGE_BYTES:
            problems.append(Problem(image.param, "Vidu accepts images up to 10 MB", "too_large"))
        if image.mime_type not in IMAGE_TYPES:
            problems.append(Problem(image.param, f"Vidu accepts PNG, JPEG or WebP images, not {image.mime_type}"))
        elif image.width and image.height and max(image.width, image.height) >= 4 * min(image.width, image.height):
            problems.append(Problem(image.param, "Vidu needs an aspect ratio under 1:4 / 4:1"))
    return problems


def resolve_images(body: dict[str, Any], request: VideoRequest | None) -> dict[str, Any]:
    """``body`` with ``{"request_image": i}`` entries of ``images`` replaced by the data URL
    of the request's image ``i`` (Vidu wants base64 with its content type prefix)."""
    out = dict(body)
    images = []
    for ref in out.get("images", []):
        if isinstance(ref, dict) and "request_image" in ref:
            i = ref["request_image"]
            if request is None or not 0 <= i < len(request.images):
                raise ValueError(f"the job refers to image {i} the request does not have")
            images.append(request.images[i].data_url())
        else:
            images.append(ref)
    if "images" in out:
        out["images"] = images
    return out


def map_request(request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
    """``payload`` = ``{"mode": ..., "body": {...}}``; submit adds ``payload`` (our task id)
    and ``callback_url``."""
    rules = RULES[model.name]
    problems: list[Problem] = []
    resolution, ratio = _shape(request, model, problems)
    seconds = _seconds(request, rules)
    mode = mode_of(request)
    body: dict[str, Any] = {k: v for k, v in request.metadata.items() if k not in REFUSED}
    body["resolution"] = resolution
    body["model"] = channel.vendor_model(model)
    body["duration"] = seconds
    if request.prompt:
        body["prompt"] = request.prompt
    frames, refs = split_images(request)
    chosen = refs if mode == REFERENCE else frames
    if chosen:
        body["images"] = [
            request.images[i].url if request.images[i].url is not None else {"request_image": i} for i in chosen
        ]
    if mode in (TEXT2VIDEO, REFERENCE):
        body["aspect_ratio"] = ratio
    elif frames:
        first = request.images[frames[0]]
        if first.width and first.height:
            # The output follows the first frame's shape.
            ratio = Size(first.width, first.height, first.width, first.height).nearest_ratio(RATIOS)
    w, h = pixels(resolution, ratio)
    return VendorJob(payload={"mode": mode, "body": body}, seconds=seconds, size=f"{w}x{h}", resolution=resolution)


# -- status words and errors ---------------------------------------------------------------

#: Vidu ``state`` -> vidgate status.
STATUS = {
    "created": "queued",
    "queueing": "queued",
    "processing": "in_progress",
    "success": "completed",
    "failed": "failed",
    # Not in the reference's state list; seen as the "Canceled" error reason (unconfirmed).
    "canceled": "cancelled",
    "cancelled": "cancelled",
}
#: ``err_code`` values that mean the output (or its prompt) broke the content policy.
FILTER_CODES = frozenset({"CreationPolicyViolation", "TaskPromptPolicyViolation", "AuditSubmitIllegal"})
#: Error ``reason`` strings (Vidu's error table, as mirrored by third-party SDKs; unconfirmed).
REJECTED_REASONS = frozenset(
    {
        "BadRequest",
        "FieldLacking",
        "FieldUnwanted",
        "FieldItemCountOutOfRange",
        "PageSizeOutOfRange",
        "ImageFormatInvalid",
        "TaskPromptPolicyViolation",
        "CreationPolicyViolation",
        "Conflict",
        "OperationInProcess",
        "TaskNotFound",
        "CreationNotFound",
    }
)
UNUSABLE_REASONS = frozenset({"Unauthorized", "Forbidden", "CreditInsufficient"})
# QuotaExceeded: the concurrency quota of the account (unconfirmed), so retried like a rate limit.
RATE_REASONS = frozenset({"TooManyRequests", "SystemThrottling", "QuotaExceeded"})


def guess_param(message: str) -> str | None:
    text = message.lower()
    for word, param in (
        ("duration", "seconds"),
        ("resolution", "size"),
        ("aspect_ratio", "size"),
        ("image", "image"),
        ("movement_amplitude", "metadata.movement_amplitude"),
        ("seed", "metadata.seed"),
        ("bgm", "metadata.bgm"),
        ("prompt", "prompt"),
    ):
        if word in text:
            return param
    return None
