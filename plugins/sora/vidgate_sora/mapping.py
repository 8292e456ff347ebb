"""Unified request -> OpenAI Videos create request: models, sizes, seconds, metadata.

Everything here is pure computation (no I/O), so it runs inside the synchronous
``validate``/``map_request`` hooks. The job payload it builds is stored with the task and
must therefore be JSON: an inline reference image travels as base64 text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from vidgate import Model, Problem, RequestInvalid, VendorJob, VideoRequest

# The Videos API enums (spec VideoSeconds / VideoSize). ``seconds`` is a string enum on
# the wire; we keep ints here and stringify when building the body.
SECONDS: tuple[int, ...] = (4, 8, 12)
DEFAULT_SECONDS = 4
DEFAULT_SIZE = "720x1280"
SIZES_SORA_2: tuple[str, ...] = ("720x1280", "1280x720")
SIZES_SORA_2_PRO: tuple[str, ...] = SIZES_SORA_2 + ("1024x1792", "1792x1024")

MODELS: tuple[Model, ...] = (
    Model(
        "sora-2",
        description="OpenAI Sora 2: 720p portrait or landscape, 4/8/12 s, remix, extend, edit.",
        seconds=SECONDS,
        default_seconds=DEFAULT_SECONDS,
        supports_remix=True,
        operations=frozenset({"remix", "extend", "edit"}),
    ),
    Model(
        "sora-2-pro",
        description="OpenAI Sora 2 Pro: adds 1024x1792 and 1792x1024, 4/8/12 s, remix, extend, edit.",
        seconds=SECONDS,
        default_seconds=DEFAULT_SECONDS,
        supports_remix=True,
        operations=frozenset({"remix", "extend", "edit"}),
    ),
)

# Sizes each public model may ask for. Keyed by the *public* name: a channel may map
# sora-2 to another upstream name, but what the client may ask for stays the same.
SIZES: dict[str, tuple[str, ...]] = {"sora-2": SIZES_SORA_2, "sora-2-pro": SIZES_SORA_2_PRO}

# The Videos API accepts these reference image types (guide: jpeg, png, webp).
IMAGE_TYPES: dict[str, str] = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}

# Metadata keys that would change what is billed or bypass validation if passed through.
RESERVED_KEYS: tuple[str, ...] = ("model", "prompt", "seconds", "size", "input_reference")

MAX_METADATA_DEPTH = 8


def sizes_for(model: Model) -> tuple[str, ...]:
    """The sizes ``model`` can make (unknown models get the sora-2 set)."""
    return SIZES.get(model.name, SIZES_SORA_2)


def _reduced(width: int, height: int) -> tuple[int, int]:
    g = math.gcd(width, height)
    return width // g, height // g


def resolve_size(request: VideoRequest, model: Model) -> tuple[str | None, Problem | None]:
    """The Videos API size for the request, or the problem with it.

    ``WxH`` must be one of the model's sizes. A ratio (``16:9``) picks the model's size
    with exactly that aspect ratio; on sora-2-pro the smaller (cheaper) one wins.
    """
    allowed = sizes_for(model)
    size = request.size
    if size is None:
        return DEFAULT_SIZE, None
    if size.width is not None:
        text = f"{size.width}x{size.height}"
        if text in allowed:
            return text, None
        return None, Problem("size", f"{model.name} cannot make {text}; choose one of {', '.join(allowed)}")
    for candidate in allowed:  # ordered smallest first
        w, h = (int(v) for v in candidate.split("x"))
        if _reduced(w, h) == (size.ratio_w, size.ratio_h):
            return candidate, None
    ratios = ", ".join(sorted({"{}:{}".format(*_reduced(*(int(v) for v in s.split("x")))) for s in allowed}))
    return None, Problem(
        "size", f"{model.name} has no size with ratio {size.text}; use one of {', '.join(allowed)} (ratios {ratios})"
    )


def _check_value(value: Any, path: str, problems: list[Problem], depth: int = 0) -> None:
    """Only JSON scalars and objects pass through: they have one obvious wire form in
    both JSON and multipart bodies, lists do not."""
    if value is None or isinstance(value, (bool, str, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            problems.append(Problem(path, "must be a finite number"))
        return
    if isinstance(value, Mapping):
        if depth >= MAX_METADATA_DEPTH:
            problems.append(Problem(path, "is nested too deeply"))
            return
        for key, inner in value.items():
            if not isinstance(key, str):
                problems.append(Problem(path, "object keys must be strings"))
                continue
            _check_value(inner, f"{path}.{key}", problems, depth + 1)
        return
    problems.append(Problem(path, f"must be a string, number, boolean, null or object, not {type(value).__name__}"))


def metadata_problems(metadata: Mapping[str, Any]) -> list[Problem]:
    """Refuse metadata keys that would change the billed request, and ill-typed values."""
    problems: list[Problem] = []
    for key, value in metadata.items():
        param = f"metadata.{key}"
        base = key.split("[", 1)[0].strip().lower()
        if base in RESERVED_KEYS:
            problems.append(
                Problem(
                    param, f"'{key}' cannot be set through metadata; use the top-level request field", "reserved_key"
                )
            )
            continue
        if not key.strip():
            problems.append(Problem("metadata", "keys must be non-empty"))
            continue
        _check_value(value, param, problems)
    return problems


def validate(request: VideoRequest, model: Model) -> list[Problem]:
    """Every reason the Videos API would refuse ``request``, found before any call."""
    problems: list[Problem] = []
    if request.seconds is not None and request.seconds not in SECONDS:
        problems.append(
            Problem(
                "seconds",
                f"{model.name} makes {', '.join(str(s) for s in SECONDS)} second videos, not {request.seconds}",
            )
        )
    _, size_problem = resolve_size(request, model)
    if size_problem is not None:
        problems.append(size_problem)
    if len(request.images) > 1:
        problems.append(Problem("images", "the Videos API takes one reference image (input_reference)"))
    image = request.image
    if image is not None and image.data is not None and image.mime_type not in IMAGE_TYPES:
        problems.append(Problem("image", f"the reference image must be PNG, JPEG or WebP, not {image.mime_type}"))
    problems.extend(metadata_problems(request.metadata))
    return problems


def map_request(request: VideoRequest, model: Model, vendor_model: str) -> VendorJob:
    """Build the stored job. Payload keys:

    ``model``, ``prompt``, ``seconds`` (string), ``size``: the create fields;
    ``extra``: metadata keys passed through as additional body fields;
    ``image``: ``{"request_image": 0, "mime_type", "filename"}`` (the bytes stay in the
    stored request; submit reads them from ``ctx.request``) or ``{"url", "param"}``, if any.
    """
    problems = validate(request, model)
    if problems:
        raise RequestInvalid(problems)
    size, _ = resolve_size(request, model)
    assert size is not None
    seconds = request.seconds if request.seconds is not None else DEFAULT_SECONDS
    payload: dict[str, Any] = {
        "model": vendor_model,
        "prompt": request.prompt,
        "seconds": str(seconds),
        "size": size,
        "extra": dict(request.metadata),
    }
    if (image := request.image) is not None:
        if image.data is not None:
            mime = image.mime_type or "image/png"
            payload["image"] = {
                "request_image": 0,
                "mime_type": mime,
                "filename": f"reference.{IMAGE_TYPES.get(mime, 'png')}",
            }
        else:
            payload["image"] = {"url": image.url, "param": image.param}
    width, height = (int(v) for v in size.split("x"))
    return VendorJob(payload=payload, seconds=seconds, size=size, resolution=f"{min(width, height)}p")
