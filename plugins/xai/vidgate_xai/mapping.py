"""Unified request -> xAI Grok Imagine request: models and their rules, status words,
error classification.

Pure computation (no I/O), so it runs inside the synchronous ``validate`` and
``map_request`` hooks. The facts come from vendor-protocols-2026.md §2.11; where the
reference marks something unconfirmed, the comment here says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from vidgate import Image, Model, PollResult, Problem, RequestInvalid, Size, TaskError, VendorJob, VideoRequest
from vidgate.errors import (
    ChannelUnusable,
    ModelRetired,
    TaskNotFound,
    VendorError,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
)
from vidgate.vendorhttp import retry_after

# -- the rules ------------------------------------------------------------------------

SECONDS: tuple[int, ...] = tuple(range(1, 16))  # `duration` 1-15
DEFAULT_SECONDS = 8  # xAI's default; always sent explicitly, so the bill is what xAI makes
ASPECT_RATIOS: tuple[str, ...] = ("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3")
DEFAULT_ASPECT_RATIO = "16:9"
SHORT_SIDE: dict[str, int] = {"480p": 480, "720p": 720, "1080p": 1080}
# The reference gives no default resolution (relays default to 480p): we always send one.
DEFAULT_RESOLUTION = "720p"
MAX_PROMPT = 4096
MAX_REFERENCE_IMAGES = 7
MAX_KEYFRAMES = 4
MAX_REFERENCE_AUDIOS = 3
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
IMAGE_MODES = ("first_frame", "first_last", "reference")


@attrs.frozen
class Rules:
    """What one xAI model can do beyond the common rules."""

    resolutions: tuple[str, ...]
    #: ``last_frame`` and ``keyframes`` ("1.5 only" in the reference).
    frames: bool


_V1 = Rules(("480p", "720p"), frames=False)
# 1080p is "1.5 only"; the reference does not say whether -lite is excluded, so it is
# treated as a 1.5 model (unconfirmed).
_V15 = Rules(("480p", "720p", "1080p"), frames=True)

RULES: dict[str, Rules] = {
    "grok-imagine-video": _V1,
    "grok-imagine-video-1.5": _V15,
    "grok-imagine-video-1.5-lite": _V15,
    "grok-imagine-video-1.5-preview": _V15,
}

# The reference lists edit and extend as endpoints taking any video `model`; it does not
# say per model which serve them (unconfirmed): every model declares both.
_OPERATIONS = frozenset({"edit", "extend"})

MODELS: tuple[Model, ...] = (
    Model(
        "grok-imagine-video",
        description=(
            "xAI Grok Imagine: 1-15 s, 480p/720p, 7 aspect ratios, first frame or 1-7 reference images, "
            "audio references, edit, extend."
        ),
        seconds=SECONDS,
        default_seconds=DEFAULT_SECONDS,
        reference_audio=True,
        operations=_OPERATIONS,
    ),
    Model(
        "grok-imagine-video-1.5",
        description="xAI Grok Imagine 1.5: as grok-imagine-video plus 1080p, last frame and keyframes.",
        seconds=SECONDS,
        default_seconds=DEFAULT_SECONDS,
        reference_audio=True,
        operations=_OPERATIONS,
    ),
    Model(
        "grok-imagine-video-1.5-lite",
        description="xAI Grok Imagine 1.5 Lite: the 1.5 rules (1080p on lite is unconfirmed).",
        seconds=SECONDS,
        default_seconds=DEFAULT_SECONDS,
        reference_audio=True,
        operations=_OPERATIONS,
    ),
    Model(
        "grok-imagine-video-1.5-preview",
        description="xAI Grok Imagine 1.5 preview: the 1.5 rules.",
        seconds=SECONDS,
        default_seconds=DEFAULT_SECONDS,
        reference_audio=True,
        operations=_OPERATIONS,
    ),
)

#: Metadata keys this plugin knows (typed); anything else is a 400.
METADATA_KEYS = ("generate_audio", "user", "resolution", "image_mode", "keyframes")
#: Keys that would bypass validation, change the billed model or move the output.
RESERVED_KEYS: dict[str, str] = {
    "model": "use the top-level model",
    "prompt": "use the top-level prompt",
    "duration": "use the top-level seconds",
    "seconds": "use the top-level seconds",
    "aspect_ratio": "use the top-level size (a ratio such as 16:9)",
    "image": "use the top-level image",
    "last_frame": "send two images with metadata.image_mode = first_last",
    "reference_images": "send the images with metadata.image_mode = reference",
    "reference_audios": "send audio URLs in input_reference",
    "video": "use POST /v1/videos/edits or /v1/videos/extensions",
    "storage_options": "output into your xAI files is not supported: the gateway stores the result itself",
}


def rules_for(model: Model) -> Rules:
    """The rules of ``model`` (by its public name; unknown names get the 1.0 rules)."""
    return RULES.get(model.name, _V1)


def _even(value: float) -> int:
    return 2 * round(value / 2)


def pixels(aspect_ratio: str, resolution: str) -> tuple[int, int]:
    """Width and height of a video of ``aspect_ratio`` at ``resolution`` (the short side
    is the resolution; the long side rounded to an even number, as encoders need).
    xAI does not publish its pixel sizes (unconfirmed): this is what the gateway shows
    and bills as ``size``."""
    w, h = (int(v) for v in aspect_ratio.split(":"))
    short = SHORT_SIDE[resolution]
    if w >= h:
        return _even(short * w / h), short
    return short, _even(short * h / w)


def _reduced(w: int, h: int) -> str:
    g = math.gcd(w, h)
    return f"{w // g}:{h // g}"


@attrs.frozen
class Shape:
    """The resolved ``aspect_ratio`` and ``resolution`` of a generation."""

    aspect_ratio: str
    resolution: str

    @property
    def size(self) -> str:
        return "{}x{}".format(*pixels(self.aspect_ratio, self.resolution))


def resolve_shape(request: VideoRequest, model: Model, problems: list[Problem]) -> Shape:
    """``aspect_ratio`` and ``resolution`` from ``size`` (``W:H`` or ``WxH``),
    ``metadata.resolution`` and, without a size, the first frame's own proportions."""
    rules = rules_for(model)
    wanted = request.metadata.get("resolution")
    if wanted is not None and wanted not in rules.resolutions:
        problems.append(
            Problem("metadata.resolution", f"{model.name} makes {', '.join(rules.resolutions)}, not {wanted!r}")
        )
        wanted = None
    size = request.size
    if size is None:
        ratio = DEFAULT_ASPECT_RATIO
        first = request.images[0] if request.images else None
        if first is not None and first.width and first.height:
            # An image's own proportions, so xAI does not crop or pad it into 16:9.
            ratio = Size(first.width, first.height).nearest_ratio(ASPECT_RATIOS)
        return Shape(ratio, wanted or DEFAULT_RESOLUTION)
    if size.width is None:
        ratio = _reduced(size.ratio_w, size.ratio_h)
        if ratio not in ASPECT_RATIOS:
            problems.append(Problem("size", f"xAI makes the aspect ratios {', '.join(ASPECT_RATIOS)}, not {ratio}"))
            ratio = DEFAULT_ASPECT_RATIO
        return Shape(ratio, wanted or DEFAULT_RESOLUTION)
    assert size.height is not None
    for ratio in ASPECT_RATIOS:
        for resolution in SHORT_SIDE:
            if pixels(ratio, resolution) == (size.width, size.height):
                if resolution not in rules.resolutions:
                    problems.append(
                        Problem(
                            "size",
                            f"{size.text} is {resolution}; {model.name} makes {', '.join(rules.resolutions)}",
                        )
                    )
                    return Shape(ratio, DEFAULT_RESOLUTION)
                if wanted is not None and wanted != resolution:
                    problems.append(
                        Problem("metadata.resolution", f"{wanted} contradicts size {size.text} ({resolution})")
                    )
                return Shape(ratio, resolution)
    examples = ", ".join("{}x{}".format(*pixels(r, "720p")) for r in ASPECT_RATIOS)
    problems.append(
        Problem(
            "size",
            f"xAI cannot make {size.text}; give a ratio ({', '.join(ASPECT_RATIOS)}) or one of its sizes "
            f"(at 720p: {examples})",
        )
    )
    return Shape(DEFAULT_ASPECT_RATIO, wanted or DEFAULT_RESOLUTION)


