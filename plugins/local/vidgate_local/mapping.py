"""The local vendor's request rules and job spec: what a unified request renders as."""

from __future__ import annotations

import re

from vidgate import Model, Problem, RequestInvalid, Size, VendorJob, VideoRequest

from .render import DEFAULT_BACKGROUND, DEFAULT_FPS

MAX_SECONDS = 20
MAX_LONG_SIDE, MAX_SHORT_SIDE, MIN_SIDE = 1920, 1080, 64
DEFAULT_SIZE = (1280, 720)
RATIO_SHORT_SIDE = 720  # a size given only as W:H gets this many pixels on its short side
MAX_FPS = 60

_COLOUR = re.compile(r"^#(?:[0-9a-fA-F]{3}){1,2}$")


def dimensions(size: Size | None) -> tuple[int, int]:
    """The pixel size asked for, before rounding to even numbers."""
    if size is None:
        return DEFAULT_SIZE
    if size.width is not None and size.height is not None:
        return size.width, size.height
    ratio = size.ratio
    width: float
    height: float
    if ratio >= 1:
        width, height = RATIO_SHORT_SIDE * ratio, RATIO_SHORT_SIDE
    else:
        width, height = RATIO_SHORT_SIDE, RATIO_SHORT_SIDE / ratio
    shrink = min(1.0, MAX_LONG_SIDE / max(width, height))
    return int(width * shrink), int(height * shrink)


def problems(request: VideoRequest, model: Model) -> list[Problem]:
    """Refuse what the renderer cannot make: long clips, huge or tiny frames, several
    images, and ill-typed ``metadata.fps`` / ``metadata.background``."""
    problems = []
    if request.seconds is not None and not 1 <= request.seconds <= MAX_SECONDS:
        problems.append(Problem("seconds", f"must be between 1 and {MAX_SECONDS} for {model.name}"))
    if request.size is not None:
        width, height = dimensions(request.size)
        if max(width, height) > MAX_LONG_SIDE or min(width, height) > MAX_SHORT_SIDE:
            limit = f"{MAX_LONG_SIDE}x{MAX_SHORT_SIDE}"
            problems.append(Problem("size", f"{request.size.text} is larger than {limit} in either orientation"))
        elif min(width, height) < MIN_SIDE:
            problems.append(
                Problem("size", f"{request.size.text} makes {width}x{height}, smaller than {MIN_SIDE} px on a side")
            )
    if len(request.images) > 1:
        problems.append(Problem("images", f"{model.name} takes at most one reference image"))
    fps = request.metadata.get("fps")
    if fps is not None and (not isinstance(fps, int) or isinstance(fps, bool) or not 1 <= fps <= MAX_FPS):
        problems.append(Problem("metadata.fps", f"must be a whole number of frames per second from 1 to {MAX_FPS}"))
    background = request.metadata.get("background")
    if background is not None and not (isinstance(background, str) and _COLOUR.match(background)):
        problems.append(Problem("metadata.background", 'must be a colour like "#203040"'))
    return problems


def job(request: VideoRequest, model: Model) -> VendorJob:
    """Resolve every default, so the job says exactly what will be rendered."""
    if found := problems(request, model):
        raise RequestInvalid(found)
    width, height = dimensions(request.size)
    width, height = width - width % 2, height - height % 2  # yuv420p needs even sides
    seconds = request.seconds or model.default_seconds or 4
    image = None
    if (ref := request.image) is not None:
        # Inline bytes stay in the stored request only; submit reads them from there.
        image = (
            {"url": ref.url, "param": ref.param} if ref.data is None else {"request_image": 0, "mime": ref.mime_type}
        )
    fps = request.metadata.get("fps") or DEFAULT_FPS
    payload = {
        "prompt": request.prompt,
        "seconds": seconds,
        "width": width,
        "height": height,
        "fps": fps,
        "background": request.metadata.get("background") or DEFAULT_BACKGROUND,
        "image": image,
    }
    if request.operation is not None:
        payload["operation"] = request.operation
    resolution = f"{min(width, height)}p"
    return VendorJob(
        payload=payload,
        seconds=seconds,
        size=f"{width}x{height}",
        resolution=resolution,
        usage={"fps": fps, "frames": seconds * fps},
    )
