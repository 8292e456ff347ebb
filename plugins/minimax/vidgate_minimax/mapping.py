"""Unified request -> MiniMax create body (V1 and V2), the checks that come first, status
words and error codes (vendor-protocols-2026 §2.5).

V1 has no size or ratio field: a model makes a ``resolution`` tier (``768P``) for
``duration`` 6 or 10 s, text-to-video in 16:9 and image-to-video in the first frame's
shape. V2 (H3) takes ``content[]`` (text, frames, reference images/videos/audio) and a
``ratio``. What we bill is what we send: duration and resolution are resolved here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from vidgate import Channel, Model, Problem, Size, VendorJob, VideoRequest
from vidgate.errors import ChannelUnusable, VendorError, VendorRateLimited, VendorRejected, VendorUnavailable


@attrs.frozen
class Rule:
    """What one model takes: resolution tier -> durations, and its inputs."""

    resolutions: Mapping[str, tuple[int, ...]]
    default_resolution: str
    t2v: bool = True
    i2v: bool = True
    last_frame: bool = False  # images[1] as last_frame_image
    subject: bool = False  # the image is a subject_reference (S2V-01), not a frame
    api: str = "v1"
    references: bool = False  # V2: input_reference images, videos and audio


_OLD = {"720P": (6,)}
# 2.3/02 tiers and 1080P-only-at-6 s are the reference's (marked unconfirmed there); which
# model takes which input (2.3-Fast image-only, last frame on 02 only) is MiniMax's docs.
RULES: dict[str, Rule] = {
    "MiniMax-Hailuo-2.3": Rule({"768P": (6, 10), "1080P": (6,)}, "768P"),
    "MiniMax-Hailuo-2.3-Fast": Rule({"768P": (6, 10), "1080P": (6,)}, "768P", t2v=False),
    "MiniMax-Hailuo-02": Rule({"512P": (6, 10), "768P": (6, 10), "1080P": (6,)}, "768P", last_frame=True),
    "T2V-01-Director": Rule(_OLD, "720P", i2v=False),
    "I2V-01-Director": Rule(_OLD, "720P", t2v=False),
    "I2V-01-live": Rule(_OLD, "720P", t2v=False),
    "S2V-01": Rule(_OLD, "720P", t2v=False, subject=True),
    # V2: the reference gives only the defaults (768P, 5 s); the tiers and durations
    # below are unconfirmed, and so are the ratios.
    "MiniMax-H3": Rule({"768P": (5, 10), "1080P": (5, 10)}, "768P", last_frame=True, api="v2", references=True),
    "MiniMax-H3-Max": Rule({"768P": (5, 10), "1080P": (5, 10)}, "768P", last_frame=True, api="v2", references=True),
}
RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9")


def _model(name: str, rule: Rule) -> Model:
    seconds = tuple(sorted({s for ss in rule.resolutions.values() for s in ss}))
    return Model(
        name,
        seconds=seconds,
        default_seconds=_default_seconds(rule),
        text_to_video=rule.t2v,
        image_to_video=rule.i2v,
        reference_videos=rule.references,
        reference_audio=rule.references,
    )


def _default_seconds(rule: Rule) -> int:
    return 5 if rule.api == "v2" else 6


MODELS = tuple(_model(name, rule) for name, rule in RULES.items())

#: V1 query ``status`` -> vidgate status.
STATUS = {"Preparing": "queued", "Queueing": "queued", "Processing": "in_progress", "Success": "completed"}
#: V2 ``task.status`` -> vidgate status.
STATUS_V2 = {
    "queued": "queued",
    "running": "in_progress",
    "succeeded": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}
FILTERED = frozenset({1026, 1027})  # sensitive input / sensitive output


def classify(code: int, message: str, wait: float | None = None) -> VendorError:
    """The vidgate error for a non-zero ``base_resp.status_code``."""
    text = f"MiniMax: {message or 'error'} ({code})"
    if code == 1002:
        return VendorRateLimited(text, retry_after=wait, vendor_code=code)
    if code in (1004, 1008):  # bad key / no balance
        return ChannelUnusable(text, vendor_code=code)
    if code in (2013, *FILTERED):
        return VendorRejected(text, vendor_code=code)
    # 1000/1001 and codes newer than this plugin: MiniMax answered, so nothing was created.
    return VendorUnavailable(text, vendor_code=code, maybe_received=False)


_BOOL = ("prompt_optimizer", "fast_pretreatment", "aigc_watermark", "watermark")
_REFUSED = {
    "model": "cannot change the billed model; use the top-level model field",
    "duration": "use the top-level seconds field; it decides what is billed",
    "prompt": "use the top-level prompt field",
    "callback_url": "is set by the gateway",
    "first_frame_image": "use the top-level image/images fields",
    "last_frame_image": "use images[1]",
    "subject_reference": "use the top-level image field",
    "content": "is built from prompt, image/images and input_reference",
    "ratio": "use the top-level size field (e.g. 9:16)",
}


def ratio(size: Size) -> str | None:
    """``W:H`` among :data:`RATIOS` for ``size``; pixel sizes within 1 % (1366x768 is 16:9)."""
    exact = f"{size.ratio_w}:{size.ratio_h}"
    if exact in RATIOS or size.width is None:
        return exact if exact in RATIOS else None
    near = size.nearest_ratio(RATIOS)
    w, h = (int(x) for x in near.split(":"))
    return near if abs(size.ratio / (w / h) - 1) < 0.01 else None


def _resolution(request: VideoRequest, rule: Rule) -> tuple[str | None, Problem | None]:
    asked = request.metadata.get("resolution")
    if asked is not None and (not isinstance(asked, str) or asked not in rule.resolutions):
        return None, Problem("metadata.resolution", f"must be one of {', '.join(rule.resolutions)}")
    size = request.size
    if size is not None and size.height is not None and size.width is not None:
        tier = f"{min(size.width, size.height)}P"
        if tier not in rule.resolutions or (asked is not None and asked != tier):
            return None, Problem("size", f"makes {', '.join(rule.resolutions)} (short side), not {size.text}")
        asked = tier
    if size is not None and ratio(size) is None:
        return None, Problem("size", f"the ratio must be one of {', '.join(RATIOS)}")
    if size is not None and rule.api == "v1" and not request.images and ratio(size) != "16:9":
        return None, Problem("size", "V1 text-to-video is 16:9 only")
    return asked or rule.default_resolution, None


def validate(request: VideoRequest, model: Model) -> list[Problem]:
    """Everything MiniMax would refuse, as problems naming the client's field."""
    rule, problems = RULES[model.name], []
    for key, value in request.metadata.items():
        if key in _REFUSED:
            problems.append(Problem(f"metadata.{key}", _REFUSED[key]))
        elif key in _BOOL and not isinstance(value, bool):
            problems.append(Problem(f"metadata.{key}", "must be true or false"))
        elif key == "extra" and not isinstance(value, dict):
            problems.append(Problem("metadata.extra", "must be an object"))
        elif key in ("prompt_optimizer", "fast_pretreatment") and rule.api == "v2":
            problems.append(Problem(f"metadata.{key}", f"{model.name} (V2 API) has no {key}"))
    resolution, problem = _resolution(request, rule)
    problems += [problem] if problem else []
    seconds = request.seconds or _default_seconds(rule)
    if resolution and seconds not in rule.resolutions[resolution]:
        problems.append(Problem("seconds", f"{model.name} makes {resolution} in {rule.resolutions[resolution]} s"))
    frames = [i for i in request.images if not (rule.references and i.param.startswith("input_reference"))]
    most = 2 if rule.last_frame else 1
    if len(frames) > most:
        problems.append(Problem(frames[most].param, f"{model.name} takes at most {most} frame image(s)"))
    return problems


