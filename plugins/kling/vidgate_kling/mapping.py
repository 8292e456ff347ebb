"""Unified request -> Kling create body, the models and their rules, and the checks that
come first.

Kling has one create endpoint per *family* (``/v1/videos/{family}``) and a task must be
queried under the family it was created on, so the family is chosen here and stored in
the job (and then in the handle):

* ``text2video``: no image;
* ``image2video``: a first frame (``image``) and/or a last frame (``image_tail``);
* ``multi-image2video``: 2-4 reference images (``image_list``), only ``kling-v1-6``;
* ``omni-video``: the omni models (``kling-video-o1``, ``kling-v3-omni``): first/end
  frame and reference images in ``image_list``, reference videos in ``video_list``;
* ``video-extend``: the derived task ``extend`` of a finished Kling video (``video_id``).

What we bill is what we send: ``duration`` is resolved here (Kling's default ``"5"`` when
the client did not say) and the :class:`~vidgate.VendorJob` reports it, with the size
Kling will make for the model and mode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from vidgate import Channel, Model, Problem, Size, VendorJob, VideoRequest
from vidgate.errors import RequestInvalid

MAX_PROMPT = 2500
MAX_SHOT_PROMPT = 512
MAX_SHOTS = 6
MAX_IMAGE_BYTES = 10 * 1024 * 1024  # Kling's documented image limit
MIN_IMAGE_SIDE = 300  # Kling: min side 300 px, aspect between 1:2.5 and 2.5:1
MAX_IMAGE_ASPECT = 2.5
IMAGE_TYPES = ("image/png", "image/jpeg")  # Kling: jpg/jpeg/png only
ASPECT_RATIOS = ("16:9", "9:16", "1:1")
DEFAULT_ASPECT_RATIO = "16:9"  # Kling's documented default (not 1:1)
DEFAULT_SECONDS = 5
#: multi-image2video takes up to 4 reference images; fewer than 2 is just image2video.
MULTI_IMAGE_RANGE = (2, 4)
#: omni-video: at most 7 images without a reference video, 4 with one (unconfirmed).
OMNI_MAX_IMAGES, OMNI_MAX_IMAGES_WITH_VIDEO = 7, 4
#: omni-video: one reference video per task; the reference names only ``<<<video_1>>>``
#: (unconfirmed: Kling may accept more).
OMNI_MAX_VIDEOS = 1
#: video-extend adds 4-5 s per call with the source's model and mode; we bill 5.
EXTEND_SECONDS = 5
#: video-extend: the whole extended video stays under 3 minutes.
EXTEND_MAX_TOTAL = 180
#: Legacy Kling units per 5 s by mode (new-api's table): the estimate reserved at
#: submit; the settlement uses the task's ``final_unit_deduction``.
CREDITS_PER_5S = {"std": 2.0, "pro": 3.5}

TEXT2VIDEO = "text2video"
IMAGE2VIDEO = "image2video"
MULTI_IMAGE2VIDEO = "multi-image2video"
OMNI_VIDEO = "omni-video"
VIDEO_EXTEND = "video-extend"
FAMILIES = (TEXT2VIDEO, IMAGE2VIDEO, MULTI_IMAGE2VIDEO, OMNI_VIDEO, VIDEO_EXTEND)

#: omni-video image roles (``metadata.image_roles``).
FIRST_FRAME, END_FRAME, REFERENCE = "first_frame", "end_frame", "reference"
IMAGE_ROLES = (FIRST_FRAME, END_FRAME, REFERENCE)

_PIXELS = {
    720: {"16:9": "1280x720", "9:16": "720x1280", "1:1": "720x720"},
    1080: {"16:9": "1920x1080", "9:16": "1080x1920", "1:1": "1080x1080"},
}


@attrs.frozen
class Rules:
    """What one Kling ``model_name`` accepts (section 2.1 of the 2026 reference).

    ``modes`` empty = the model takes no ``mode`` (one fixed output); ``heights`` is the
    output height per mode (``""`` for the fixed one). ``sound``: ``"no"`` (no audio),
    ``"pro"`` (``sound: on`` only with ``mode: pro``) or ``"yes"``.
    """

    families: frozenset[str]
    seconds: tuple[int, ...] = (5, 10)
    modes: tuple[str, ...] = ("std", "pro")
    default_mode: str = "std"
    heights: dict[str, int] = attrs.field(factory=lambda: {"std": 720, "pro": 1080})
    sound: str = "no"
    cfg_scale: bool = True
    end_frame_pro_only: bool = False
    multi_shot: bool = False

    def mode_for(self, metadata: dict[str, Any]) -> str:
        """The mode the task runs in ("" for a model without modes)."""
        if not self.modes:
            return ""
        mode = metadata.get("mode", self.default_mode)
        return mode if mode in self.modes else self.default_mode

    def height(self, mode: str) -> int:
        return self.heights.get(mode, next(iter(self.heights.values())))


_T2V_I2V = frozenset({TEXT2VIDEO, IMAGE2VIDEO, VIDEO_EXTEND})
_FIXED_720 = {"": 720}
_FIXED_1080 = {"": 1080}
_OMNI = frozenset({OMNI_VIDEO})
_3_TO_15 = tuple(range(3, 16))

#: Rules by Kling ``model_name``. Which families each serves, the durations and modes
#: are the reference's table; ``video-extend`` is declared for the text/image models
#: (the reference excludes only kling-v1-5 outputs; omni models are not documented for it).
RULES: dict[str, Rules] = {
    "kling-v1": Rules(_T2V_I2V, heights={"std": 720, "pro": 720}),
    "kling-v1-5": Rules(frozenset({IMAGE2VIDEO}), end_frame_pro_only=True),
    "kling-v1-6": Rules(_T2V_I2V | {MULTI_IMAGE2VIDEO}, end_frame_pro_only=True),
    "kling-v2-master": Rules(_T2V_I2V, modes=(), heights=_FIXED_720, cfg_scale=False),
    "kling-v2-1": Rules(frozenset({IMAGE2VIDEO}), cfg_scale=False, end_frame_pro_only=True),
    "kling-v2-1-master": Rules(_T2V_I2V, modes=(), heights=_FIXED_1080, cfg_scale=False),
    # The reference lists "pro 1080p"; the older capability map std/pro (std 720p).
    "kling-v2-5-turbo": Rules(_T2V_I2V, cfg_scale=False, end_frame_pro_only=True),
    "kling-v2-6": Rules(_T2V_I2V, sound="pro", cfg_scale=False),
    "kling-v3": Rules(_T2V_I2V, seconds=_3_TO_15, sound="yes", multi_shot=True),
    # t2v and first-frame-only o1 tasks may be limited to 5|10 s (unconfirmed): not enforced.
    "kling-video-o1": Rules(_OMNI, seconds=tuple(range(3, 11)), default_mode="pro", multi_shot=True),
    "kling-v3-omni": Rules(_OMNI, seconds=_3_TO_15, default_mode="pro", sound="yes", multi_shot=True),
}


def _model(name: str, description: str) -> Model:
    rules = RULES[name]
    return Model(
        name,
        seconds=rules.seconds,
        default_seconds=DEFAULT_SECONDS,
        description=description,
        text_to_video=bool(rules.families & {TEXT2VIDEO, OMNI_VIDEO}),
        image_to_video=bool(rules.families & {IMAGE2VIDEO, MULTI_IMAGE2VIDEO, OMNI_VIDEO}),
        reference_videos=OMNI_VIDEO in rules.families,
        operations=frozenset({"extend"}) if VIDEO_EXTEND in rules.families else frozenset(),
    )


#: Kling's models. Public name = Kling's ``model_name``.
MODELS = (
    _model("kling-v1", "Kling 1.0: std/pro 720p, 5/10 s, extend"),
    _model("kling-v1-5", "Kling 1.5: image-to-video only, std 720p / pro 1080p, end frame in pro"),
    _model("kling-v1-6", "Kling 1.6: std 720p / pro 1080p, 5/10 s, 2-4 reference images, extend"),
    _model("kling-v2-master", "Kling 2.0 Master: 720p, no mode, 5/10 s, extend"),
    _model("kling-v2-1", "Kling 2.1: image-to-video only, std 720p / pro 1080p, end frame in pro"),
    _model("kling-v2-1-master", "Kling 2.1 Master: 1080p, no mode, 5/10 s, extend"),
    _model("kling-v2-5-turbo", "Kling 2.5 Turbo: std 720p / pro 1080p, 5/10 s, extend"),
    _model("kling-v2-6", "Kling 2.6: std/pro, 5/10 s, sound in pro mode, extend"),
    _model("kling-v3", "Kling 3: std/pro, 3-15 s, sound, multi-shot, extend"),
    _model("kling-video-o1", "Kling O1 (omni-video): frames, reference images and videos, 3-10 s"),
    _model("kling-v3-omni", "Kling 3 Omni (omni-video): frames, reference images and videos, 3-15 s, sound"),
)


def rules_for(model: Model, channel: Channel | None = None) -> Rules:
    """The rules of the Kling model a request runs on (the channel's ``model_map`` wins;
    an unknown vendor name falls back to the public model's rules)."""
    vendor_model = channel.vendor_model(model) if channel is not None else model.upstream
    return RULES.get(vendor_model) or RULES.get(model.name) or RULES["kling-v1"]


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_shots(v: Any) -> bool:
    if not isinstance(v, list) or not 1 <= len(v) <= MAX_SHOTS:
        return False
    return all(
        isinstance(s, dict) and _is_str(s.get("prompt", "")) and len(s.get("prompt", "")) <= MAX_SHOT_PROMPT for s in v
    )


def _is_elements(v: Any) -> bool:
    return isinstance(v, list) and all(
        isinstance(e, dict) and isinstance(e.get("element_id"), int) and not isinstance(e.get("element_id"), bool)
        for e in v
    )


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
    "multi_shot": (lambda v: isinstance(v, bool), "must be true or false"),
    "shot_type": (lambda v: v in ("customize", "intelligence"), 'must be "customize" or "intelligence"'),
    "multi_prompt": (
        _is_shots,
        f"must be a list of 1 to {MAX_SHOTS} shots, each an object with a prompt of at most {MAX_SHOT_PROMPT} chars",
    ),
    "element_list": (_is_elements, 'must be a list of objects like {"element_id": 123}'),
    "voice_list": (lambda v: isinstance(v, list), "must be a list"),
    # Our own keys (never sent to Kling as such):
    "multi_image": (lambda v: isinstance(v, bool), "must be true or false"),
    "image_roles": (
        lambda v: isinstance(v, list) and all(r in IMAGE_ROLES for r in v),
        f"must be a list of {', '.join(repr(r) for r in IMAGE_ROLES)}, one per image",
    ),
    "refer_type": (lambda v: v in ("base", "feature"), 'must be "base" or "feature"'),
    # Kling's value type is not documented beyond the name (unconfirmed): "yes"/"no".
    "keep_original_sound": (lambda v: v in ("yes", "no"), 'must be "yes" or "no"'),
}

