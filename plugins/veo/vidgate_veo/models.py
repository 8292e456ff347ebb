"""The Veo models this plugin serves and what each model family can make.

Public names are short (``veo-3``); Google's own names (``veo-3.0-generate-001``) are
registered as aliases so clients that already use them keep working.
"""

from __future__ import annotations

import attrs

from vidgate import Model


@attrs.frozen
class Family:
    """What one Veo generation accepts (from Google's model docs, vendor-protocols §3.2)."""

    name: str
    seconds: tuple[int, ...]
    default_seconds: int = 8
    # Veo 2 has no ``resolution`` parameter at all: it always makes 720p.
    resolutions: tuple[str, ...] = ("720p", "1080p")


VEO2 = Family("veo-2", seconds=(5, 6, 7, 8), resolutions=("720p",))
VEO3 = Family("veo-3", seconds=(4, 6, 8))
VEO31 = Family("veo-3.1", seconds=(4, 6, 8), resolutions=("720p", "1080p", "4k"))

#: vendor model name -> family (also used by the fake, so both agree on the rules).
FAMILIES: dict[str, Family] = {
    "veo-2.0-generate-001": VEO2,
    "veo-3.0-generate-001": VEO3,
    "veo-3.0-fast-generate-001": VEO3,
    "veo-3.1-generate-preview": VEO31,
    "veo-3.1-fast-generate-preview": VEO31,
}


def family_of(vendor_model: str) -> Family:
    """The family of a vendor model name; unknown names (a channel ``model_map`` to a
    newer model) are judged by their prefix, defaulting to the Veo 3 rules."""
    if vendor_model in FAMILIES:
        return FAMILIES[vendor_model]
    if vendor_model.startswith("veo-2"):
        return VEO2
    if vendor_model.startswith("veo-3.1"):
        return VEO31
    return VEO3


def _model(name: str, vendor: str, description: str) -> Model:
    fam = FAMILIES[vendor]
    return Model(
        name,
        vendor_model=vendor,
        aliases=(vendor,),
        description=description,
        seconds=fam.seconds,
        default_seconds=fam.default_seconds,
    )


MODELS: tuple[Model, ...] = (
    _model("veo-2", "veo-2.0-generate-001", "Google Veo 2: 5-8 s, 720p, no audio"),
    _model("veo-3", "veo-3.0-generate-001", "Google Veo 3: 4/6/8 s, 720p or 1080p, audio"),
    _model("veo-3-fast", "veo-3.0-fast-generate-001", "Google Veo 3 Fast: 4/6/8 s"),
    _model("veo-3.1", "veo-3.1-generate-preview", "Google Veo 3.1 (preview): 4/6/8 s, first+last frame"),
    _model("veo-3.1-fast", "veo-3.1-fast-generate-preview", "Google Veo 3.1 Fast (preview): 4/6/8 s"),
)