def _keyframe_problems(value: Any, problems: list[Problem]) -> None:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_KEYFRAMES:
        problems.append(Problem("metadata.keyframes", f"must be a list of 1 to {MAX_KEYFRAMES} keyframes"))
        return
    for i, frame in enumerate(value):
        path = f"metadata.keyframes[{i}]"
        image = frame.get("image") if isinstance(frame, dict) else None
        url = image.get("url") if isinstance(image, dict) else None
        at = frame.get("timestamp_s") if isinstance(frame, dict) else None
        if not isinstance(url, str) or not url.startswith(("https://", "http://", "data:image/")):
            problems.append(Problem(f"{path}.image.url", "must be an http(s) or data:image URL"))
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not (math.isfinite(at) and at >= 0):
            problems.append(Problem(f"{path}.timestamp_s", "must be a number of seconds >= 0"))
        if isinstance(frame, dict) and (extra := set(frame) - {"image", "timestamp_s"}):
            problems.append(
                Problem(path, f"unknown keys {sorted(extra)}; a keyframe is {{image: {{url}}, timestamp_s}}")
            )


def metadata_problems(request: VideoRequest, model: Model) -> list[Problem]:
    """Typed checks of the metadata keys xAI takes; reserved and unknown keys refused."""
    problems: list[Problem] = []
    for key, value in request.metadata.items():
        param = f"metadata.{key}"
        if key in RESERVED_KEYS:
            problems.append(Problem(param, f"cannot be set through metadata: {RESERVED_KEYS[key]}", "reserved_key"))
        elif key not in METADATA_KEYS:
            problems.append(Problem(param, f"xAI takes no such field; known keys: {', '.join(METADATA_KEYS)}"))
        elif key == "generate_audio" and not isinstance(value, bool):
            problems.append(Problem(param, "must be true or false"))
        elif key == "user" and not (isinstance(value, str) and 0 < len(value) <= 256):
            problems.append(Problem(param, "must be a string of 1 to 256 characters"))
        elif key == "resolution" and value not in SHORT_SIDE:
            problems.append(Problem(param, f"must be one of {', '.join(SHORT_SIDE)}"))
        elif key == "image_mode" and value not in IMAGE_MODES:
            problems.append(Problem(param, f"must be one of {', '.join(IMAGE_MODES)}"))
        elif key == "keyframes":
            if not rules_for(model).frames:
                problems.append(Problem(param, f"{model.name} takes no keyframes (the 1.5 models do)"))
            else:
                _keyframe_problems(value, problems)
    return problems