#: Keys that steer the mapping and are not Kling fields.
_CONTROL = frozenset({"multi_image", "image_roles", "refer_type", "keep_original_sound"})

# Keys the gateway owns; a client may not set them through metadata.
_REFUSED = {
    "model": "cannot change the billed model; choose the model with the top-level model field",
    "model_name": "cannot change the billed model; choose the model with the top-level model field",
    "duration": "use the top-level seconds (or duration) field; it decides what is billed",
    "external_task_id": "is set by the gateway (its task id) so lost submissions can be found again",
    "callback_url": "is set by the gateway",
    "prompt": "use the top-level prompt field",
    "image": "use the top-level image/images/input_reference fields",
    "image_list": "use the top-level images/input_reference fields",
    "video_list": "use input_reference with video URLs",
    "video_id": "is set by the gateway from the source of POST /v1/videos/extensions",
    "aspect_ratio": "use the top-level size field (e.g. 16:9, 9:16, 1:1 or 1280x720)",
}

#: video-extend takes only these beyond ``video_id``/``prompt`` (the source's metadata is
#: what an extension inherits; its model and mode fields do not apply).
_EXTEND_FIELDS = ("negative_prompt", "cfg_scale")


def family_of(request: VideoRequest, rules: Rules) -> str:
    """The Kling family a request goes to (its feasibility is checked by :func:`validate`)."""
    if request.operation == "extend":
        return VIDEO_EXTEND
    if OMNI_VIDEO in rules.families:
        return OMNI_VIDEO
    n = len(request.images)
    if n >= 3 or (n >= 2 and request.metadata.get("multi_image") is True):
        return MULTI_IMAGE2VIDEO
    if n or "image_tail" in request.metadata:
        return IMAGE2VIDEO
    return TEXT2VIDEO


