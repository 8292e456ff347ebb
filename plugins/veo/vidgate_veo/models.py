"""The Veo models this plugin serves and what each model family can make.

Public names are short (``veo-3.1``); Google's own names (``veo-3.1-generate-001``) are
registered as aliases so clients that already use them keep working. ``veo-3`` is an
alias of the current GA model (``veo-3.1``): Veo 3.0 was retired on 2026-06-30
(vendor-protocols-2026 §2.2), and configs seeded with ``veo-3`` keep working.
"""

from __future__ import annotations

import attrs

from vidgate import Model


@attrs.frozen
class Family:
    """What one Veo generation accepts (vendor-protocols-2026 §2.2)."""

    name: str
    seconds: tuple[int, ...]
    default_seconds: int = 8
    # Veo 2 has no ``resolution`` parameter at all: it always makes 720p.
    resolutions: tuple[str, ...] = ("720p", "1080p")
    #: Most ``referenceImages`` (asset references) one request may carry; 0 = none.
    reference_images: int = 0
    #: Whether the family extends a video (``instances[0].video``).
    extend: bool = False


VEO2 = Family("veo-2", seconds=(5, 6, 7, 8), resolutions=("720p",))
VEO3 = Family("veo-3", seconds=(4, 6, 8))
# Veo 3.1 GA on Vertex: 720p/1080p ("4k" is documented for 3.1 on the Gemini API only and
# unconfirmed on Vertex, so it is not offered), up to 3 asset references, extension.
VEO31 = Family("veo-3.1", seconds=(4, 6, 8), reference_images=3, extend=True)

#: vendor model name -> family (also used by the fake, so both agree on the rules).
FAMILIES: dict[str, Family] = {
    "veo-3.1-generate-001": VEO31,
    "veo-3.1-fast-generate-001": VEO31,
    # Retired everywhere (404); kept so a relay channel that still maps to them is judged
    # by the rules those models had.
    "veo-2.0-generate-001": VEO2,
    "veo-3.0-generate-001": VEO3,
    "veo-3.0-fast-generate-001": VEO3,
    "veo-3.1-generate-preview": VEO31,
    "veo-3.1-fast-generate-preview": VEO31,
}

#: Ids Google retired: Veo 2.0/3.0 on 2026-06-30, the 3.1 previews on 2026-04-02 (Vertex)
#: and 2026-10-22 (Gemini API, unconfirmed). Google answers them 404.
RETIRED: frozenset[str] = frozenset(
    {
        "veo-2.0-generate-001",
        "veo-3.0-generate-001",
        "veo-3.0-fast-generate-001",
        "veo-3.1-generate-preview",
        "veo-3.1-fast-generate-preview",
        "veo-3.1-lite-generate-preview",
    }
)


def family_of(vendor_model: str) -> Family:
    """The family of a vendor model name; unknown names (a channel ``model_map`` to a
    newer model) are judged by their prefix, defaulting to the Veo 3.1 rules."""
    if vendor_model in FAMILIES:
        return FAMILIES[vendor_model]
    if vendor_model.startswith("veo-2"):
        return VEO2
    if vendor_model.startswith("veo-3.0"):
        return VEO3
    return VEO31


def _model(name: str, vendor: str, description: str, aliases: tuple[str, ...] = ()) -> Model:
    fam = FAMILIES[vendor]
    return Model(
        name,
        vendor_model=vendor,
        aliases=(*aliases, vendor),
        description=description,
        seconds=fam.seconds,
        default_seconds=fam.default_seconds,
        operations=frozenset({"extend"}) if fam.extend else frozenset(),
    )


MODELS: tuple[Model, ...] = (
    _model(
        "veo-3.1",
        "veo-3.1-generate-001",
        "Google Veo 3.1 (GA, Vertex AI): 4/6/8 s, 720p/1080p, audio, first+last frame, 3 references, extend",
        aliases=("veo-3",),
    ),
    _model(
        "veo-3.1-fast",
        "veo-3.1-fast-generate-001",
        "Google Veo 3.1 Fast (GA, Vertex AI): 4/6/8 s, 720p/1080p, audio, first+last frame, 3 references, extend",
    ),
)