def image_mode(request: VideoRequest) -> str:
    """How the request's images are used: one image is the first frame, several are
    reference images, unless ``metadata.image_mode`` says otherwise."""
    mode = request.metadata.get("image_mode")
    if isinstance(mode, str) and mode in IMAGE_MODES:
        return mode
    return "reference" if len(request.images) > 1 else "first_frame"


def _image_problems(request: VideoRequest, model: Model, shape: Shape, problems: list[Problem]) -> None:
    images = request.images
    for image in images:
        if image.data is not None and image.mime_type not in IMAGE_TYPES:
            problems.append(Problem(image.param, f"must be PNG, JPEG or WebP, not {image.mime_type}"))
    if not images:
        if request.metadata.get("image_mode") is not None:
            problems.append(Problem("metadata.image_mode", "needs images"))
        return
    mode = image_mode(request)
    if mode == "first_frame" and len(images) > 1:
        problems.append(
            Problem(
                images[1].param,
                "one image is the first frame; send two with metadata.image_mode = first_last (1.5 models) "
                f"or up to {MAX_REFERENCE_IMAGES} with image_mode = reference",
            )
        )
    elif mode == "first_last":
        if not rules_for(model).frames:
            problems.append(Problem(images[-1].param, f"{model.name} takes no last frame (the 1.5 models do)"))
        elif len(images) != 2:
            problems.append(Problem("images", "image_mode first_last takes exactly two images: first and last frame"))
    elif mode == "reference":
        if len(images) > MAX_REFERENCE_IMAGES:
            problems.append(
                Problem(images[MAX_REFERENCE_IMAGES].param, f"at most {MAX_REFERENCE_IMAGES} reference images")
            )
        if SHORT_SIDE[shape.resolution] > 720:
            where = "metadata.resolution" if "resolution" in request.metadata else "size"
            problems.append(Problem(where, "reference-to-video makes at most 720p"))
        if "keyframes" in request.metadata:
            problems.append(Problem("metadata.keyframes", "keyframes do not go with reference images"))


def validate(request: VideoRequest, model: Model) -> list[Problem]:
    """Every reason xAI would refuse ``request``, found before any call."""
    problems: list[Problem] = []
    if len(request.prompt) > MAX_PROMPT:
        problems.append(Problem("prompt", f"xAI takes at most {MAX_PROMPT} characters"))
    problems.extend(metadata_problems(request, model))
    if request.operation in ("edit", "extend"):
        return problems  # no images, size or resolution: the source video sets them
    shape = resolve_shape(request, model, problems)
    _image_problems(request, model, shape, problems)
    audios = [r for r in request.references if r.kind == "audio"]
    if len(audios) > MAX_REFERENCE_AUDIOS:
        problems.append(Problem(audios[MAX_REFERENCE_AUDIOS].param, f"at most {MAX_REFERENCE_AUDIOS} audio references"))
    return problems


