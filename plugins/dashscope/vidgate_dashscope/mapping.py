"""Unified request -> DashScope video-synthesis body, the per-model rules, status words
and error classification.

Every DashScope video model is created on one endpoint
(``POST /api/v1/services/aigc/video-generation/video-synthesis``) with
``{"model", "input": {...}, "parameters": {...}}``; the models differ in which input
fields they take and how the output shape is named:

* ``wan2.6-t2v`` names it with ``parameters.size`` = ``"W*H"`` (an asterisk, never ``x``);
* ``wan2.6-i2v`` takes the first frame as ``input.img_url`` and a tier
  ``parameters.resolution`` (the shape follows the image);
* ``wan3.0-video`` and ``happyhorse-1.1-*`` take ``input.media[{type, url}]`` and
  ``parameters.resolution`` + ``parameters.ratio``.

What we bill is what we send: the duration and output size are resolved here, with the
model's defaults, and the :class:`~vidgate.VendorJob` reports them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from vidgate import Channel, Model, Problem, Size, VendorJob, VideoRequest

#: Output pixels by tier and ratio (Model Studio's ``size`` table for the 720P and 1080P
#: tiers; the resolution-named models make the same shapes).
PIXELS: dict[str, dict[str, tuple[int, int]]] = {
    "720P": {"16:9": (1280, 720), "9:16": (720, 1280), "1:1": (960, 960), "4:3": (1088, 832), "3:4": (832, 1088)},
    "1080P": {
        "16:9": (1920, 1080),
        "9:16": (1080, 1920),
        "1:1": (1440, 1440),
        "4:3": (1632, 1248),
        "3:4": (1248, 1632),
    },
}
RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4")
MAX_SEED = 2147483647
MAX_NEGATIVE_PROMPT = 500
MAX_IMAGE_BYTES = 10 * 1024 * 1024  # Model Studio: first-frame images up to 10 MB
MAX_REFERENCE_IMAGES = 10  # wan3.0: up to 10 reference_image media
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/bmp")

#: How a model takes its inputs.
SIZE_STRING, IMG_URL, MEDIA = "size", "img_url", "media"


@attrs.frozen
class Rules:
    """What one DashScope model accepts. ``shape`` is how the output is named
    (``size`` = ``"W*H"``; else ``resolution`` + maybe ``ratio``); ``inputs`` how images go up."""

    inputs: str
    seconds: tuple[int, ...]
    default_seconds: int = 5
    tiers: tuple[str, ...] = ("720P", "1080P")
    default_tier: str = "1080P"
    ratios: tuple[str, ...] = RATIOS  # () = the output follows the first frame
    last_frame: bool = False
    references: bool = False
    max_prompt: int = 1500
    #: metadata keys this model documents (see :data:`METADATA_CHECKS`)
    metadata: frozenset[str] = frozenset()
    text_to_video: bool = True
    image_to_video: bool = True
    description: str = ""

    def model(self, name: str) -> Model:
        """The public model: its durations and modes; references (videos, audio) where taken."""
        return Model(
            name,
            seconds=self.seconds,
            default_seconds=self.default_seconds,
            text_to_video=self.text_to_video,
            image_to_video=self.image_to_video,
            reference_videos=self.references,
            reference_audio=self.references,
            description=self.description,
        )


_WAN26 = frozenset({"negative_prompt", "audio", "audio_url", "shot_type", "prompt_extend", "watermark", "seed"})

_HAPPYHORSE = frozenset({"watermark", "seed"})

RULES: dict[str, Rules] = {
    # wan2.6: integer durations 2-15 (Model Studio's text-to-video guide, Feb 2026; older
    # pages say 5/10/15: unconfirmed which applies per region).
    "wan2.6-t2v": Rules(
        SIZE_STRING,
        tuple(range(2, 16)),
        metadata=_WAN26,
        image_to_video=False,
        description="Wan 2.6 text-to-video, 720P/1080P, 2-15 s, audio, multi-shot",
    ),
    "wan2.6-i2v": Rules(
        IMG_URL,
        tuple(range(2, 16)),
        ratios=(),
        metadata=_WAN26,
        text_to_video=False,
        description="Wan 2.6 image-to-video (first frame), 720P/1080P, 2-15 s, audio",
    ),
    # wan3.0-video: media[] with first/last frame or references (mutually exclusive);
    # durations as wan2.6 (unconfirmed: the reference gives only the illustrative body).
    "wan3.0-video": Rules(
        MEDIA,
        tuple(range(2, 16)),
        last_frame=True,
        references=True,
        max_prompt=20000,
        metadata=frozenset({"negative_prompt", "audio", "prompt_extend", "watermark", "seed"}),
        description="Wan 3.0: text, first/last frame or reference images/videos/audio",
    ),
    # HappyHorse: 3-15 s, 720P/1080P (default 1080P), ratio only without a first frame,
    # watermark on by default; no negative prompt, rewriting or audio switch documented.
    "happyhorse-1.1-t2v": Rules(
        MEDIA,
        tuple(range(3, 16)),
        max_prompt=5000,
        metadata=_HAPPYHORSE,
        image_to_video=False,
        description="HappyHorse 1.1 text-to-video, 720P/1080P, 3-15 s",
    ),
    "happyhorse-1.1-i2v": Rules(
        MEDIA,
        tuple(range(3, 16)),
        ratios=(),
        max_prompt=5000,
        metadata=_HAPPYHORSE,
        text_to_video=False,
        description="HappyHorse 1.1 image-to-video (first frame), 720P/1080P, 3-15 s",
    ),
}

MODELS = tuple(rules.model(name) for name, rules in RULES.items())


def rules_for(model: Model) -> Rules:
    return RULES[model.name]


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_seed(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_SEED


def _is_url(v: Any) -> bool:
    return isinstance(v, str) and v.startswith(("http://", "https://", "oss://"))


#: Typed metadata keys: (check, message). Unknown keys pass through into ``parameters``.
METADATA_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "negative_prompt": (
        lambda v: isinstance(v, str) and len(v) <= MAX_NEGATIVE_PROMPT,
        f"must be a string of at most {MAX_NEGATIVE_PROMPT} characters",
    ),
    "audio": (_is_bool, "must be true or false"),
    "audio_url": (_is_url, "must be an http(s) URL of a wav/mp3 file"),
    "shot_type": (lambda v: v in ("single", "multi"), 'must be "single" or "multi"'),
    "prompt_extend": (_is_bool, "must be true or false"),
    "watermark": (_is_bool, "must be true or false"),
    "seed": (_is_seed, f"must be an integer between 0 and {MAX_SEED}"),
    "resolution": (lambda v: isinstance(v, str) and v.upper() in PIXELS, 'must be "720P" or "1080P"'),
}
#: Keys that go into ``input`` rather than ``parameters``.
INPUT_KEYS = frozenset({"negative_prompt", "audio_url"})

# Keys the gateway owns; a client may not set them through metadata.
REFUSED = {
    "model": "cannot change the billed model; choose the model with the top-level model field",
    "duration": "use the top-level seconds field; it decides what is billed",
    "size": "use the top-level size field (e.g. 1280x720 or 16:9)",
    "ratio": "use the top-level size field (e.g. 16:9)",
    "prompt": "use the top-level prompt field",
    "input": "set inputs with the top-level fields (prompt, image, images, input_reference)",
    "parameters": "set parameters as individual metadata keys",
    "img_url": "use the top-level image field",
    "first_frame_url": "use the top-level image field",
    "last_frame_url": "use the second entry of images",
    "media": "use image, images and input_reference",
    "reference_urls": "use input_reference",
}


def _seconds(request: VideoRequest, rules: Rules) -> int:
    return request.seconds if request.seconds is not None else rules.default_seconds


def _ratio_of(width: int, height: int) -> str:
    return Size(width, height, width, height).nearest_ratio(RATIOS)


def _shape(request: VideoRequest, model: Model, rules: Rules, problems: list[Problem]) -> tuple[str, str]:
    """The (tier, ratio) the request asks for; problems are added for what cannot be made."""
    meta_tier = request.metadata.get("resolution")
    tier = meta_tier.upper() if isinstance(meta_tier, str) and meta_tier.upper() in PIXELS else None
    if tier is not None and tier not in rules.tiers:
        problems.append(Problem("metadata.resolution", f"{model.name} makes {' or '.join(rules.tiers)}"))
    ratio = None
    size = request.size
    if size is not None:
        if size.width is not None and size.height is not None:
            found = [(t, r) for t in rules.tiers for r, wh in PIXELS[t].items() if wh == (size.width, size.height)]
            if not found:
                shown = ", ".join(f"{w}x{h}" for t in rules.tiers for (w, h) in PIXELS[t].values())
                problems.append(Problem("size", f"{model.name} makes {shown}, not {size.width}x{size.height}"))
            else:
                size_tier, ratio = found[0]
                if tier is not None and tier != size_tier:
                    problems.append(Problem("metadata.resolution", f"conflicts with size {size.text}"))
                tier = size_tier
        else:
            ratio = f"{size.ratio_w}:{size.ratio_h}"
            if not rules.ratios:
                problems.append(
                    Problem("size", f"{model.name} follows the first frame's shape; give a resolution such as 1280x720")
                )
            elif ratio not in rules.ratios:
                problems.append(
                    Problem("size", f"{model.name} makes the ratios {', '.join(rules.ratios)}, not {ratio}")
                )
    return tier or rules.default_tier, ratio or "16:9"


def validate(request: VideoRequest, model: Model) -> list[Problem]:
    """Everything DashScope would refuse for ``model``, as problems naming the client's field."""
    rules = rules_for(model)
    problems: list[Problem] = []
    if len(request.prompt) > rules.max_prompt:
        problems.append(Problem("prompt", f"{model.name} accepts at most {rules.max_prompt} characters", "too_long"))
    seconds = _seconds(request, rules)
    if seconds not in rules.seconds:
        problems.append(
            Problem("seconds", f"{model.name} makes {rules.seconds[0]} to {rules.seconds[-1]} seconds, not {seconds}")
        )
    _shape(request, model, rules, problems)
    for key, value in request.metadata.items():
        param = f"metadata.{key}"
        if key in REFUSED:
            problems.append(Problem(param, REFUSED[key]))
        elif key in METADATA_CHECKS:
            if key != "resolution" and key not in rules.metadata:
                problems.append(Problem(param, f"{model.name} has no {key} parameter"))
                continue
            check, message = METADATA_CHECKS[key]
            if not check(value):
                problems.append(Problem(param, message))
    if request.metadata.get("shot_type") == "multi" and request.metadata.get("prompt_extend") is False:
        problems.append(Problem("metadata.shot_type", "multi-shot needs prompt_extend (leave it on or set it true)"))
    if not request.prompt and model.text_to_video and not model.image_to_video:
        problems.append(Problem("prompt", f"{model.name} needs a prompt", "missing_required_parameter"))
    frames, ref_images = split_images(request, rules)
    max_images = 2 if rules.last_frame else 1
    if len(frames) > max_images:
        what = "a first and a last frame" if rules.last_frame else "one image (the first frame)"
        problems.append(Problem("images", f"{model.name} takes at most {what}"))
    refs = list(request.references)
    if refs and not rules.references:
        problems.append(Problem(refs[0].param, f"{model.name} takes no reference material"))
    if (refs or ref_images) and frames:
        # wan3.0: reference_* media and first/last frames are mutually exclusive.
        param = refs[0].param if refs else request.images[ref_images[0]].param
        problems.append(Problem(param, "reference material cannot be combined with a first/last frame"))
    for ref in refs:
        if ref.url is None:
            problems.append(Problem(ref.param, "DashScope takes reference videos and audio by public URL only"))
    if len([r for r in refs if r.kind == "video"]) > 5 or len([r for r in refs if r.kind == "audio"]) > 5:
        problems.append(Problem("input_reference", "at most 5 reference videos and 5 reference audio clips"))
    if len(ref_images) > MAX_REFERENCE_IMAGES:
        problems.append(Problem("input_reference", f"at most {MAX_REFERENCE_IMAGES} reference images"))
    for image in request.images:
        if image.data is None:
            continue
        if len(image.data) > MAX_IMAGE_BYTES:
            problems.append(Problem(image.param, "DashScope accepts images up to 10 MB", "too_large"))
        if image.mime_type not in IMAGE_TYPES:
            problems.append(Problem(image.param, f"DashScope accepts JPEG, PNG, BMP or WebP, not {image.mime_type}"))
    return problems


