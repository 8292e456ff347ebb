"""Unified request -> Veo ``predictLongRunning`` body, and the checks that go with it.

The body is the same on both surfaces (Vertex AI, and the legacy Gemini API)::

    {"instances": [{"prompt": ..., "image": {"bytesBase64Encoded", "mimeType"},
                    "lastFrame": {...},
                    "referenceImages": [{"image": {...}, "referenceType": "asset"}],
                    "video": {...}}],
     "parameters": {"sampleCount": 1, "durationSeconds": 8, "aspectRatio": "16:9",
                    "resolution": "720p", ...metadata}}

Image URLs cannot be fetched here (mapping is synchronous and does no I/O), so an URL
image is stored in the job as ``{"$fetch": url, "param": field}`` and ``submit`` fetches
it through the gateway's SSRF-safe helper and inlines it. Nothing is ever dropped.

Which image is what: ``image``/``images[0]`` is the first frame and ``images[1]`` the
last frame (or ``metadata.lastFrame``); every ``input_reference`` image is an asset
reference (``referenceImages``, at most 3), and ``metadata.image_role = "reference"``
makes the ``images`` references too. An extension (``POST /v1/videos/extensions``) gets
its ``video`` from the source task in ``derive``.
"""

from __future__ import annotations

from typing import Any

from vidgate import Channel, Model, Problem, VendorJob, VideoRequest
from vidgate.request import Image, parse_image

from .models import VEO3, family_of

ASPECT_RATIOS = ("16:9", "9:16")
PERSON_GENERATION = ("dont_allow", "allow_adult", "allow_all")
SIZES = {
    ("16:9", "720p"): "1280x720",
    ("9:16", "720p"): "720x1280",
    ("16:9", "1080p"): "1920x1080",
    ("9:16", "1080p"): "1080x1920",
    ("16:9", "4k"): "3840x2160",
    ("9:16", "4k"): "2160x3840",
}
UINT32_MAX = 2**32 - 1

# snake_case spellings clients copy from the Python SDK, accepted as the wire's camelCase.
SNAKE_ALIASES = {
    "negative_prompt": "negativePrompt",
    "person_generation": "personGeneration",
    "generate_audio": "generateAudio",
    "enhance_prompt": "enhancePrompt",
    "sample_count": "sampleCount",
    "number_of_videos": "sampleCount",
    "aspect_ratio": "aspectRatio",
    "duration_seconds": "durationSeconds",
    "last_frame": "lastFrame",
    "imageRole": "image_role",
}
IMAGE_ROLES = ("frames", "reference")

# Keys this module interprets itself; everything else in metadata goes to ``parameters``.
_HANDLED = {"resolution", "aspectRatio", "lastFrame", "sampleCount", "durationSeconds", "model", "image_role"}


def _image_field(image: Image, param: str, index: int | None = None) -> dict[str, Any]:
    if image.url is not None:
        return {"$fetch": image.url, "param": param}
    if index is not None:
        # The bytes are already stored with the request: name the image, submit encodes it.
        return {"$request_image": index, "mimeType": image.mime_type or "image/png"}
    return {"bytesBase64Encoded": image.base64(), "mimeType": image.mime_type or "image/png"}


