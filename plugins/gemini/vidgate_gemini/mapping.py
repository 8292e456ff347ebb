"""Unified request -> Interactions ``POST /v1beta/interactions`` body; models, rules,
status words (vendor-protocols-2026 §2.3).

The body::

    {"model": "gemini-omni-1.1-flash", "background": true, "store": true,
     "input": [{"type": "text", "text": ...}, {"type": "image", "data": <base64>, "mime_type": ...}],
     "response_format": {"type": "video", "aspect_ratio": "16:9", "resolution": "720p",
                         "duration": "8s", "delivery": "inline"},
     "generation_config": {"video_config": {"task": "image_to_video"}, "seed": 7},
     "previous_interaction_id": ...}   # an extension (added by ``derive``)

Images are not inlined here (mapping does no I/O): a request image is stored as
``{"$request_image": index}`` and a URL as ``{"$fetch": url}``; ``submit`` encodes or
fetches them. ``image``/``images[0]`` is the first frame (``image_to_video``); every
``input_reference`` image, or every image with ``metadata.image_role = "reference"``, is a
reference (``reference_to_video``).
"""

from __future__ import annotations

from typing import Any

from vidgate import Channel, Model, Problem, VendorJob, VideoRequest
from vidgate.request import Image

MODELS: tuple[Model, ...] = (
    Model(
        "gemini-omni-flash",
        vendor_model="gemini-omni-1.1-flash",
        aliases=("gemini-omni-1.1-flash",),
        description="Google Gemini Omni 1.1 Flash: 3-10 s, 360p-4K, text/image/reference to video, extend to 40 s",
        seconds=tuple(range(3, 11)),
        default_seconds=8,
        operations=frozenset({"extend"}),
    ),
)

ASPECT_RATIOS = ("16:9", "9:16")
RESOLUTIONS = ("360p", "720p", "1080p", "4k")
_PIXELS = {"360p": (640, 360), "720p": (1280, 720), "1080p": (1920, 1080), "4k": (3840, 2160)}
DELIVERIES = ("inline", "uri")
SERVICE_TIERS = ("flex", "standard", "priority", "deferred")
IMAGE_ROLES = ("frames", "reference")
#: Reference images one request may carry. Google documents 6 for 1.2; for 1.1 the limit
#: is unconfirmed, so the gateway keeps to 3 (what Veo 3.1 takes).
MAX_REFERENCES = 3
#: An extension chain's total length (1.1: "extensions to 40 s total").
MAX_TOTAL_SECONDS = 40
#: Video output tokens per second at 720p (10 s ≈ 57,920): the estimate before the
#: vendor reports its own count. Other resolutions' rates are unconfirmed.
TOKENS_PER_SECOND = 5792
UINT32_MAX = 2**32 - 1

#: The Interactions status words -> the gateway's, and failure codes for the failed ones.
STATUS = {"queued": "queued", "in_progress": "in_progress", "completed": "completed", "cancelled": "cancelled"}
FAILED = {
    "failed": "vendor_failed",
    "incomplete": "incomplete",  # the model stopped before a video was made
    "budget_exceeded": "budget_exceeded",  # the account's spend cap
}
# requires_action, requires_continuation and idle are not expected for video (§3.6):
# unknown words, the task stays alive.


def size_of(aspect: str, resolution: str) -> str:
    w, h = _PIXELS[resolution]
    return f"{w}x{h}" if aspect == "16:9" else f"{h}x{w}"


def _image_ref(image: Image, index: int) -> dict[str, Any]:
    if image.url is not None:
        return {"$fetch": image.url, "param": image.param}
    return {"$request_image": index, "mime_type": image.mime_type or "image/png"}