def split_images(request: VideoRequest, rules: Rules) -> tuple[list[int], list[int]]:
    """Indexes of the frame images and of the reference images. ``input_reference`` images
    are reference images on models that take references (wan3.0); elsewhere they are the
    first frame, as in OpenAI's convention."""
    frames: list[int] = []
    refs: list[int] = []
    for i, image in enumerate(request.images):
        (refs if rules.references and image.param.startswith("input_reference") else frames).append(i)
    return frames, refs


def _image_ref(request: VideoRequest, index: int) -> str | dict[str, int]:
    # A URL goes as is; bytes are named by index and become a data URL in submit (the
    # bytes are already stored with the request; the payload should not carry them twice).
    image = request.images[index]
    return image.url if image.url is not None else {"request_image": index}


def resolve_images(value: Any, request: VideoRequest | None) -> Any:
    """``value`` with every ``{"request_image": i}`` replaced by the data URL of image ``i``
    (DashScope takes ``data:{mime};base64,...`` wherever it takes an image URL)."""
    if isinstance(value, dict):
        if set(value) == {"request_image"}:
            i = value["request_image"]
            if request is None or not 0 <= i < len(request.images):
                raise ValueError(f"the job refers to image {i} the request does not have")
            return request.images[i].data_url()
        return {k: resolve_images(v, request) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_images(v, request) for v in value]
    return value