def image_roles(request: VideoRequest) -> list[str]:
    """omni-video roles of the request's images: ``metadata.image_roles`` when given, else
    the first image is the first frame and the others are reference images."""
    roles = request.metadata.get("image_roles")
    if isinstance(roles, list):
        return [str(r) for r in roles]
    return [FIRST_FRAME if i == 0 else REFERENCE for i in range(len(request.images))]


def _image_problems(request: VideoRequest) -> list[Problem]:
    problems = []
    for image in request.images:
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


def _serves(name: str, rules: Rules, family: str) -> Problem | None:
    if family in rules.families:
        return None
    if family == MULTI_IMAGE2VIDEO:
        return Problem(
            "images",
            f"{name} takes at most two images (the first and the last frame); several reference images "
            "need kling-v1-6 (multi-image2video) or an omni model (kling-video-o1, kling-v3-omni)",
        )
    if family == IMAGE2VIDEO:
        return Problem("image", f"{name} cannot start from an image")
    if family == TEXT2VIDEO:
        return Problem("image", f"{name} only makes videos from an image; send image", "missing_required_parameter")
    return Problem("video", f"{name} cannot extend videos at Kling", "extend_not_supported")


def _family_problems(request: VideoRequest, name: str, rules: Rules, family: str, mode: str) -> list[Problem]:
    meta = request.metadata
    problems: list[Problem] = []
    tail = len(request.images) > 1 or "image_tail" in meta
    if family == IMAGE2VIDEO:
        if len(request.images) > 1 and "image_tail" in meta:
            problems.append(
                Problem("metadata.image_tail", "a second image already sets the last frame; send one of them")
            )
        if tail and rules.end_frame_pro_only and mode != "pro":
            problems.append(Problem("metadata.mode", f"{name} makes a video with a last frame only in mode pro"))
        if tail:
            for key in ("static_mask", "dynamic_masks", "camera_control"):
                if key in meta:
                    problems.append(Problem(f"metadata.{key}", "Kling does not combine a last frame with " + key))
    elif family == MULTI_IMAGE2VIDEO:
        low, high = MULTI_IMAGE_RANGE
        if not low <= len(request.images) <= high:
            problems.append(Problem("images", f"multi-image2video takes {low} to {high} reference images"))
        if "image_tail" in meta:
            problems.append(Problem("metadata.image_tail", "multi-image2video has no last frame"))
        if request.seconds not in (None, 5, 10):
            problems.append(Problem("seconds", "multi-image2video makes 5 or 10 second videos"))
    elif family == OMNI_VIDEO:
        problems.extend(_omni_problems(request, name))
    elif family == VIDEO_EXTEND:
        # Only a length the client asked for: without one the core fills in the source's.
        if request.seconds_given and request.seconds not in (None, 4, EXTEND_SECONDS):
            problems.append(
                Problem("seconds", f"Kling extends a video by 4-5 s per call; send seconds {EXTEND_SECONDS}")
            )
    if family != OMNI_VIDEO and "image_roles" in meta:
        problems.append(Problem("metadata.image_roles", "only the omni models take image roles"))
    if family in (TEXT2VIDEO, IMAGE2VIDEO) and "multi_image" in meta and len(request.images) < 2:
        problems.append(Problem("metadata.multi_image", "multi-image2video needs 2 to 4 images"))
    return problems