def _check_metadata(meta: dict[str, Any], problems: list[Problem]) -> dict[str, Any]:
    """Type-check the Veo parameters clients may set; return what goes to ``parameters``."""
    params: dict[str, Any] = {}
    for raw_key, value in meta.items():
        key = SNAKE_ALIASES.get(raw_key, raw_key)
        p = f"metadata.{raw_key}"
        if key == "model":
            problems.append(Problem(p, "cannot be set: the model is chosen by the request's model field"))
        elif key == "durationSeconds":
            problems.append(Problem(p, "is not accepted here: use the request's seconds field"))
        elif key == "sampleCount":
            if isinstance(value, bool) or value not in (1, "1"):
                problems.append(Problem(p, "must be 1: the gateway returns exactly one video per task"))
        elif key == "negativePrompt":
            if not isinstance(value, str):
                problems.append(Problem(p, "must be a string"))
            else:
                params[key] = value
        elif key == "personGeneration":
            if value not in PERSON_GENERATION:
                problems.append(Problem(p, f"must be one of {', '.join(PERSON_GENERATION)}"))
            else:
                params[key] = value
        elif key == "seed":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= UINT32_MAX:
                problems.append(Problem(p, f"must be an integer between 0 and {UINT32_MAX}"))
            else:
                params[key] = value
        elif key in ("generateAudio", "enhancePrompt"):
            if not isinstance(value, bool):
                problems.append(Problem(p, "must be true or false"))
            else:
                params[key] = value
        elif key == "referenceImages":
            problems.append(Problem(p, "is not accepted here: send reference images as input_reference"))
        elif key == "image_role":
            if value not in IMAGE_ROLES:
                problems.append(Problem(p, f"must be one of {', '.join(IMAGE_ROLES)}"))
        elif key in _HANDLED:
            continue  # resolution, aspectRatio, lastFrame: read by map_job
        else:
            params[key] = value  # unknown to us: Veo decides (new parameters keep working)
    return params


def _meta(meta: dict[str, Any], key: str) -> tuple[str, Any]:
    """Find ``key`` in metadata under its camelCase or snake_case name."""
    for raw, canonical in SNAKE_ALIASES.items():
        if canonical == key and raw in meta:
            return raw, meta[raw]
    return key, meta.get(key)