def _metadata(meta: dict[str, Any], problems: list[Problem]) -> dict[str, Any]:
    """Typed vendor keys; an unknown key is a 400 (the body is Google's, not free-form)."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        p = f"metadata.{key}"
        if key in ("model", "background", "store", "previous_interaction_id", "input"):
            problems.append(Problem(p, "cannot be set: the gateway sets it"))
        elif key == "seed":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= UINT32_MAX:
                problems.append(Problem(p, f"must be an integer between 0 and {UINT32_MAX}"))
            else:
                out[key] = value
        elif key == "resolution":
            if not isinstance(value, str) or value.lower() not in RESOLUTIONS:
                problems.append(Problem(p, f"must be one of {', '.join(RESOLUTIONS)}"))
            else:
                out[key] = value.lower()
        elif key == "aspect_ratio":
            if value not in ASPECT_RATIOS:
                problems.append(Problem(p, "must be 16:9 or 9:16"))
            else:
                out[key] = value
        elif key == "delivery":
            if value not in DELIVERIES:
                problems.append(Problem(p, "must be inline or uri"))
            else:
                out[key] = value
        elif key == "service_tier":
            if value not in SERVICE_TIERS:
                problems.append(Problem(p, f"must be one of {', '.join(SERVICE_TIERS)}"))
            else:
                out[key] = value
        elif key == "image_role":
            if value not in IMAGE_ROLES:
                problems.append(Problem(p, f"must be one of {', '.join(IMAGE_ROLES)}"))
            else:
                out[key] = value
        elif key == "system_instruction":
            if not isinstance(value, str):
                problems.append(Problem(p, "must be a string"))
            else:
                out[key] = value
        elif key == "labels":
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                problems.append(Problem(p, "must be an object of string values"))
            else:
                out[key] = value
        else:
            problems.append(Problem(p, "is not a Gemini Omni parameter this gateway knows"))
    return out


def plan(request: VideoRequest, model: Model, channel: Channel) -> tuple[list[Problem], VendorJob | None]:
    """Check ``request`` and build the job; returns (problems, job or None)."""
    problems: list[Problem] = []
    meta = _metadata(dict(request.metadata), problems)
    seconds = request.seconds if request.seconds is not None else (model.default_seconds or 8)
    if not 3 <= seconds <= 10:
        problems.append(Problem("seconds", f"{model.name} makes 3 to 10 seconds per call, not {seconds}"))

    aspect, resolution, res_param = "16:9", "720p", "size"
    if request.size is not None:
        aspect = request.size.nearest_ratio(ASPECT_RATIOS)
        if request.size.width is not None and request.size.height is not None:
            long_side = max(request.size.width, request.size.height)
            resolution = (
                "4k" if long_side >= 3840 else "1080p" if long_side >= 1920 else "720p" if long_side >= 1280 else "360p"
            )
    if "aspect_ratio" in meta:
        if request.size is not None and meta["aspect_ratio"] != aspect:
            problems.append(Problem("metadata.aspect_ratio", f"conflicts with size {request.size.text}"))
        aspect = meta["aspect_ratio"]
    if "resolution" in meta:
        res_param = "metadata.resolution"
        if request.size is not None and request.size.width is not None and meta["resolution"] != resolution:
            problems.append(Problem(res_param, f"conflicts with size {request.size.text}"))
        resolution = meta["resolution"]

    content: list[dict[str, Any]] = []
    if request.prompt:
        content.append({"type": "text", "text": request.prompt})
    frames = [(i, im) for i, im in enumerate(request.images) if not _is_reference(im, meta)]
    references = [(i, im) for i, im in enumerate(request.images) if _is_reference(im, meta)]
    task = "text_to_video"
    if len(frames) > 1:
        problems.append(Problem(frames[1][1].param, f"{model.name} takes one first-frame image (no last frame)"))
    if frames and references:
        problems.append(Problem(references[0][1].param, "reference images cannot be combined with a first frame"))
    if len(references) > MAX_REFERENCES:
        problems.append(Problem(references[MAX_REFERENCES][1].param, f"at most {MAX_REFERENCES} reference images"))
    if frames:
        task = "image_to_video"
    elif references:
        task = "reference_to_video"
    for index, image in frames[:1] + references:
        content.append({"type": "image", **_image_ref(image, index)})
    extending = request.operation == "extend"
    if extending:
        task = "extend"
        if request.images:
            problems.append(Problem(request.images[0].param, "an extension takes no images"))
    if not request.prompt and not request.images:
        problems.append(Problem("prompt", "a prompt or an image is required"))
    if problems:
        return problems, None

    response_format: dict[str, Any] = {
        "type": "video",
        "aspect_ratio": aspect,
        "resolution": resolution,
        # The string form is "<n>s" in Google's examples; its exact format is unconfirmed.
        "duration": f"{seconds}s",
        "delivery": meta.get("delivery", "inline"),
    }
    generation_config: dict[str, Any] = {"video_config": {"task": task}}
    if "seed" in meta:
        generation_config["seed"] = meta["seed"]
    payload: dict[str, Any] = {
        "model": channel.vendor_model(model),
        "background": True,
        "store": True,  # needed to GET the interaction and to chain an extension onto it
        "input": content,
        "response_format": response_format,
        "generation_config": generation_config,
    }
    for key in ("service_tier", "labels", "system_instruction"):
        if key in meta:
            payload[key] = meta[key]
    if extending:
        payload["extend"] = True
    tokens = seconds * TOKENS_PER_SECOND
    job = VendorJob(
        payload=payload,
        seconds=seconds,
        size=size_of(aspect, resolution),
        resolution=resolution,
        usage={"tokens": tokens, "video_tokens": tokens},
    )
    return [], job


def _is_reference(image: Image, meta: dict[str, Any]) -> bool:
    return image.param.startswith("input_reference") or meta.get("image_role") == "reference"


def usage_facts(usage: Any) -> dict[str, Any]:
    """The usage facts of an Interaction's ``usage``: ``tokens`` (``total_tokens``) and
    ``video_tokens``/``audio_tokens`` (output tokens of that modality)."""
    if not isinstance(usage, dict):
        return {}
    facts: dict[str, Any] = {}
    total = usage.get("total_tokens")
    if isinstance(total, int) and not isinstance(total, bool):
        facts["tokens"] = total
    for entry in usage.get("output_tokens_by_modality") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("tokens"), int):
            continue
        modality = str(entry.get("modality", "")).lower()
        if modality in ("video", "audio"):
            facts[f"{modality}_tokens"] = facts.get(f"{modality}_tokens", 0) + entry["tokens"]
    return facts
