"""Unified request -> Kling create body, and the checks that come first.

Kling's two create endpoints take the same body except that image2video adds ``image``
(and ``image_tail``, masks) and has no ``aspect_ratio``. What we bill is what we send:
``duration`` is resolved here (Kling's default ``"5"`` when the client did not say) and
the :class:`~vidgate.VendorJob` reports it, with the size Kling will make for the mode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vidgate import Channel, Model, Problem, Size, VendorJob, VideoRequest

MAX_PROMPT = 2500
MAX_IMAGE_BYTES = 10 * 1024 * 1024  # Kling's documented image limit
MIN_IMAGE_SIDE = 300  # Kling: min side 300 px, aspect between 1:2.5 and 2.5:1
MAX_IMAGE_ASPECT = 2.5
IMAGE_TYPES = ("image/png", "image/jpeg")  # Kling: jpg/jpeg/png only
ASPECT_RATIOS = ("16:9", "9:16", "1:1")
DEFAULT_ASPECT_RATIO = "16:9"  # Kling's documented default (not 1:1)
DEFAULT_SECONDS = 5

TEXT2VIDEO = "text2video"
IMAGE2VIDEO = "image2video"

#: Output height by model and mode (DOC capability map). Missing = std 720p / pro 1080p.
_FIXED_HEIGHT = {"kling-v1": 720, "kling-v2-master": 720, "kling-v2-1-master": 1080}
_PIXELS = {
    720: {"16:9": "1280x720", "9:16": "720x1280", "1:1": "720x720"},
    1080: {"16:9": "1920x1080", "9:16": "1080x1920", "1:1": "1080x1080"},
}


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# Documented keys: (check, message). A key not listed here passes through unchecked.
_METADATA_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "negative_prompt": (
        lambda v: _is_str(v) and len(v) <= MAX_PROMPT,
        f"must be a string of at most {MAX_PROMPT} characters",
    ),
    "cfg_scale": (lambda v: _is_number(v) and 0 <= v <= 1, "must be a number between 0 and 1"),
    "mode": (lambda v: v in ("std", "pro"), 'must be "std" or "pro"'),
    "camera_control": (
        lambda v: isinstance(v, dict) and _is_str(v.get("type")),
        'must be an object with a string "type"',
    ),
    "image_tail": (lambda v: _is_str(v) and bool(v.strip()), "must be a non-empty string (URL or raw base64)"),
    "static_mask": (lambda v: _is_str(v) and bool(v.strip()), "must be a non-empty string (URL or raw base64)"),
    "dynamic_masks": (lambda v: isinstance(v, list) and len(v) <= 6, "must be a list of at most 6 masks"),
    "sound": (lambda v: v in ("on", "off"), 'must be "on" or "off"'),
    "watermark_info": (lambda v: isinstance(v, dict), 'must be an object like {"enabled": true}'),
}

# Keys the gateway owns; a client may not set them through metadata.
_REFUSED = {
    "model": "cannot change the billed model; choose the model with the top-level model field",
    "model_name": "cannot change the billed model; choose the model with the top-level model field",
    "duration": "use the top-level seconds (or duration) field; it decides what is billed",
    "external_task_id": "is set by the gateway (its task id) so lost submissions can be found again",
    "callback_url": "is set by the gateway",
    "prompt": "use the top-level prompt field",
    "image": "use the top-level image/images/input_reference fields",
    "aspect_ratio": "use the top-level size field (e.g. 16:9, 9:16, 1:1 or 1280x720)",
}


def allowed_seconds(model: Model) -> tuple[int, ...]:
    return model.seconds or (5, 10)


def _image_problems(request: VideoRequest) -> list[Problem]:
    problems = []
    if len(request.images) > 2:
        problems.append(Problem("images", "Kling takes at most two images: the first frame and the last frame"))
    if len(request.images) > 1 and "image_tail" in request.metadata:
        problems.append(Problem("metadata.image_tail", "a second image already sets the last frame; send one of them"))
    for image in request.images[:2]:
        param = image.param
        if image.data is None:
            continue
        if len(image.data) > MAX_IMAGE_BYTES:
            problems.append(Problem(param, "Kling accepts images up to 10 MB", "too_large"))
        if image.mime_type not in IMAGE_TYPES:
            problems.append(Problem(param, f"Kling accepts PNG or JPEG images, not {image.mime_type}"))
        elif image.width is not None and image.height is not None:
            w, h = image.width, image.height
            if min(w, h) < MIN_IMAGE_SIDE:
                problems.append(
                    Problem(param, f"Kling needs images of at least {MIN_IMAGE_SIDE} px per side, got {w}x{h}")
                )
            elif max(w, h) > MAX_IMAGE_ASPECT * min(w, h):
                problems.append(Problem(param, f"Kling needs an aspect ratio between 1:2.5 and 2.5:1, got {w}x{h}"))
    return problems


def validate(request: VideoRequest, model: Model) -> list[Problem]:
    """Everything Kling would refuse, as problems naming the client's field."""
    problems: list[Problem] = []
    if len(request.prompt) > MAX_PROMPT:
        problems.append(Problem("prompt", f"Kling accepts at most {MAX_PROMPT} characters", "too_long"))
    seconds = request.seconds if request.seconds is not None else DEFAULT_SECONDS
    choices = allowed_seconds(model)
    if seconds not in choices:
        shown = f"{choices[0]} to {choices[-1]}" if len(choices) > 2 else " or ".join(map(str, choices))
        problems.append(Problem("seconds", f"{model.name} makes videos of {shown} seconds, not {seconds}"))
    for key, value in request.metadata.items():
        if key in _REFUSED:
            problems.append(Problem(f"metadata.{key}", _REFUSED[key]))
        elif key in _METADATA_CHECKS:
            check, message = _METADATA_CHECKS[key]
            if not check(value):
                problems.append(Problem(f"metadata.{key}", message))
    problems.extend(_image_problems(request))
    visual = bool(request.images) or "image_tail" in request.metadata
    if not visual and not model.text_to_video:
        problems.append(
            Problem("image", f"{model.name} only makes videos from an image; send image", "missing_required_parameter")
        )
    if visual and not model.image_to_video:
        problems.append(Problem("image", f"{model.name} cannot start from an image"))
    return problems