def _image_ref(image: Image, index: int) -> dict[str, Any]:
    # Inline bytes stay in the stored request (submit turns them into a data URI); an
    # http(s) URL goes to xAI as is: xAI fetches it, the gateway does not.
    if image.data is not None:
        return {"request_image": index}
    return {"url": image.url}


def map_request(request: VideoRequest, model: Model, vendor_model: str) -> VendorJob:
    """Build the stored job. Payload keys:

    ``operation`` (``generate``, ``edit``, ``extend``); ``body``: the JSON fields sent as
    they are; ``image``, ``last_frame``: ``{"request_image": i}`` or ``{"url"}``;
    ``reference_images``: a list of those; ``reference_audios``: ``{"request_reference":
    i}`` or ``{"url"}`` entries. Submit turns the references into ``{"url": ...}``.
    """
    problems = validate(request, model)
    if problems:
        raise RequestInvalid(problems)
    body: dict[str, Any] = {"model": vendor_model, "prompt": request.prompt}
    if request.operation in ("edit", "extend"):
        size = request.size.text if request.size is not None and request.size.width is not None else "1280x720"
        width, height = (int(v) for v in size.split("x"))
        seconds = request.seconds if request.seconds is not None else DEFAULT_SECONDS
        if request.operation == "extend":
            body["duration"] = seconds
        return VendorJob(
            payload={"operation": request.operation, "body": body},
            seconds=seconds,
            size=size,
            resolution=f"{min(width, height)}p",
        )
    shape = resolve_shape(request, model, [])
    seconds = request.seconds if request.seconds is not None else DEFAULT_SECONDS
    body.update(duration=seconds, aspect_ratio=shape.aspect_ratio, resolution=shape.resolution)
    for key in ("generate_audio", "user", "keyframes"):
        if key in request.metadata:
            body[key] = request.metadata[key]
    payload: dict[str, Any] = {"operation": "generate", "body": body}
    refs = [_image_ref(image, i) for i, image in enumerate(request.images)]
    mode = image_mode(request)
    if refs and mode == "reference":
        payload["reference_images"] = refs
    elif refs:
        payload["image"] = refs[0]
        if mode == "first_last":
            payload["last_frame"] = refs[1]
    audios = [
        {"request_reference": i} if ref.data is not None else {"url": ref.url}
        for i, ref in enumerate(request.references)
        if ref.kind == "audio"
    ]
    if audios:
        payload["reference_audios"] = audios
    return VendorJob(payload=payload, seconds=seconds, size=shape.size, resolution=shape.resolution)


# -- status words -------------------------------------------------------------------------


def _text(value: Any, limit: int = 1000) -> str | None:
    return value[:limit] if isinstance(value, str) and value.strip() else None