def _omni_problems(request: VideoRequest, name: str) -> list[Problem]:
    meta = request.metadata
    problems: list[Problem] = []
    roles = image_roles(request)
    videos = [r for r in request.references if r.kind == "video"]
    if len(roles) != len(request.images):
        problems.append(Problem("metadata.image_roles", f"give one role per image ({len(request.images)})"))
    if roles.count(FIRST_FRAME) > 1 or roles.count(END_FRAME) > 1:
        problems.append(Problem("metadata.image_roles", "at most one first_frame and one end_frame"))
    if END_FRAME in roles and FIRST_FRAME not in roles:
        problems.append(Problem("metadata.image_roles", "Kling refuses an end frame without a first frame"))
    limit = OMNI_MAX_IMAGES_WITH_VIDEO if videos else OMNI_MAX_IMAGES
    if len(request.images) > limit:
        with_video = " with a reference video" if videos else ""
        problems.append(Problem("images", f"{name} takes at most {limit} images{with_video}"))
    if len(videos) > OMNI_MAX_VIDEOS:
        problems.append(Problem(videos[OMNI_MAX_VIDEOS].param, f"{name} takes one reference video"))
    for video in videos:
        if video.url is None:
            problems.append(Problem(video.param, "Kling takes reference videos as http(s) URLs, not inline data"))
    if videos and meta.get("sound") == "on":
        problems.append(Problem("metadata.sound", "Kling makes no sound when a reference video is given"))
    if not videos:
        for key in ("refer_type", "keep_original_sound"):
            if key in meta:
                problems.append(Problem(f"metadata.{key}", "applies to a reference video (input_reference)"))
    if "image_tail" in meta:
        problems.append(Problem("metadata.image_tail", 'use images with metadata.image_roles ("end_frame")'))
    return problems


