"""Declarative model catalogues, for vendors that resell many models behind one protocol.

A queue vendor (one submit/poll/cancel protocol, hundreds of models) differs per model only
in its input schema and in where the video sits in its output. This module describes that
as data, so a plugin writes the protocol once and lists its models as :class:`Entry`
records, and an operator adds a model the plugin does not know in the channel's config
(``[channels.options.models.NAME]``, or a bare ``[channels.model_map]`` reference), without
code, checked as strictly as the rest of the config.

A plugin subclasses :class:`Entry` with its vendor's own keys (its model or app ids, its
field-name defaults, :attr:`Entry.tiers`, the inputs only the gateway may set) and builds a
:class:`Catalogue` of its built-in entries. The kit then does the rest:

* :meth:`Catalogue.channel_problems` / :meth:`Catalogue.channel_models` for
  ``validate_channel`` and ``channel_models`` (``vidgate_channel_models``);
* :meth:`Catalogue.entry_for` -> :func:`validate` and :func:`map_job` for ``validate`` and
  ``map_request`` (the unified request -> the model's input, and what is billed);
* :func:`vendor_input` in ``submit`` (the input with the request's images filled in);
* :func:`unified_error` to name the client's field in a refusal naming a model input;
* :func:`find_video` to find the video URL in the model's output.

The job's payload carries ``input``, ``images`` (input field -> image index),
``video_path`` and ``params`` (input field -> the client's field) besides what the plugin
adds.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

import attrs
import cattrs

from .errors import Problem, RequestInvalid, VendorError, VendorRejected
from .request import VideoRequest
from .vendor import CallContext, Channel, Model, VendorJob

__all__ = [
    "DURATION_FORMATS",
    "TIERS",
    "Catalogue",
    "Entry",
    "config_messages",
    "find_video",
    "map_job",
    "optional",
    "strict_converter",
    "unified_error",
    "unified_params",
    "validate",
    "vendor_input",
]

#: How a model types its duration input: ``5``, ``"5"`` or ``"5s"``.
DURATION_FORMATS = ("integer", "string", "seconds")
#: Short side in pixels of the usual resolution tiers, for the billed size (``720p`` ->
#: ``1280x720`` at 16:9). A vendor whose tiers differ sets :attr:`Entry.tiers`.
TIERS: Mapping[str, int] = {
    "360p": 360,
    "480p": 480,
    "512p": 512,
    "540p": 540,
    "580p": 580,
    "720p": 720,
    "768p": 768,
    "1080p": 1080,
}

#: The client's field for each of an entry's mapped inputs, and what a client is told
#: when it tries to set one through ``metadata``.
_IMAGE_FIELDS = ("image_field", "last_frame_field")
_BILLED_FIELDS = (("duration_field", "seconds"), ("resolution_field", "size"), ("aspect_ratio_field", "size"))


def optional(value: str | None) -> str | None:
    """attrs converter for an input name: TOML has no null, so ``""`` in an operator's
    table means "the model has no such input" (None)."""
    return value or None


@attrs.frozen(kw_only=True)
class Entry:
    """How one public model maps onto a vendor model's input and output: the
    vendor-neutral keys. A plugin subclasses it with its own (model/app ids) and may
    re-declare a key to change its default (``image_field = "image_url"``).

    * ``*_field``: the model's input names (None = the model has no such input).
    * ``durations`` / ``resolutions`` / ``aspect_ratios``: allowed values (empty = any,
      and then nothing is sent unless the client asks); ``default_*``: what the model
      makes when the field is left out (billed).
    * ``duration_format``: ``integer`` (``5``), ``string`` (``"5"``) or ``seconds`` (``"5s"``).
    * ``video_path``: where the video URL is in the output (:func:`find_video`).
    * ``input``: fixed extra input sent with every request (``{generate_audio = false}``).
    * ``description``: shown in ``GET /v1/models``.
    """

    #: Short side in pixels per resolution tier (the billed size); see :data:`TIERS`.
    tiers: ClassVar[Mapping[str, int]] = TIERS
    #: Inputs the gateway sets itself (input name -> why), refused in ``metadata``.
    gateway_inputs: ClassVar[Mapping[str, str]] = {}
    #: Inputs that change what is billed, refused in ``metadata`` unless mapped.
    billed_inputs: ClassVar[tuple[str, ...]] = ("num_frames", "frames_per_second")

    prompt_field: str = "prompt"
    image_field: str | None = attrs.field(default="image", converter=optional)
    last_frame_field: str | None = attrs.field(default=None, converter=optional)
    duration_field: str | None = attrs.field(default="duration", converter=optional)
    duration_format: str = "integer"
    durations: tuple[int, ...] = ()
    default_duration: int = 5
    resolution_field: str | None = attrs.field(default=None, converter=optional)
    resolutions: tuple[str, ...] = ()
    default_resolution: str | None = attrs.field(default=None, converter=optional)
    aspect_ratio_field: str | None = attrs.field(default="aspect_ratio", converter=optional)
    aspect_ratios: tuple[str, ...] = ()
    default_aspect_ratio: str | None = attrs.field(default=None, converter=optional)
    video_path: str = ""
    input: dict[str, Any] = attrs.field(factory=dict)
    description: str = ""

    def problems(self) -> list[tuple[str, str]]:
        """``(key, message)`` for what makes this entry unusable; a subclass adds its own
        keys' checks to these."""
        out = []
        if self.duration_format not in DURATION_FORMATS:
            default = attrs.fields_dict(type(self))["duration_format"].default
            formats = sorted(DURATION_FORMATS, key=lambda f: f != default)  # this vendor's default first
            out.append(("duration_format", f"must be one of {', '.join(formats)}"))
        if self.durations and self.default_duration not in self.durations:
            out.append(("default_duration", f"must be one of {list(self.durations)}"))
        for key, values in (("default_resolution", self.resolutions), ("default_aspect_ratio", self.aspect_ratios)):
            value = getattr(self, key)
            if value is not None and values and value not in values:
                out.append((key, f"must be one of {list(values)}"))
        return out

    def as_model(self, name: str) -> Model:
        """The public :class:`~vidgate.Model` ``name`` this entry serves (a subclass
        says its vendor model and which modes it runs)."""
        raise NotImplementedError

    def model_rules(self, name: str, vendor_model: str | None, *, text: bool, image: bool) -> Model:
        """A :class:`~vidgate.Model` with this entry's durations, for :meth:`as_model`."""
        return Model(
            name,
            vendor_model=vendor_model,
            description=self.description,
            seconds=self.durations,
            default_seconds=self.default_duration,
            text_to_video=text,
            image_to_video=image,
        )