def poll_result(http_status: int, body: Any, operation: str) -> PollResult:
    """What one ``GET /v1/videos/{request_id}`` answer means.

    HTTP 202 (sometimes with an empty body, unconfirmed) is pending; ``pending`` /
    ``done`` / ``failed`` / ``expired`` are xAI's words. ``done`` with
    ``respect_moderation: false`` was blocked (filter), and ``done`` without a video URL
    or with an ``error`` is a failure too. Anything else is unknown (the task stays alive).
    """
    data: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
    word = data.get("status")
    video = data.get("video") if isinstance(data.get("video"), Mapping) else None
    if word is None and video is not None and video.get("url"):
        word = "done"  # seen from xAI: a finished answer without `status` (vercel/ai reads it so)
    progress = data.get("progress")
    pct = None
    if isinstance(progress, (int, float)) and not isinstance(progress, bool) and math.isfinite(progress):
        pct = max(0, min(100, int(progress)))
    if word is None and http_status == 202:
        return PollResult(status="in_progress", progress=pct, vendor_status="HTTP 202")
    if not isinstance(word, str):
        return PollResult.unknown(f"HTTP {http_status} without status")
    word_l = word.lower()
    if word_l == "pending":
        return PollResult(status="in_progress", progress=pct, vendor_status=word)
    if word_l == "expired":
        return PollResult(
            status="failed",
            error=TaskError("expired", "xAI let the request expire before the video was made (status expired)"),
            vendor_status=word,
        )
    err = data.get("error") if isinstance(data.get("error"), Mapping) else None
    if word_l == "failed":
        code = _text(err.get("code"), 64) if err else None
        message = _text(err.get("message")) if err else None
        return PollResult(
            status="failed",
            error=TaskError(code or "vendor_failed", message or "xAI reported that the video failed"),
            vendor_status=word,
        )
    if word_l != "done":
        return PollResult.unknown(word[:64])
    if video is not None and video.get("respect_moderation") is False:
        return PollResult(
            status="failed",
            error=TaskError("content_filtered", "xAI blocked the generated video (moderation)"),
            vendor_status=word,
        )
    url = video.get("url") if video is not None else None
    if err:
        message = _text(err.get("message")) or "xAI finished the request with an error"
        return PollResult(status="failed", error=TaskError(_text(err.get("code"), 64) or "vendor_failed", message))
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        return PollResult(
            status="failed",
            error=TaskError("vendor_no_result", "xAI finished the request without a video URL"),
            vendor_status=word,
        )
    assert video is not None
    result: dict[str, Any] = {"url": url}
    usage: dict[str, Any] = {}
    duration = video.get("duration")
    if isinstance(duration, (int, float)) and not isinstance(duration, bool) and math.isfinite(duration):
        result["duration"] = duration
        # An extension's reported duration may be the stitched total (unconfirmed), while
        # the task is billed on the new segment: only plain generations and edits settle.
        if operation != "extend" and duration > 0:
            usage["seconds"] = max(1, round(duration))
    billed = data.get("usage")
    cost = billed.get("cost_in_usd_ticks") if isinstance(billed, Mapping) else None
    if isinstance(cost, (int, float)) and not isinstance(cost, bool):
        result["cost_in_usd_ticks"] = cost  # for operators; the tick size is unconfirmed
    return PollResult(status="completed", progress=100, result=result, vendor_status=word, usage=usage or None)


# -- errors -------------------------------------------------------------------------------

_PARAMS = {
    "prompt": "prompt",
    "duration": "seconds",
    "aspect_ratio": "size",
    "resolution": "size",
    "image": "image",
    "image.url": "image",
    "video": "video",
    "video.url": "video",
}


def error_fields(body: Any) -> tuple[str, str | None, str | None]:
    """``(message, code, param)`` of an xAI error answer.

    The reference gives ``error{code, message}``; xAI's other REST routes answer
    ``{"code": "...", "error": "message"}``, so both are read (the flat one unconfirmed
    for video)."""
    if isinstance(body, Mapping):
        err = body.get("error")
        if isinstance(err, Mapping):
            code = err.get("code")
            return (
                _text(err.get("message"), 500) or "no message",
                str(code)[:64] if isinstance(code, (str, int)) and not isinstance(code, bool) else None,
                err.get("param") if isinstance(err.get("param"), str) else None,
            )
        if isinstance(err, str):
            return err[:500] or "no message", _text(body.get("code"), 64), None
    if isinstance(body, str) and body.strip():
        return body.strip()[:500], None, None
    return "no message", None, None


def classify(status: int, body: Any, headers: Mapping[str, str], *, operation: str) -> VendorError:
    """The vidgate error for a non-2xx xAI answer to ``operation`` (``generate``,
    ``edit``, ``extend`` or ``poll``)."""
    message, code, param = error_fields(body)
    text = f"xAI HTTP {status}: {message}"
    kwargs: dict[str, Any] = {
        "vendor_code": code or status,
        "http_status": status,
        "request_id": headers.get("x-request-id"),
    }
    if status == 429:
        return VendorRateLimited(text, retry_after=retry_after(headers), **kwargs)
    if status in (401, 402, 403):
        # Bad key, no credits, team blocked: this account cannot serve.
        return ChannelUnusable(text, **kwargs)
    if status == 408 or status >= 500:
        # xAI's own error answer means no job was made; a proxy's 502/504 or a 408 may
        # have lost an accepted request.
        return VendorUnavailable(text, maybe_received=status in (408, 502, 504), **kwargs)
    if operation == "poll":
        if status in (404, 410):
            return TaskNotFound(text, **kwargs)
        return VendorUnavailable(text, maybe_received=True, **kwargs)
    lowered = message.lower()
    if status in (404, 410) and ("model" in lowered or (code or "").lower().startswith("model")):
        return ModelRetired(text, **kwargs)
    mapped = _PARAMS.get(param or "")
    if operation in ("edit", "extend") and (status in (404, 410) or mapped == "video"):
        mapped = "video"
    return VendorRejected(f"xAI: {message}", param=mapped, **kwargs)