def validate(request: VideoRequest, model: Model, channel: Channel | None = None) -> list[Problem]:
    """Everything Kling would refuse, as problems naming the client's field."""
    problems: list[Problem] = []
    name = channel.vendor_model(model) if channel is not None else model.upstream
    rules = rules_for(model, channel)
    meta = request.metadata
    if len(request.prompt) > MAX_PROMPT:
        problems.append(Problem("prompt", f"Kling accepts at most {MAX_PROMPT} characters", "too_long"))
    for key, value in meta.items():
        if key in _REFUSED:
            problems.append(Problem(f"metadata.{key}", _REFUSED[key]))
        elif key in _METADATA_CHECKS:
            check, message = _METADATA_CHECKS[key]
            if not check(value):
                problems.append(Problem(f"metadata.{key}", message))
    if problems:
        return problems  # the rules below read these keys
    family = family_of(request, rules)
    if served := _serves(name, rules, family):
        return [served]
    seconds = request.seconds if request.seconds is not None else DEFAULT_SECONDS
    if family != VIDEO_EXTEND and seconds not in rules.seconds:
        choices = rules.seconds
        shown = f"{choices[0]} to {choices[-1]}" if len(choices) > 2 else " or ".join(map(str, choices))
        problems.append(Problem("seconds", f"{name} makes videos of {shown} seconds, not {seconds}"))
    if "mode" in meta and not rules.modes:
        problems.append(Problem("metadata.mode", f"{name} has no mode (it makes {rules.height('')}p)"))
    mode = rules.mode_for(meta)
    if meta.get("sound") == "on":
        if rules.sound == "no":
            problems.append(Problem("metadata.sound", f"{name} makes no sound"))
        elif rules.sound == "pro" and mode != "pro":
            problems.append(Problem("metadata.sound", f"{name} makes sound only in mode pro"))
    if "cfg_scale" in meta and not rules.cfg_scale:
        problems.append(Problem("metadata.cfg_scale", f"{name} does not take cfg_scale"))
    shot_keys = [k for k in ("multi_shot", "shot_type", "multi_prompt") if k in meta]
    if shot_keys and not rules.multi_shot:
        problems.append(Problem(f"metadata.{shot_keys[0]}", f"{name} makes no multi-shot videos (kling-v3 does)"))
    if "element_list" in meta and "voice_list" in meta:
        problems.append(Problem("metadata.voice_list", "Kling does not combine element_list and voice_list"))
    multi_shot = meta.get("multi_shot") is True
    if family in (TEXT2VIDEO, OMNI_VIDEO) and not request.prompt.strip() and not multi_shot:
        problems.append(Problem("prompt", "Kling needs a prompt here", "missing_required_parameter"))
    problems.extend(_image_problems(request))
    problems.extend(_family_problems(request, name, rules, family, mode))
    return problems