def plan(request: VideoRequest, model: Model, channel: Channel) -> tuple[list[Problem], VendorJob | None]:
    """Check ``request`` and build the job; returns (problems, job or None)."""
    problems: list[Problem] = []
    vendor_model = channel.vendor_model(model)
    family = family_of(vendor_model)
    meta = dict(request.metadata)
    params = _check_metadata(meta, problems)

    # -- seconds: only what this family can make; the default is what we send and bill.
    seconds = request.seconds if request.seconds is not None else family.default_seconds
    if seconds not in family.seconds:
        allowed = ", ".join(str(s) for s in family.seconds)
        problems.append(Problem("seconds", f"{model.name} makes videos of {allowed} seconds, not {seconds}"))

    # -- aspect ratio: 16:9 or 9:16 only (1:1 and others map to the nearest).
    aspect = "16:9"
    size_resolution: str | None = None
    if request.size is not None:
        aspect = request.size.nearest_ratio(ASPECT_RATIOS)
        if request.size.width is not None and request.size.height is not None:
            long_side = max(request.size.width, request.size.height)
            if long_side >= 3840 and "4k" in family.resolutions:
                size_resolution = "4k"
            elif long_side >= 1920:
                size_resolution = "1080p"
            else:
                size_resolution = "720p"
    ar_key, ar_value = _meta(meta, "aspectRatio")
    if ar_value is not None:
        if ar_value not in ASPECT_RATIOS:
            problems.append(Problem(f"metadata.{ar_key}", "must be 16:9 or 9:16"))
        elif request.size is not None and ar_value != aspect:
            problems.append(Problem(f"metadata.{ar_key}", f"conflicts with size {request.size.text}"))
        else:
            aspect = ar_value

    # -- resolution: from a WxH size, or metadata.resolution; 720p by default.
    resolution = size_resolution or "720p"
    res_param = "size"
    if "resolution" in meta:
        res_param = "metadata.resolution"
        value = meta["resolution"]
        if not isinstance(value, str) or value.lower() not in family.resolutions:
            problems.append(Problem(res_param, f"must be one of {', '.join(family.resolutions)} for {model.name}"))
        elif size_resolution is not None and value.lower() != size_resolution:
            problems.append(Problem(res_param, f"conflicts with size {request.size.text if request.size else ''}"))
        else:
            resolution = value.lower()
    if resolution not in family.resolutions:
        problems.append(Problem(res_param, f"{model.name} makes only {', '.join(family.resolutions)} videos"))
    elif resolution != "720p":
        if seconds != 8:
            problems.append(Problem(res_param, f"{resolution} is only available for 8-second videos"))
        if family is VEO3 and aspect != "16:9":
            problems.append(Problem(res_param, f"{model.name} makes {resolution} only in 16:9"))

    # -- images: first frame and last frame, or asset references.
    instance: dict[str, Any] = {}
    if request.prompt:
        instance["prompt"] = request.prompt
    _, role = _meta(meta, "image_role")
    frames: list[tuple[int, Image]] = []
    references: list[tuple[int, Image]] = []
    for index, image in enumerate(request.images):
        if image.param.startswith("input_reference") or role == "reference":
            references.append((index, image))
        else:
            frames.append((index, image))
    if len(frames) > 2:
        problems.append(Problem(frames[2][1].param, "Veo takes at most two frames: the first and the last"))
    if frames:
        instance["image"] = _image_field(frames[0][1], frames[0][1].param, frames[0][0])
    last: Image | None = frames[1][1] if len(frames) > 1 else None
    lf_key, lf_value = _meta(meta, "lastFrame")
    last_param = last.param if last is not None else "images[1]"
    last_index: int | None = frames[1][0] if last is not None else None
    if lf_value is not None:
        last_index = None  # parsed from metadata: not among the request's images
        last_param = f"metadata.{lf_key}"
        if last is not None:
            problems.append(Problem(last_param, "conflicts with the second image; send the last frame once"))
        elif not frames:
            problems.append(Problem(last_param, "needs a first-frame image as well"))
        else:
            last = parse_image(lf_value, last_param, problems)
    if last is not None:
        instance["lastFrame"] = _image_field(last, last_param, last_index)
    if references:
        first_param = references[0][1].param
        if not family.reference_images:
            problems.append(Problem(first_param, f"{model.name} takes no reference images"))
        elif len(references) > family.reference_images:
            problems.append(
                Problem(
                    references[family.reference_images][1].param,
                    f"Veo takes at most {family.reference_images} reference images",
                )
            )
        if frames or lf_value is not None:
            # Google documents references as their own mode (reference_to_video); it is
            # unconfirmed whether Vertex refuses a mix, so the gateway does not send one.
            problems.append(Problem(first_param, "reference images cannot be combined with a first or last frame"))
        if seconds != 8:
            problems.append(Problem("seconds", "videos from reference images are 8 seconds long"))
        instance["referenceImages"] = [
            {"image": _image_field(image, image.param, index), "referenceType": "asset"} for index, image in references
        ]

    # -- extension: the source video is added by derive; the new segment is 8 s.
    extending = request.operation == "extend"
    if extending:
        if not family.extend:
            problems.append(Problem("video", f"{model.name} cannot extend videos"))
        if request.images:
            problems.append(Problem(request.images[0].param, "an extension takes no images"))
        if seconds != 8:
            # Google's rule for extensions (Gemini API docs; the same on Vertex is unconfirmed).
            problems.append(Problem("seconds", "Veo extends a video by 8 seconds"))

    if problems:
        return problems, None

    parameters: dict[str, Any] = {
        **params,
        "sampleCount": 1,
        "durationSeconds": seconds,
        "aspectRatio": aspect,
    }
    if "720p" != resolution or len(family.resolutions) > 1:
        # Veo 2 has no resolution parameter; every later model gets it explicitly so the
        # vendor makes exactly what we bill.
        parameters["resolution"] = resolution
    job = VendorJob(
        payload={
            "model": vendor_model,
            "instances": [instance],
            "parameters": parameters,
            **({"extend": True} if extending else {}),
        },
        seconds=seconds,
        size=SIZES[(aspect, resolution)],
        resolution=resolution,
    )
    return [], job