E = TypeVar("E", bound=Entry)


class Catalogue(Mapping[str, E]):
    """A vendor's built-in entries (a read-only mapping of public name -> entry) and
    what each channel adds in its config.

    * ``entry_type``: the plugin's :class:`Entry` subclass, what an operator's
      ``[channels.options.models.NAME]`` table is structured into.
    * ``kind``: what one entry is called in messages (``"Acme model"``).
    * ``from_ref``: the entry for a bare ``model_map`` value naming a model the catalogue
      does not know (the vendor's common field names).
    * ``repoint``: a catalogue entry re-pointed by a ``model_map`` value (another vendor
      model or version, same rules).
    * ``ref_problem``: what is wrong with a ``model_map`` value, or None.
    """

    def __init__(
        self,
        entries: Mapping[str, E],
        entry_type: type[E],
        *,
        kind: str,
        from_ref: Callable[[str], E],
        repoint: Callable[[E, str], E],
        ref_problem: Callable[[str], str | None] = lambda ref: None,
    ) -> None:
        self._entries = dict(entries)
        self.entry_type = entry_type
        self.kind = kind
        self.from_ref = from_ref
        self.repoint = repoint
        self.ref_problem = ref_problem
        self._converter = strict_converter()

    def __getitem__(self, name: str) -> E:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def models(self) -> tuple[Model, ...]:
        """The built-in entries as public models (a plugin's ``models``)."""
        return tuple(entry.as_model(name) for name, entry in self.items())

    def parse(self, raw: Any) -> tuple[dict[str, E], list[str]]:
        """``options.models`` -> (valid entries by name, problems naming
        ``options.models.NAME.KEY``)."""
        if raw is None:
            return {}, []
        if not isinstance(raw, Mapping):
            return {}, [f"options.models: must be a table of model name -> {self.kind} mapping"]
        entries: dict[str, E] = {}
        problems: list[str] = []
        for name, table in raw.items():
            where = f"options.models.{name}"
            if not isinstance(table, Mapping):
                problems.append(f"{where}: must be a table")
                continue
            try:
                entry = self._converter.structure(dict(table), self.entry_type)
            except (cattrs.BaseValidationError, TypeError, ValueError) as exc:
                problems.extend(config_messages(exc, where))
                continue
            bad = entry.problems()
            problems.extend(f"{where}.{key}: {message}" for key, message in bad)
            if not bad:
                entries[str(name)] = entry
        return entries, problems

    def channel_problems(self, channel: Channel) -> list[str]:
        """What is wrong with ``channel``'s ``options.models`` and ``model_map``, each
        naming its key (for ``validate_channel``)."""
        _, problems = self.parse(channel.options.get("models"))
        for name, ref in channel.model_map.items():
            if message := self.ref_problem(str(ref)):
                problems.append(f"model_map.{name}: {message}")
        return problems

    def channel_entries(self, channel: Channel) -> dict[str, E]:
        """The entries ``channel`` adds: its ``options.models`` and the ``model_map``
        entries naming a model not in the catalogue (valid channels only)."""
        entries, _ = self.parse(channel.options.get("models"))
        for name, ref in channel.model_map.items():
            if name not in self and name not in entries:
                entries[name] = self.from_ref(ref)
        return entries

    def channel_models(self, channel: Channel) -> list[Model]:
        """:meth:`channel_entries` as public models (for ``channel_models``)."""
        return [entry.as_model(name) for name, entry in self.channel_entries(channel).items()]

    def entry_for(self, name: str, channel: Channel) -> E:
        """The entry for public ``name`` on ``channel``: the channel's own wins; a
        ``model_map`` value for a catalogue name re-points that entry."""
        own = self.channel_entries(channel)
        if name in own:
            return own[name]
        entry = self[name]
        if name in channel.model_map:
            return self.repoint(entry, channel.model_map[name])
        return entry