def _image_field(image: Any, index: int) -> str | dict[str, int]:
    # Kling wants a URL or RAW base64 (never a data: URL). The bytes are already stored
    # with the request: the job names the image by index and submit encodes it.
    return image.url if image.url is not None else {"request_image": index}


def _resolve(ref: Any, request: VideoRequest | None) -> Any:
    if isinstance(ref, dict) and "request_image" in ref:
        if request is None or not 0 <= ref["request_image"] < len(request.images):
            raise ValueError(f"the job refers to image {ref['request_image']} the request does not have")
        return request.images[ref["request_image"]].base64()
    return ref


def resolve_images(body: dict[str, Any], request: VideoRequest | None) -> dict[str, Any]:
    """``body`` with ``{"request_image": i}`` fields replaced by the raw base64 of the
    request's image ``i`` (jobs stored before this scheme hold the base64 itself).
    Call it off the event loop: it encodes every inline image."""
    out = dict(body)
    for key in ("image", "image_tail"):
        if key in out:
            out[key] = _resolve(out[key], request)
    if isinstance(out.get("image_list"), list):
        out["image_list"] = [
            {**item, "image": _resolve(item.get("image"), request)} if isinstance(item, dict) else item
            for item in out["image_list"]
        ]
    return out


def output_size(rules: Rules, mode: str, ratio: str) -> tuple[str, str]:
    """The ``WxH`` and resolution label Kling makes for these rules, mode and ratio."""
    height = rules.height(mode)
    return _PIXELS[height][ratio], f"{height}p"


def _ratio(request: VideoRequest, first: Any | None) -> str:
    # The output follows the first frame's shape; report that when we can see it.
    if first is not None and first.width and first.height:
        return Size(first.width, first.height, first.width, first.height).nearest_ratio(ASPECT_RATIOS)
    return request.size.nearest_ratio(ASPECT_RATIOS) if request.size is not None else DEFAULT_ASPECT_RATIO