def pixels(resolution: str, width: int | None = None, height: int | None = None) -> str:
    """The ``WxH`` a tier makes: 16:9, or the first frame's shape when it is known."""
    short = int(resolution.rstrip("P"))
    w, h = (width, height) if width and height else (16, 9)
    if w >= h:
        return f"{2 * round(short * w / h / 2)}x{short}"
    return f"{short}x{2 * round(short * h / w / 2)}"


def _passthrough(request: VideoRequest) -> dict[str, Any]:
    # Checked metadata goes through under MiniMax's names; our own fields are set after it.
    body = {k: v for k, v in request.metadata.items() if k not in ("watermark", "resolution")}
    if "watermark" in request.metadata:
        body["aigc_watermark"] = request.metadata["watermark"]
    return body


def map_request(request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
    """``payload = {"api", "body", "images": {field: index}}`` on V1, ``{"api", "body",
    "content"}`` on V2 (images and references by index); submit fills them in."""
    rule = RULES[model.name]
    resolution, _ = _resolution(request, rule)
    assert resolution is not None  # validate ran first
    if rule.api == "v2":
        return _map_v2(request, model, channel, resolution)
    seconds = request.seconds or 6
    body = _passthrough(request)
    body.update(model=channel.vendor_model(model), prompt=request.prompt, duration=seconds, resolution=resolution)
    images: dict[str, int] = {}
    if request.images:
        images["subject_reference" if rule.subject else "first_frame_image"] = 0
    if len(request.images) > 1:
        images["last_frame_image"] = 1
    first = request.images[0] if request.images else None
    size = pixels(resolution, first.width, first.height) if first else pixels(resolution)
    payload = {"api": "v1", "body": body, "images": images}
    return VendorJob(payload, seconds=seconds, size=size, resolution=resolution.lower())


def _map_v2(request: VideoRequest, model: Model, channel: Channel, resolution: str) -> VendorJob:
    seconds = request.seconds or 5
    body = _passthrough(request)
    body.update(model=channel.vendor_model(model), resolution=resolution, duration=seconds)
    content: list[dict[str, Any]] = [{"type": "text", "text": request.prompt}] if request.prompt else []
    frames = iter(("first_frame", "last_frame"))
    first = None
    for index, image in enumerate(request.images):
        role = "reference_image" if image.param.startswith("input_reference") else next(frames)
        first = image if role == "first_frame" else first
        content.append({"type": "image_url", "role": role, "image": index})
    for index, ref in enumerate(request.references):
        content.append({"type": f"{ref.kind}_url", "role": f"reference_{ref.kind}", "reference": index})
    w, h = (first.width, first.height) if first else (None, None)
    if request.size is not None and (asked := ratio(request.size)):
        body["ratio"] = asked
        w, h = (int(x) for x in asked.split(":"))
    payload = {"api": "v2", "body": body, "content": content}
    return VendorJob(payload, seconds=seconds, size=pixels(resolution, w, h), resolution=resolution.lower())