def strict_converter() -> cattrs.Converter:
    """A converter as strict as the gateway's config loader: unknown keys are errors, no
    bool where a number goes, no number where a string goes. (Not ``vidgate.config``'s own
    converter: there a bool field of a class structured later dispatches to its number
    hook, since ``bool`` subclasses ``int``, and ``true`` is refused.)"""
    conv = cattrs.Converter(forbid_extra_keys=True)

    def number(value: Any, cls: type) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"expected a number, got {value!r}")
        if cls is int and isinstance(value, float):
            raise TypeError(f"expected a whole number, got {value!r}")
        return cls(value)

    def exact(kind: type) -> Callable[[Any, type], Any]:
        def check(value: Any, _: type) -> Any:
            if not isinstance(value, kind):
                raise TypeError(f"expected {kind.__name__}, got {value!r}")
            return value

        return check

    conv.register_structure_hook(int, number)
    conv.register_structure_hook(float, number)
    conv.register_structure_hook(bool, exact(bool))
    conv.register_structure_hook(str, exact(str))
    return conv


def config_messages(exc: Exception, where: str) -> list[str]:
    """cattrs' messages as ``KEY: what is wrong``, each key relative to the channel."""
    out: list[str] = []
    for message in cattrs.transform_error(exc, path=where):
        text, _, path = message.rpartition(" @ ")
        if text.startswith("extra fields found (") and text.endswith(")"):
            out.extend(f"{path}.{name.strip()}: unknown key" for name in text[20:-1].split(","))
        else:
            out.append(f"{path}: {text}" if text else message)
    return out


