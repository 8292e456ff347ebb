"""Unified request -> Runway create body, the per-model rules checked first, and the
status and failure vocabularies.

Runway has one create route per mode (``/v1/text_to_video``, ``/v1/image_to_video``,
``/v1/video_to_video``), camelCase bodies and a pixel ``ratio`` string (``"1280:720"``)
whose allowed values depend on the model. What we bill is what we send: ``duration`` and
``ratio`` are resolved here and the :class:`~vidgate.VendorJob` reports them.

Sources: ``vendor-protocols-2026.md`` section 2.9 (rules for gen4.5 and Veo 3.1), and the
official SDK's ``types/*_create_params.py`` where the reference is silent (marked).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs

from vidgate import Channel, Model, Problem, RequestInvalid, Size, VendorJob, VideoRequest

#: The ``X-Runway-Version`` Runway requires on every call (the SDK's default).
API_VERSION = "2024-11-06"
MAX_PROMPT_UNITS = 1000  # UTF-16 code units, as Runway counts them
MAX_DATA_URI = 5 * 1024 * 1024  # data URIs (images, videos) up to 5 MB

TEXT_TO_VIDEO = "text_to_video"
IMAGE_TO_VIDEO = "image_to_video"
VIDEO_TO_VIDEO = "video_to_video"
ROUTES = (TEXT_TO_VIDEO, IMAGE_TO_VIDEO, VIDEO_TO_VIDEO)

#: The Runway model that performs every ``edit`` (channel option ``edit_model`` overrides).
EDIT_MODEL = "aleph2"

_GEN4_RATIOS = ("1280:720", "720:1280", "1104:832", "960:960", "832:1104", "1584:672")
_VEO_RATIOS = ("1280:720", "720:1280", "1080:1920", "1920:1080")


@attrs.frozen
class Rules:
    """What one Runway model accepts. ``ratios`` per route; ``last_frame``: a second
    image may be the last frame (``promptImage`` position ``last``)."""

    routes: tuple[str, ...]
    seconds: tuple[int, ...]
    default_seconds: int | None
    ratios: dict[str, tuple[str, ...]]
    last_frame: bool = False
    prompt_required: bool = False


RULES: dict[str, Rules] = {
    # The reference gives no duration rule for gen4_turbo; 5 and 10 are the values Runway
    # has documented since launch (the SDK types say only "int"). Image-to-video only.
    "gen4_turbo": Rules((IMAGE_TO_VIDEO,), (5, 10), 5, {IMAGE_TO_VIDEO: _GEN4_RATIOS}),
    # Reference: duration 2-10 and six ratios. The SDK (5.24) allows only the two 720p
    # ratios on text_to_video; we keep that stricter rule there.
    "gen4.5": Rules(
        (TEXT_TO_VIDEO, IMAGE_TO_VIDEO),
        tuple(range(2, 11)),
        5,
        {TEXT_TO_VIDEO: ("1280:720", "720:1280"), IMAGE_TO_VIDEO: _GEN4_RATIOS},
        prompt_required=True,
    ),
    "veo3.1": Rules(
        (TEXT_TO_VIDEO, IMAGE_TO_VIDEO),
        (4, 6, 8),
        8,
        {TEXT_TO_VIDEO: _VEO_RATIOS, IMAGE_TO_VIDEO: _VEO_RATIOS},
        last_frame=True,
    ),
    "veo3.1_fast": Rules(
        (TEXT_TO_VIDEO, IMAGE_TO_VIDEO),
        (4, 6, 8),
        8,
        {TEXT_TO_VIDEO: _VEO_RATIOS, IMAGE_TO_VIDEO: _VEO_RATIOS},
        last_frame=True,
    ),
    # Video to video: the output is as long as the input video; ``ratio`` is free-form
    # in the SDK types, so the source's own pixel ratio is sent.
    "aleph2": Rules((VIDEO_TO_VIDEO,), (), None, {}),
}

_EDIT = frozenset({"edit"})

#: Public models (public name = Runway's model name). Every video model can be edited:
#: the edit is made by Aleph (``aleph2``) from the finished video.
MODELS = (
    Model(
        "gen4.5",
        seconds=RULES["gen4.5"].seconds,
        default_seconds=5,
        operations=_EDIT,
        description="Runway Gen-4.5: text or first frame to video, 2-10 s",
    ),
    Model(
        "gen4_turbo",
        seconds=RULES["gen4_turbo"].seconds,
        default_seconds=5,
        text_to_video=False,
        operations=_EDIT,
        description="Runway Gen-4 Turbo: image to video, 5 or 10 s",
    ),
    Model(
        "veo3.1",
        seconds=(4, 6, 8),
        default_seconds=8,
        operations=_EDIT,
        description="Google Veo 3.1 through Runway: 4/6/8 s, first and last frame",
    ),
    Model(
        "veo3.1_fast",
        seconds=(4, 6, 8),
        default_seconds=8,
        operations=_EDIT,
        description="Google Veo 3.1 Fast through Runway: 4/6/8 s, first and last frame",
    ),
    Model(
        "aleph2",
        image_to_video=False,
        reference_videos=True,
        operations=_EDIT,
        description="Runway Aleph 2: video to video (an input_reference video, or an edit of a finished task)",
    ),
)

#: Runway task ``status`` -> vidgate status (THROTTLED: queued behind the account's
#: concurrency limit).
STATUS = {
    "PENDING": "queued",
    "THROTTLED": "queued",
    "RUNNING": "in_progress",
    "SUCCEEDED": "completed",
    "FAILED": "failed",
    "CANCELLED": "cancelled",
}
UNFINISHED = frozenset({"PENDING", "THROTTLED", "RUNNING"})


def failure_code(runway_code: str | None) -> str:
    """The public ``error.code`` for a Runway ``failureCode``.

    ``SAFETY.INPUT.*``/``SAFETY.OUTPUT.*`` (and the pre-processing safety checks) are
    content filters; ``ASSET.INVALID`` is an input Runway could not use (unconfirmed:
    not in the reference); everything else (``INTERNAL.BAD_OUTPUT.*``, ``INTERNAL``) is
    a vendor failure."""
    code = (runway_code or "").upper()
    if code.startswith("SAFETY.") or ".SAFETY." in code:
        return "content_filtered"
    if code.startswith("ASSET."):
        return "invalid_input"
    return "vendor_failed"


# -- metadata -------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_METADATA_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (lambda v: _is_int(v) and 0 <= v <= 4294967295, "must be an integer from 0 to 4294967295"),
    "contentModeration": (
        lambda v: (
            isinstance(v, dict)
            and set(v) <= {"publicFigureThreshold"}
            and v.get("publicFigureThreshold", "auto") in ("auto", "low")
        ),
        'must be {"publicFigureThreshold": "auto" | "low"}',
    ),
    # A ProRes file or a zip of PNG frames is not a video the gateway can store and serve,
    # and every other format carries a per-second surcharge the price would not show.
    "outputFormat": (lambda v: v == "mp4", 'only "mp4" is supported through the gateway'),
    "audio": (lambda v: isinstance(v, bool), "must be true or false"),
    "negativePrompt": (lambda v: isinstance(v, str) and len(v) <= 1000, "must be a string of at most 1000 characters"),
}
_VEO_ONLY = frozenset({"audio", "negativePrompt"})

_REFUSED = {
    "model": "cannot change the billed model; choose the model with the top-level model field",
    "duration": "use the top-level seconds field; it decides what is billed",
    "ratio": "use the top-level size field (e.g. 1280x720 or 16:9)",
    "promptText": "use the top-level prompt field",
    "promptImage": "use the top-level image/images fields",
    "videoUri": "use input_reference (a video URL), or POST /v1/videos/edits for a finished task",
    "proresProfile": "only mp4 output is supported through the gateway",
}


def prompt_units(text: str) -> int:
    """Length in UTF-16 code units (Runway's measure)."""
    return len(text.encode("utf-16-le")) // 2


def data_uri_length(n: int, mime: str | None) -> int:
    return len(f"data:{mime or 'application/octet-stream'};base64,") + 4 * math.ceil(n / 3)


def rules_for(model: Model, channel: Channel) -> tuple[str, Rules]:
    """The Runway model name this channel sends, and its rules (a ``model_map`` target
    Runway added after this plugin keeps the public model's rules)."""
    vendor_model = channel.vendor_model(model)
    return vendor_model, RULES.get(vendor_model) or RULES[model.upstream]


def resolve_ratio(size: Size | None, ratios: tuple[str, ...]) -> str | None:
    """The Runway ``ratio`` for the requested size, or None when none matches.

    ``WxH`` must be one of the model's pixel ratios; a bare ``W:H`` picks the first
    (smallest) pixel ratio of that shape. No size: the model's first ratio (landscape)."""
    if size is None:
        return ratios[0]
    for ratio in ratios:
        w, h = (int(x) for x in ratio.split(":"))
        if size.width is not None:
            if (size.width, size.height) == (w, h):
                return ratio
        else:
            g = math.gcd(w, h)
            if (size.ratio_w, size.ratio_h) == (w // g, h // g):
                return ratio
    return None


def _image_problems(request: VideoRequest, rules: Rules, name: str) -> list[Problem]:
    problems: list[Problem] = []
    limit = 2 if rules.last_frame else 1
    if len(request.images) > limit:
        what = "a first and a last frame" if rules.last_frame else "one image (the first frame)"
        problems.append(Problem(request.images[limit].param, f"{name} takes {what}"))
    for image in request.images[:limit]:
        if image.url is not None and not image.url.lower().startswith("https://"):
            problems.append(Problem(image.param, "Runway fetches image URLs over HTTPS only"))
        if image.data is not None and data_uri_length(len(image.data), image.mime_type) > MAX_DATA_URI:
            problems.append(Problem(image.param, "Runway takes inline images up to 5 MB (as a data URI)", "too_large"))
        if image.data is not None and image.mime_type not in ("image/png", "image/jpeg", "image/webp"):
            problems.append(Problem(image.param, f"Runway takes PNG, JPEG or WebP images, not {image.mime_type}"))
    return problems


def validate(request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
    """Everything Runway would refuse, as problems naming the client's field."""
    name, rules = rules_for(model, channel)
    problems: list[Problem] = []
    if prompt_units(request.prompt) > MAX_PROMPT_UNITS:
        problems.append(Problem("prompt", f"Runway takes at most {MAX_PROMPT_UNITS} characters", "too_long"))
    for key, value in request.metadata.items():
        if key in _REFUSED:
            problems.append(Problem(f"metadata.{key}", _REFUSED[key]))
        elif key in _VEO_ONLY and not rules.last_frame:
            problems.append(Problem(f"metadata.{key}", f"{name} does not take {key}"))
        elif key in _METADATA_CHECKS:
            check, message = _METADATA_CHECKS[key]
            if not check(value):
                problems.append(Problem(f"metadata.{key}", message))
    if request.operation == "edit":
        return problems  # the source's length and shape; map_request sends them
    if VIDEO_TO_VIDEO in rules.routes:
        videos = [r for r in request.references if r.kind == "video"]
        if not videos:
            problems.append(
                Problem(
                    "input_reference",
                    f"{name} edits a video: send one as input_reference (an HTTPS URL), "
                    "or POST /v1/videos/edits with a finished task",
                    "missing_required_parameter",
                )
            )
        elif videos[0].url is not None and not videos[0].url.lower().startswith("https://"):
            problems.append(Problem(videos[0].param, "Runway fetches video URLs over HTTPS only"))
        elif videos[0].data is not None and data_uri_length(len(videos[0].data), videos[0].mime_type) > MAX_DATA_URI:
            problems.append(Problem(videos[0].param, "Runway takes inline videos up to 5 MB; send a URL", "too_large"))
        if len(videos) > 1:
            problems.append(Problem(videos[1].param, f"{name} edits one video"))
        if request.seconds is None:
            # Aleph makes a video as long as its input, which the gateway cannot measure
            # before the call: the client states it, and is billed for it.
            problems.append(
                Problem(
                    "seconds",
                    "state the input video's length in seconds (what is billed)",
                    "missing_required_parameter",
                )
            )
        if request.size is not None and request.size.width is None:
            problems.append(Problem("size", f"{name} takes a pixel size (e.g. 1280x720) or none (the input's)"))
        return problems
    route = IMAGE_TO_VIDEO if request.images else TEXT_TO_VIDEO
    if route not in rules.routes:
        if route == TEXT_TO_VIDEO:
            problems.append(Problem("image", f"{name} needs a first-frame image", "missing_required_parameter"))
        else:
            problems.append(Problem(request.images[0].param, f"{name} cannot start from an image"))
        return problems
    if rules.seconds and request.seconds is not None and request.seconds not in rules.seconds:
        problems.append(Problem("seconds", f"{name} makes {_choices(rules.seconds)} second videos"))
    ratios = rules.ratios[route]
    if resolve_ratio(request.size, ratios) is None:
        assert request.size is not None
        shown = ", ".join(r.replace(":", "x") for r in ratios)
        where = "from text" if route == TEXT_TO_VIDEO else "from an image"
        problems.append(Problem("size", f"{name} {where} makes {shown}, not {request.size.text}"))
    if rules.prompt_required and not request.prompt.strip():
        problems.append(Problem("prompt", f"{name} needs a prompt", "missing_required_parameter"))
    if route == TEXT_TO_VIDEO and not request.prompt.strip():
        problems.append(Problem("prompt", "text to video needs a prompt", "missing_required_parameter"))
    problems.extend(_image_problems(request, rules, name))
    return problems


def _choices(values: tuple[int, ...]) -> str:
    if len(values) > 2 and list(values) == list(range(values[0], values[-1] + 1)):
        return f"{values[0]} to {values[-1]}"
    return ", ".join(map(str, values[:-1])) + f" or {values[-1]}"


def _size_of(ratio: str) -> tuple[str, str]:
    w, h = (int(x) for x in ratio.split(":"))
    return f"{w}x{h}", f"{min(w, h)}p"


def map_request(request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
    """Build the job: ``payload`` = ``{"route": ..., "body": {...}}``.

    Images are named by index (``{"request_image": i}``) and become data URIs in
    ``submit``; an edit's ``videoUri`` is filled in by ``derive`` from the source."""
    problems = validate(request, model, channel)
    if problems:
        raise RequestInvalid(problems)
    vendor_model, rules = rules_for(model, channel)
    body: dict[str, Any] = {k: v for k, v in request.metadata.items() if k not in _REFUSED}
    if request.operation == "edit":
        edit_model = str(channel.options.get("edit_model") or EDIT_MODEL)
        body["model"] = edit_model
        if request.prompt:
            body["promptText"] = request.prompt
        source_size = request.size
        if source_size is not None and source_size.width is not None:
            body["ratio"] = f"{source_size.width}:{source_size.height}"
        seconds = request.seconds or 0
        if not seconds:
            raise RequestInvalid([Problem("video", "the source task has no known length")])
        return VendorJob(
            payload={"route": VIDEO_TO_VIDEO, "body": body},
            seconds=seconds,
            size=source_size.text if source_size is not None else "",
            resolution=_size_of(body["ratio"])[1] if "ratio" in body else None,
        )
    body["model"] = vendor_model
    if VIDEO_TO_VIDEO in rules.routes:
        video = next(r for r in request.references if r.kind == "video")
        body["videoUri"] = video.url if video.url is not None else {"request_video": request.references.index(video)}
        if request.prompt:
            body["promptText"] = request.prompt
        if request.size is not None and request.size.width is not None:
            body["ratio"] = f"{request.size.width}:{request.size.height}"
        assert request.seconds is not None
        size_text = request.size.text if request.size is not None else ""
        return VendorJob(payload={"route": VIDEO_TO_VIDEO, "body": body}, seconds=request.seconds, size=size_text)
    route = IMAGE_TO_VIDEO if request.images else TEXT_TO_VIDEO
    seconds = request.seconds if request.seconds is not None else (rules.default_seconds or 5)
    ratio = resolve_ratio(request.size, rules.ratios[route])
    assert ratio is not None
    body["duration"] = seconds
    body["ratio"] = ratio
    if request.prompt:
        body["promptText"] = request.prompt
    if request.images:
        refs = [{"request_image": i} if img.url is None else img.url for i, img in enumerate(request.images)]
        if len(refs) == 1:
            body["promptImage"] = refs[0]
        else:
            body["promptImage"] = [{"uri": refs[0], "position": "first"}, {"uri": refs[1], "position": "last"}]
    pixels, resolution = _size_of(ratio)
    return VendorJob(payload={"route": route, "body": body}, seconds=seconds, size=pixels, resolution=resolution)


def resolve_media(body: dict[str, Any], request: VideoRequest | None) -> dict[str, Any]:
    """``body`` with ``{"request_image": i}``/``{"request_video": i}`` replaced by data
    URIs of the request's inline media (blocking: call in a thread)."""

    def resolve(value: Any) -> Any:
        if isinstance(value, dict) and "request_image" in value:
            if request is None or not 0 <= value["request_image"] < len(request.images):
                raise ValueError(f"the job refers to image {value['request_image']} the request does not have")
            return request.images[value["request_image"]].data_url()
        if isinstance(value, dict) and "request_video" in value:
            if request is None or not 0 <= value["request_video"] < len(request.references):
                raise ValueError(f"the job refers to video {value['request_video']} the request does not have")
            ref = request.references[value["request_video"]]
            assert ref.data is not None
            import base64

            return f"data:{ref.mime_type or 'video/mp4'};base64,{base64.b64encode(ref.data).decode()}"
        if isinstance(value, dict) and "uri" in value:
            return {**value, "uri": resolve(value["uri"])}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return value

    out = dict(body)
    for key in ("promptImage", "videoUri"):
        if key in out:
            out[key] = resolve(out[key])
    return out