def map_request(request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
    """Build the job. ``payload`` = ``{"family": ..., "body": {...}}``; ``submit`` adds
    ``external_task_id`` and ``callback_url`` (and ``derive`` the source's ``video_id``),
    which depend on the call context."""
    problems = validate(request, model, channel)
    if problems:
        raise RequestInvalid(problems)  # validate ran already; a model_map may differ
    vendor_model = channel.vendor_model(model)
    rules = rules_for(model, channel)
    family = family_of(request, rules)
    meta = request.metadata
    mode = rules.mode_for(meta)
    seconds = request.seconds if request.seconds is not None else DEFAULT_SECONDS
    if family == VIDEO_EXTEND:
        body: dict[str, Any] = {
            k: meta[k] for k in _EXTEND_FIELDS if k in meta and (k != "cfg_scale" or rules.cfg_scale)
        }
        if request.prompt:
            body["prompt"] = request.prompt
        seconds = EXTEND_SECONDS
        size, resolution = output_size(rules, mode, _ratio(request, None))
        return VendorJob(
            payload={"family": family, "body": body},
            seconds=seconds,
            size=size,
            resolution=resolution,
            usage=_credits(mode, seconds),
        )
    # Unknown metadata keys go through untouched; our own fields win over them.
    body = {k: v for k, v in meta.items() if k not in _REFUSED and k not in _CONTROL}
    body["model_name"] = vendor_model
    body["duration"] = str(seconds)
    first = None
    if family == TEXT2VIDEO:
        body["prompt"] = request.prompt
        body["aspect_ratio"] = _ratio(request, None)
        ratio = body["aspect_ratio"]
    elif family == IMAGE2VIDEO:
        first = request.images[0] if request.images else None
        if request.images:
            body["image"] = _image_field(request.images[0], 0)
        if len(request.images) > 1:
            body["image_tail"] = _image_field(request.images[1], 1)
        if request.prompt:
            body["prompt"] = request.prompt
        ratio = _ratio(request, first)
    elif family == MULTI_IMAGE2VIDEO:
        body["image_list"] = [{"image": _image_field(im, i)} for i, im in enumerate(request.images)]
        if request.prompt:
            body["prompt"] = request.prompt
        body["aspect_ratio"] = ratio = _ratio(request, None)
    else:
        ratio = _omni_body(request, body)
    size, resolution = output_size(rules, mode, ratio)
    payload: dict[str, Any] = {"family": family, "body": body}
    if family == OMNI_VIDEO and any(v.get("refer_type") == "base" for v in body.get("video_list", [])):
        # A base video is edited: the output is as long as the input, whatever duration says.
        payload["seconds_from_result"] = True
    return VendorJob(payload=payload, seconds=seconds, size=size, resolution=resolution, usage=_credits(mode, seconds))


def _omni_body(request: VideoRequest, body: dict[str, Any]) -> str:
    """Fill an omni-video body's images, videos and ratio; returns the output ratio."""
    meta = request.metadata
    roles = image_roles(request)
    images: list[dict[str, Any]] = []
    first = None
    for i, (image, role) in enumerate(zip(request.images, roles, strict=True)):
        item: dict[str, Any] = {"image": _image_field(image, i)}
        if role != REFERENCE:
            item["type"] = role
        if role == FIRST_FRAME:
            first = image
        images.append(item)
    if images:
        body["image_list"] = images
    videos = [r for r in request.references if r.kind == "video"]
    if videos:
        body["video_list"] = [
            {
                "video_url": v.url,
                "refer_type": meta.get("refer_type", "feature"),
                **({"keep_original_sound": meta["keep_original_sound"]} if "keep_original_sound" in meta else {}),
            }
            for v in videos
        ]
        body.pop("sound", None)  # Kling: sound is off with a reference video
    if request.prompt:
        body["prompt"] = request.prompt
    base = meta.get("refer_type") == "base" and bool(videos)
    ratio = _ratio(request, first)
    if first is None and not base:
        # Required when neither a first frame nor a base video decides the shape.
        body["aspect_ratio"] = ratio
    return ratio


def _credits(mode: str, seconds: int) -> dict[str, Any]:
    rate = CREDITS_PER_5S.get(mode or "std", CREDITS_PER_5S["std"])
    return {"credits": round(rate * seconds / 5, 3)}