# -- the unified request -> the model's input ---------------------------------------------


def _ratio(request: VideoRequest, entry: Entry) -> str | None:
    """The requested ratio; for a pixel size, the entry's ratio it rounds to (854x480 is
    16:9) when within 2 %, so pixel sizes are not refused for a rounding."""
    size = request.size
    if size is None:
        return None
    exact = f"{size.ratio_w}:{size.ratio_h}"
    if size.width is None or not entry.aspect_ratios or exact in entry.aspect_ratios:
        return exact
    nearest = size.nearest_ratio(entry.aspect_ratios)
    w, h = (int(x) for x in nearest.split(":"))
    return nearest if abs(math.log(size.ratio / (w / h))) < 0.02 else exact


def _tier(request: VideoRequest) -> str | None:
    if request.size is None or request.size.width is None or request.size.height is None:
        return None
    return f"{min(request.size.width, request.size.height)}p"


def _pixels(tiers: Mapping[str, int], tier: str | None, ratio: str | None) -> str | None:
    if tier is None or tier not in tiers or ratio is None:
        return None
    w, h = (int(x) for x in ratio.split(":"))
    short = tiers[tier]
    long = round(short * max(w, h) / min(w, h) / 2) * 2
    return f"{long}x{short}" if w >= h else f"{short}x{long}"


def _owned(entry: Entry) -> dict[str, str]:
    # Inputs a client may not set through metadata: the unified fields carry them, or
    # they decide what is billed.
    owned = {entry.prompt_field: "use the top-level prompt field", **entry.gateway_inputs}
    for key in _IMAGE_FIELDS:
        if field := getattr(entry, key):
            owned[field] = "use the top-level image/images/input_reference fields"
    for key, top in _BILLED_FIELDS:
        if field := getattr(entry, key):
            owned[field] = f"use the top-level {top} field; it decides what is billed"
    for field in entry.billed_inputs:
        owned.setdefault(field, "changes what is billed; not settable through metadata")
    return owned


def unified_params(entry: Entry) -> dict[str, str]:
    """The client's field for each input the vendor may name in a refusal."""
    names = {entry.prompt_field: "prompt"}
    for key, param in (("image_field", "image"), ("last_frame_field", "images[1]"), *_BILLED_FIELDS):
        if field := getattr(entry, key):
            names[field] = param
    return names


def validate(request: VideoRequest, entry: Entry) -> list[Problem]:
    """What the entry's rules refuse in ``request``, each naming the client's field
    (``seconds`` is the core's: :meth:`Entry.as_model` declares the durations)."""
    problems = [Problem(f"metadata.{k}", why) for k, why in _owned(entry).items() if k in request.metadata]
    if len(request.images) > 1:
        if not entry.last_frame_field:
            problems.append(Problem(request.images[1].param, "this model takes one image (no last frame)"))
        elif len(request.images) > 2:
            problems.append(Problem(request.images[2].param, "at most two images: the first and the last frame"))
    ratio, tier = _ratio(request, entry), _tier(request)
    if ratio is not None:
        if entry.aspect_ratio_field:
            if entry.aspect_ratios and ratio not in entry.aspect_ratios:
                problems.append(Problem("size", f"aspect ratio must be one of {', '.join(entry.aspect_ratios)}"))
        elif tier is None:
            problems.append(Problem("size", "this model takes no aspect ratio; leave size out"))
    if tier is not None:
        offered = entry.resolutions if entry.resolution_field else tuple(filter(None, [entry.default_resolution]))
        if offered and tier not in offered:
            sides = ", ".join(t.removesuffix("p") for t in offered)
            problems.append(Problem("size", f"resolution {tier} is not offered: the short side must be {sides}"))
    return problems