def _image_field(image: Any, index: int) -> str | dict[str, int]:
    # Kling wants a URL or RAW base64 (never a data: URL). The bytes are already stored
    # with the request: the job names the image by index and submit encodes it.
    return image.url if image.url is not None else {"request_image": index}


def resolve_images(body: dict[str, Any], request: VideoRequest | None) -> dict[str, Any]:
    """``body`` with ``{"request_image": i}`` fields replaced by the raw base64 of the
    request's image ``i`` (jobs stored before this scheme hold the base64 itself)."""
    out = dict(body)
    for key in ("image", "image_tail"):
        ref = out.get(key)
        if isinstance(ref, dict) and "request_image" in ref:
            if request is None or not 0 <= ref["request_image"] < len(request.images):
                raise ValueError(f"the job refers to image {ref['request_image']} the request does not have")
            out[key] = request.images[ref["request_image"]].base64()
    return out


def output_size(vendor_model: str, mode: str, ratio: str) -> tuple[str, str]:
    """The ``WxH`` and resolution label Kling makes for this model, mode and ratio."""
    height = _FIXED_HEIGHT.get(vendor_model, 1080 if mode == "pro" else 720)
    return _PIXELS[height][ratio], f"{height}p"


def map_request(request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
    """Build the job. ``payload`` = ``{"family": ..., "body": {...}}``; ``submit`` adds
    ``external_task_id`` and ``callback_url``, which depend on the call context."""
    vendor_model = channel.vendor_model(model)
    seconds = request.seconds if request.seconds is not None else DEFAULT_SECONDS
    # Unknown metadata keys go through untouched; our own fields win over them.
    body: dict[str, Any] = {k: v for k, v in request.metadata.items() if k not in _REFUSED}
    body["model_name"] = vendor_model
    body["duration"] = str(seconds)
    ratio = request.size.nearest_ratio(ASPECT_RATIOS) if request.size is not None else DEFAULT_ASPECT_RATIO
    if request.images or "image_tail" in request.metadata:
        family = IMAGE2VIDEO
        # The output follows the first frame's shape; report that when we can see it.
        first = request.images[0] if request.images else None
        if first is not None and first.width and first.height:
            ratio = Size(first.width, first.height, first.width, first.height).nearest_ratio(ASPECT_RATIOS)
        if request.images:
            body["image"] = _image_field(request.images[0], 0)
        if len(request.images) > 1:
            body["image_tail"] = _image_field(request.images[1], 1)
        if request.prompt:
            body["prompt"] = request.prompt
    else:
        family = TEXT2VIDEO
        body["prompt"] = request.prompt
        body["aspect_ratio"] = ratio
    mode = request.metadata.get("mode", "std")
    size, resolution = output_size(vendor_model, mode if mode in ("std", "pro") else "std", ratio)
    return VendorJob(payload={"family": family, "body": body}, seconds=seconds, size=size, resolution=resolution)
