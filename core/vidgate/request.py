"""The unified video request and the rules that turn client JSON into it.

These rules are decided once, here, for every vendor:

* ``seconds`` and ``duration`` are the same field. Each may be an integer or a string of
  digits. If both are given and differ, the request is refused (param ``duration``).
* ``size`` is ``WxH`` (pixels, e.g. ``1280x720``) or a ratio ``W:H`` (e.g. ``16:9``).
* ``image``, ``images`` and ``input_reference`` all mean "visual reference". Each entry
  is an http(s) URL, a ``data:`` URL, or raw base64 (or an uploaded file on
  ``/v1/videos``). Order is kept: ``image`` first, then ``images``, then
  ``input_reference``; by convention the first is the first frame, the second the
  last frame.
* ``metadata`` is an object of vendor-specific keys that the vendor plugin validates and
  passes through. It can never change the billed model.

A plugin receives a :class:`VideoRequest` that already satisfies these rules and adds its
own vendor rules in ``vidgate_validate_request``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import posixpath
import re
import struct
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from .errors import Problem, RequestInvalid

MAX_PROMPT_CHARS = 32_000
MAX_SECONDS = 600
#: What a ``seconds`` string may be (OpenAI sends ``"4"``); the OpenAPI document says the same.
SECONDS_DIGITS = r"[0-9]{1,6}"
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_IMAGES = 8
MAX_DIMENSION = 8192
#: Default bound of the ``metadata`` object (compact JSON, UTF-8); ``[server] max_metadata_bytes``.
MAX_METADATA_BYTES = 64 * 1024

# Control characters other than tab, newline and carriage return (HTML forms send CRLF):
# they mean nothing to a video model, and NUL cannot be stored in PostgreSQL text.
_PROMPT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

_SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX×*]\s*(\d{1,5})\s*$")
_RATIO = re.compile(r"^\s*(\d{1,3})\s*:\s*(\d{1,3})\s*$")
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?(;[^,]*)?,", re.IGNORECASE)

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_image_type(data: bytes) -> str | None:
    """Return the MIME type of a PNG, JPEG, GIF or WebP image, or None."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_dimensions(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of a PNG, JPEG, GIF or WebP image from its header, or None
    when the header does not say (truncated or unusual files)."""
    try:
        return _dimensions(data)
    except (struct.error, IndexError):
        return None


def _dimensions(data: bytes) -> tuple[int, int] | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24 and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    if data.startswith((b"GIF87a", b"GIF89a")) and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return int(w), int(h)
    if len(data) >= 30 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        chunk = data[12:16]
        if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
            w, h = struct.unpack("<HH", data[26:30])
            return int(w & 0x3FFF), int(h & 0x3FFF)
        if chunk == b"VP8L" and data[20] == 0x2F:
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X":
            return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
        return None
    if data.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte before a marker
                i += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            length = struct.unpack(">H", data[i + 2 : i + 4])[0]
            # SOF0..SOF15 except DHT (C4), JPG (C8), DAC (CC) carry the frame size.
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return int(w), int(h)
            i += 2 + length
    return None


@attrs.frozen
class Image:
    """One visual reference.

    Exactly one of ``url`` (an http(s) URL the client gave) and ``data`` (the decoded
    bytes of a data URL, raw base64 or an upload) is set. ``mime_type`` is sniffed from
    the bytes, or taken from the upload or data URL when the bytes are not known.
    ``width``/``height`` are read from the image header by the core (None for URLs,
    which are not fetched at parse time, and for headers that do not say). ``param`` is
    the client's field it came from (``image``, ``images[1]``, ``input_reference``):
    name it in a :class:`~vidgate.errors.Problem` or ``VendorRejected`` about this image,
    and pass it to ``ctx.fetch_image(url, param=image.param)``.
    """

    url: str | None = None
    data: bytes | None = attrs.field(default=None, repr=lambda d: f"<{len(d)} bytes>" if d else "None")
    mime_type: str | None = None
    filename: str | None = None
    width: int | None = None
    height: int | None = None
    param: str = "image"

    @property
    def mime(self) -> str | None:
        """Same as ``mime_type``."""
        return self.mime_type

    def base64(self) -> str:
        """The bytes as plain base64 (no ``data:`` prefix). Only for inline images."""
        if self.data is None:
            raise ValueError("this image is a URL; fetch it first")
        return base64.b64encode(self.data).decode("ascii")

    def data_url(self) -> str:
        return f"data:{self.mime_type or 'application/octet-stream'};base64,{self.base64()}"


#: File extensions (of a URL's path) that make an ``input_reference`` a video or audio reference.
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".webm", ".mkv", ".m4v", ".avi"})
AUDIO_EXTENSIONS = frozenset({".mp3", ".wav", ".m4a", ".aac", ".ogg", ".oga", ".flac", ".opus"})
#: Largest inline (data URL) video or audio reference; send bigger ones as URLs.
MAX_REFERENCE_BYTES = MAX_IMAGE_BYTES


@attrs.frozen
class Reference:
    """A video or audio "reference material" from ``input_reference``.

    ``kind`` is ``"video"`` or ``"audio"``. As with :class:`Image`, exactly one of ``url``
    and ``data`` (a decoded data URL) is set; ``param`` is the client's field
    (``input_reference`` or ``input_reference[2]``). The core refuses references a
    model does not declare (:attr:`vidgate.Model.reference_videos`,
    :attr:`~vidgate.Model.reference_audio`) with a 400 naming ``param``, so a plugin sees
    only kinds its model takes.
    """

    kind: str
    url: str | None = None
    data: bytes | None = attrs.field(default=None, repr=lambda d: f"<{len(d)} bytes>" if d else "None")
    mime_type: str | None = None
    param: str = "input_reference"


def reference_kind(value: str) -> str | None:
    """``"video"``/``"audio"`` when an ``input_reference`` string is one (by the URL's
    file extension or a data URL's declared type), else None (an image)."""
    value = value.strip()
    if m := _DATA_URL.match(value):
        declared = (m[1] or "").lower()
        return "video" if declared.startswith("video/") else "audio" if declared.startswith("audio/") else None
    if value.lower().startswith(("http://", "https://")):
        path = value.split("#", 1)[0].split("?", 1)[0]
        ext = posixpath.splitext(path.rsplit("/", 1)[-1])[1].lower()
        return "video" if ext in VIDEO_EXTENSIONS else "audio" if ext in AUDIO_EXTENSIONS else None
    return None


def parse_reference(value: str, kind: str, param: str, problems: list[Problem]) -> Reference | None:
    """Parse a video or audio ``input_reference`` (see :func:`reference_kind`)."""
    value = value.strip()
    if value.lower().startswith(("http://", "https://")):
        if len(value) > 4096:
            problems.append(Problem(param, "URL is too long"))
            return None
        if _PROMPT_CONTROL.search(value) or "\t" in value or "\n" in value or "\r" in value:
            problems.append(Problem(param, "URL contains control characters"))
            return None
        return Reference(kind=kind, url=value, param=param)
    m = _DATA_URL.match(value)
    assert m is not None
    if not (m[2] or "").lower().endswith("base64"):
        problems.append(Problem(param, "data URLs must be base64-encoded"))
        return None
    encoded = value[m.end() :]
    if len(encoded) > MAX_REFERENCE_BYTES * 4 // 3 + 8:
        problems.append(
            Problem(
                param,
                f"inline {kind} is larger than {MAX_REFERENCE_BYTES // (1024 * 1024)} MiB; send a URL",
                "too_large",
            )
        )
        return None
    try:
        data = base64.b64decode(encoded.replace("\n", "").replace("\r", ""), validate=True)
    except (binascii.Error, ValueError):
        problems.append(Problem(param, "is not valid base64"))
        return None
    return Reference(kind=kind, data=data, mime_type=m[1].lower(), param=param)


@attrs.frozen
class Size:
    """A requested size: pixels (``width``/``height`` set) or only an aspect ratio."""

    ratio_w: int
    ratio_h: int
    width: int | None = None
    height: int | None = None

    @property
    def text(self) -> str:
        if self.width is not None:
            return f"{self.width}x{self.height}"
        return f"{self.ratio_w}:{self.ratio_h}"

    @property
    def ratio(self) -> float:
        return self.ratio_w / self.ratio_h

    @property
    def is_portrait(self) -> bool:
        return self.ratio_h > self.ratio_w

    def nearest_ratio(self, choices: Iterable[str]) -> str:
        """The ``W:H`` string among ``choices`` closest to this size (in log space)."""

        def distance(choice: str) -> float:
            w, h = (int(x) for x in choice.split(":"))
            return abs(math.log(self.ratio) - math.log(w / h))

        return min(choices, key=distance)

    @classmethod
    def parse(cls, value: str) -> Size | None:
        if m := _SIZE.match(value):
            w, h = int(m[1]), int(m[2])
            if not (0 < w <= MAX_DIMENSION and 0 < h <= MAX_DIMENSION):
                return None
            g = math.gcd(w, h)
            return cls(w // g, h // g, w, h)
        if m := _RATIO.match(value):
            w, h = int(m[1]), int(m[2])
            if w == 0 or h == 0:
                return None
            g = math.gcd(w, h)
            return cls(w // g, h // g)
        return None


@attrs.frozen
class VideoRequest:
    """A validated unified request, as every vendor plugin receives it.

    ``model`` is the public model name the client asked for (and is billed for);
    ``seconds`` and ``size`` are None when the client left them to the vendor's default
    (the plugin then decides, and reports what it will make in its ``VendorJob``).

    ``seconds_given`` says whether the client sent ``seconds``. It differs from
    ``seconds is not None`` only for a derived task: an extension without ``seconds``
    carries the source's length in ``seconds`` (the default for vendors that extend by
    a chosen length) with ``seconds_given`` False, so a vendor whose extension length is
    fixed makes its own and refuses only a length the client asked for.
    """

    model: str
    prompt: str
    seconds: int | None = None
    size: Size | None = None
    images: tuple[Image, ...] = ()
    metadata: dict[str, Any] = attrs.field(factory=dict)
    remix_of: str | None = None  # public id of the source task, for remixes
    # Derived tasks (remix, extend, edit): the operation and the source's public id.
    operation: str | None = None
    derived_from: str | None = None
    #: Video and audio reference materials from ``input_reference``, in order.
    references: tuple[Reference, ...] = ()
    #: Whether the client sent ``seconds`` (False when the core filled it in).
    seconds_given: bool = attrs.field(
        default=attrs.Factory(lambda self: self.seconds is not None, takes_self=True), kw_only=True
    )

    @property
    def image(self) -> Image | None:
        """The first visual reference, if any."""
        return self.images[0] if self.images else None


def prompt_problem(prompt: str) -> tuple[str, str] | None:
    """Why ``prompt`` cannot be accepted, as ``(message, code)``, or None."""
    if len(prompt) > MAX_PROMPT_CHARS:
        return f"is longer than {MAX_PROMPT_CHARS} characters", "too_long"
    if m := _PROMPT_CONTROL.search(prompt):
        return f"contains the control character U+{ord(m[0]):04X} (only tab and newlines are allowed)", "invalid_value"
    return None


def _nul_path(value: Any, path: str) -> str | None:
    """The path of the first key or string under ``value`` holding a NUL character."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                return path
            if found := _nul_path(item, f"{path}.{key}"):
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if found := _nul_path(item, f"{path}[{i}]"):
                return found
    return None


def metadata_size(metadata: Mapping[str, Any]) -> int:
    """The size of ``metadata`` as compact UTF-8 JSON, the measure of ``max_metadata_bytes``."""
    return len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _as_seconds(value: Any, param: str, problems: list[Problem]) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        problems.append(Problem(param, "must be a whole number of seconds"))
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(SECONDS_DIGITS, value.strip()):
        number = int(value.strip())
    else:
        problems.append(Problem(param, f"must be a whole number of seconds, got {value!r:.40}"))
        return None
    if not 1 <= number <= MAX_SECONDS:
        problems.append(Problem(param, f"must be between 1 and {MAX_SECONDS}"))
        return None
    return number


def parse_image(value: Any, param: str, problems: list[Problem]) -> Image | None:
    """Parse one visual reference given as a string (URL, data URL or raw base64)."""
    if isinstance(value, Mapping):
        # The OpenAI object form: {"image_url": "..."} (file ids are OpenAI-only).
        if "image_url" in value and isinstance(value["image_url"], str):
            return parse_image(value["image_url"], f"{param}.image_url", problems)
        if "file_id" in value:
            problems.append(
                Problem(f"{param}.file_id", "file ids are not supported; send image_url or upload the file")
            )
            return None
        problems.append(Problem(param, 'must be a URL, a data URL, base64, or {"image_url": ...}'))
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append(Problem(param, "must be a non-empty string (URL, data URL or base64)"))
        return None
    value = value.strip()
    if value.lower().startswith(("http://", "https://")):
        if len(value) > 4096:
            problems.append(Problem(param, "URL is too long"))
            return None
        if _PROMPT_CONTROL.search(value) or "\t" in value or "\n" in value or "\r" in value:
            problems.append(Problem(param, "URL contains control characters"))
            return None
        return Image(url=value, param=param)
    declared = None
    if m := _DATA_URL.match(value):
        declared = m[1]
        if not (m[2] or "").lower().endswith("base64"):
            problems.append(Problem(param, "data URLs must be base64-encoded"))
            return None
        value = value[m.end() :]
    if len(value) > MAX_IMAGE_BYTES * 4 // 3 + 8:
        problems.append(Problem(param, f"image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB", "too_large"))
        return None
    try:
        data = base64.b64decode(value.replace("\n", "").replace("\r", ""), validate=True)
    except (binascii.Error, ValueError):
        problems.append(Problem(param, "is neither an http(s) URL, a data URL, nor valid base64"))
        return None
    return image_from_bytes(data, param, problems, declared_type=declared)


def image_from_bytes(
    data: bytes, param: str, problems: list[Problem], *, declared_type: str | None = None, filename: str | None = None
) -> Image | None:
    """Check uploaded or decoded bytes are an image we can pass on, and wrap them."""
    if len(data) > MAX_IMAGE_BYTES:
        problems.append(Problem(param, f"image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB", "too_large"))
        return None
    mime = sniff_image_type(data)
    if mime is None:
        problems.append(Problem(param, "does not decode as a PNG, JPEG, WebP or GIF image"))
        return None
    dims = image_dimensions(data)
    return Image(
        data=data,
        mime_type=mime or declared_type,
        filename=filename,
        param=param,
        width=dims[0] if dims else None,
        height=dims[1] if dims else None,
    )


def parse_request(
    body: Any, *, uploads: Iterable[Image] = (), max_metadata_bytes: int = MAX_METADATA_BYTES
) -> VideoRequest:
    """Apply the unified rules to a decoded JSON body; raise :class:`RequestInvalid`.

    ``max_metadata_bytes`` bounds ``metadata`` (compact UTF-8 JSON) on its own, apart
    from the images and the whole body.
    """
    if not isinstance(body, Mapping):
        raise RequestInvalid([Problem(None, "the request body must be a JSON object", "invalid_json")])
    problems: list[Problem] = []

    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        problems.append(Problem("model", "is required and must be a non-empty string", "missing_required_parameter"))
        model = ""

    prompt = body.get("prompt", "")
    if prompt is None:
        prompt = ""
    if not isinstance(prompt, str):
        problems.append(Problem("prompt", "must be a string"))
        prompt = ""
    elif (bad := prompt_problem(prompt)) is not None:
        problems.append(Problem("prompt", *bad))

    seconds = _as_seconds(body.get("seconds"), "seconds", problems)
    duration = _as_seconds(body.get("duration"), "duration", problems)
    if seconds is not None and duration is not None and seconds != duration:
        problems.append(Problem("duration", f"disagrees with seconds ({duration} != {seconds}); send one of them"))
    seconds = seconds if seconds is not None else duration

    size = None
    raw_size = body.get("size")
    if raw_size is not None:
        if not isinstance(raw_size, str) or (size := Size.parse(raw_size)) is None:
            problems.append(
                Problem("size", f"must be WxH (e.g. 1280x720) or a ratio W:H (e.g. 16:9), got {raw_size!r:.40}")
            )

    images: list[Image] = []
    if (raw := body.get("image")) is not None:
        if (img := parse_image(raw, "image", problems)) is not None:
            images.append(img)
    if (raw := body.get("images")) is not None:
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list):
            problems.append(Problem("images", "must be a list of images"))
        else:
            for i, item in enumerate(raw):
                if (img := parse_image(item, f"images[{i}]", problems)) is not None:
                    images.append(img)
    references: list[Reference] = []
    if (raw := body.get("input_reference")) is not None:
        entries: list[tuple[int | None, Any]] = list(enumerate(raw)) if isinstance(raw, list) else [(None, raw)]
        for at, item in entries:
            param = "input_reference" if at is None else f"input_reference[{at}]"
            kind = reference_kind(item) if isinstance(item, str) else None
            if kind is not None:
                if (ref := parse_reference(item, kind, param, problems)) is not None:
                    references.append(ref)
            elif (img := parse_image(item, param, problems)) is not None:
                images.append(img)
    images.extend(uploads)
    if len(images) > MAX_IMAGES:
        problems.append(Problem("images", f"at most {MAX_IMAGES} visual references are accepted"))

    if not prompt.strip() and not images and not references:
        problems.append(Problem("prompt", "is required when no image is given", "missing_required_parameter"))

    metadata = body.get("metadata")
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, Mapping):
        problems.append(Problem("metadata", "must be a JSON object of vendor-specific keys"))
        metadata = {}
    elif "model" in metadata:
        # The billed model is the top-level one; no vendor key may replace it.
        problems.append(Problem("metadata.model", "cannot change the model; set the top-level model instead"))
    elif (meta_bytes := metadata_size(metadata)) > max_metadata_bytes:
        problems.append(
            Problem(
                "metadata", f"is {meta_bytes} bytes of JSON; at most {max_metadata_bytes} are accepted", "too_large"
            )
        )
    elif (where := _nul_path(metadata, "metadata")) is not None:
        # PostgreSQL text cannot hold U+0000, and no vendor means anything by it.
        problems.append(Problem(where, "contains a NUL character (U+0000)"))

    if problems:
        raise RequestInvalid(problems)
    return VideoRequest(
        model=model.strip(),
        prompt=prompt,
        seconds=seconds,
        size=size,
        images=tuple(images),
        metadata=dict(metadata),
        references=tuple(references),
    )