def map_request(request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
    """The job: ``payload`` = the whole create body, images by index."""
    rules = rules_for(model)
    problems: list[Problem] = []
    tier, ratio = _shape(request, model, rules, problems)
    seconds = _seconds(request, rules)
    inputs: dict[str, Any] = {}
    if request.prompt:
        inputs["prompt"] = request.prompt
    params: dict[str, Any] = {}
    for key, value in request.metadata.items():
        if key in REFUSED or key == "resolution":
            continue
        (inputs if key in INPUT_KEYS else params)[key] = value
    if rules.inputs == SIZE_STRING:
        w, h = PIXELS[tier][ratio]
        params["size"] = f"{w}*{h}"
    else:
        params["resolution"] = tier
        if rules.ratios and not split_images(request, rules)[0]:
            params["ratio"] = ratio
    params["duration"] = seconds
    frames, ref_images = split_images(request, rules)
    if frames:
        first = request.images[frames[0]]
        if first.width and first.height:
            # The output follows the first frame's shape (no ratio is sent with one).
            ratio = _ratio_of(first.width, first.height)
        if rules.inputs == IMG_URL:
            inputs["img_url"] = _image_ref(request, frames[0])
        else:
            media: list[dict[str, Any]] = [{"type": "first_frame", "url": _image_ref(request, frames[0])}]
            if len(frames) > 1:
                media.append({"type": "last_frame", "url": _image_ref(request, frames[1])})
            inputs["media"] = media
    elif ref_images or request.references:
        kinds = {"video": "reference_video", "audio": "reference_audio"}
        inputs["media"] = [{"type": "reference_image", "url": _image_ref(request, i)} for i in ref_images] + [
            {"type": kinds.get(r.kind, f"reference_{r.kind}"), "url": r.url} for r in request.references
        ]
    w, h = PIXELS[tier][ratio]
    body = {"model": channel.vendor_model(model), "input": inputs, "parameters": params}
    return VendorJob(payload={"body": body}, seconds=seconds, size=f"{w}x{h}", resolution=tier.lower())


# -- status words and errors ---------------------------------------------------------------

#: DashScope ``task_status`` -> vidgate status (UNKNOWN is handled apart: task lost).
STATUS = {
    "PENDING": "queued",
    "SUSPENDED": "queued",
    "RUNNING": "in_progress",
    "SUCCEEDED": "completed",
    "FAILED": "failed",
    "CANCELED": "cancelled",
}
#: Output moderation codes on a failed task (Model Studio error-code page; list unconfirmed).
FILTER_CODES = frozenset({"DataInspectionFailed", "DataInspection", "IPInfringementSuspect", "InappropriateContent"})
AUTH_CODES = frozenset(
    {
        "InvalidApiKey",
        "Arrearage",
        "AccessDenied",
        "AccessDenied.Unpurchased",
        "Model.AccessDenied",
        "AllocationQuota.FreeTierOnly",
        "Workspace.AccessDenied",
    }
)


def guess_param(message: str) -> str | None:
    """The client field a DashScope parameter complaint is about, when it names one."""
    text = message.lower()
    for word, param in (
        ("duration", "seconds"),
        ("resolution", "size"),
        ("ratio", "size"),
        ("size", "size"),
        ("img_url", "image"),
        ("first_frame", "image"),
        ("last_frame", "images[1]"),
        ("media", "image"),
        ("negative_prompt", "metadata.negative_prompt"),
        ("seed", "metadata.seed"),
        ("prompt", "prompt"),
    ):
        if word in text:
            return param
    return None


def usage_facts(usage: Mapping[str, Any] | None) -> dict[str, Any]:
    """Usage facts from DashScope's ``usage`` (``duration`` = billed seconds, ``SR`` the
    tier's height, ``video_count``)."""
    facts: dict[str, Any] = {}
    if not isinstance(usage, Mapping):
        return facts
    duration = usage.get("duration", usage.get("video_duration", usage.get("output_video_duration")))
    if isinstance(duration, (int, float)) and not isinstance(duration, bool):
        facts["seconds"] = duration
    sr = usage.get("SR")
    if isinstance(sr, (int, str)) and not isinstance(sr, bool) and str(sr).isdigit():
        facts["resolution"] = f"{sr}p"
    count = usage.get("video_count")
    if isinstance(count, int) and not isinstance(count, bool):
        facts["count"] = count
    return facts