def _duration(entry: Entry, seconds: int) -> Any:
    if entry.duration_format == "string":
        return str(seconds)
    if entry.duration_format == "seconds":
        return f"{seconds}s"
    return seconds


def map_job(request: VideoRequest, entry: Entry, payload: Mapping[str, Any]) -> VendorJob:
    """The job for ``request`` on ``entry`` (``RequestInvalid`` for what :func:`validate`
    refuses): ``payload`` plus ``input`` (the model's input, images by index in
    ``images``, resolved by :func:`vendor_input`), ``video_path`` and ``params``; billed
    on the requested (else default) seconds, resolution tier and the size they make."""
    if problems := validate(request, entry):
        raise RequestInvalid(problems)
    seconds = request.seconds or entry.default_duration
    body: dict[str, Any] = {**entry.input, **request.metadata, entry.prompt_field: request.prompt}
    if entry.duration_field and (request.seconds is not None or entry.durations):
        body[entry.duration_field] = _duration(entry, seconds)
    ratio, tier = _ratio(request, entry), _tier(request)
    ratio = ratio if entry.aspect_ratio_field else None
    if entry.aspect_ratio_field and ratio:
        body[entry.aspect_ratio_field] = ratio
    elif entry.aspect_ratio_field and entry.default_aspect_ratio and not request.images:
        # Image to video takes the image's ratio unless the client asks for one.
        body[entry.aspect_ratio_field] = entry.default_aspect_ratio
    resolution = tier if entry.resolution_field and tier else entry.default_resolution
    if entry.resolution_field and resolution:
        body[entry.resolution_field] = resolution
    images: dict[str, int] = {}
    if request.images:
        assert entry.image_field is not None  # the core refuses images first (Model.image_to_video)
        images[entry.image_field] = 0
        if len(request.images) > 1 and entry.last_frame_field:
            images[entry.last_frame_field] = 1
    shown = ratio or entry.default_aspect_ratio
    size = _pixels(entry.tiers, resolution, shown) or (shown or "")
    return VendorJob(
        payload={
            **payload,
            "input": body,
            "images": images,
            "video_path": entry.video_path,
            "params": unified_params(entry),
        },
        seconds=seconds,
        size=size,
        resolution=resolution,
    )


async def vendor_input(job: VendorJob, ctx: CallContext) -> dict[str, Any]:
    """The job's ``input`` with the request's images filled in (``submit``): an image
    given as a URL is passed as is (the vendor fetches it), an inline one as a ``data:``
    URI, encoded off the event loop."""
    body = dict(job.payload["input"])
    for field, index in job.payload.get("images", {}).items():
        assert ctx.request is not None, "submit always has the request"
        image = ctx.request.images[int(index)]
        if image.url:
            body[field] = image.url
        else:
            data = await asyncio.to_thread(image.base64)
            body[field] = f"data:{image.mime or 'image/png'};base64,{data}"
    return body


def unified_error(err: VendorError, job: VendorJob) -> VendorError:
    """``err`` naming the client's field (``seconds``, ``size``, ...) where the vendor's
    refusal names a model input (``metadata.<input>`` for an input not mapped)."""
    if isinstance(err, VendorRejected) and err.param:
        params = job.payload.get("params") or {}
        err.param = params.get(err.param, f"metadata.{err.param}")
    return err


def find_video(output: Any, path: str) -> str | None:
    """The video URL in a model's ``output``: the value at dotted ``path`` (a numeric
    part indexes a list; empty = the output itself); a list found there gives its first
    item, a file object (``{"url": ...}``) its ``url``. None when there is none."""
    node = output
    for part in path.split(".") if path else ():
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return None
    if isinstance(node, list):
        node = node[0] if node else None
    if isinstance(node, dict):
        node = node.get("url")
    return node if isinstance(node, str) and node else None
