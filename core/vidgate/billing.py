"""Prices: what a task costs, from its usage facts.

A task is priced twice: at submit from the facts the plugin's :class:`VendorJob` asks for
(the estimate, pre-deducted from the token's quota), and at completion from the facts the
vendor reports (:attr:`PollResult.usage`), to which the charge is settled. Facts the
vendor does not report keep their estimated value. Price expressions are compiled once per
expression (see :mod:`vidgate.prices`).

Money is held as integers in micro-units (1 unit = 1/1,000,000 of the configured
currency), so sums never drift. A model with no ``[models.NAME]`` price is free.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from .config import Config
from .prices import FACTS, Price
from .vendor import VendorJob

MICRO = 1_000_000
_PIXELS = re.compile(r"^([0-9]{1,5})x([0-9]{1,5})$")


def to_micro(amount: float) -> int:
    return round(amount * MICRO)


def from_micro(amount: int | None) -> float | None:
    return None if amount is None else amount / MICRO


@functools.lru_cache(maxsize=256)
def _compiled(text: str) -> Price:
    return Price(text)


def estimate_facts(job: VendorJob) -> dict[str, Any]:
    """The usage facts of a job: derived from seconds/size/resolution, then the plugin's own."""
    facts: dict[str, Any] = {"seconds": job.seconds, "size": job.size, "count": 1}
    if job.resolution:
        facts["resolution"] = job.resolution
    if m := _PIXELS.match(job.size or ""):
        facts["width"], facts["height"] = int(m[1]), int(m[2])
    facts.update(clean_facts(job.usage))
    return facts


def clean_facts(usage: Mapping[str, Any] | None) -> dict[str, Any]:
    """Keep the known facts with values of the right type (a plugin's slip is dropped)."""
    clean: dict[str, Any] = {}
    for key, value in (usage or {}).items():
        if key not in FACTS:
            continue
        if isinstance(FACTS[key], str):
            if isinstance(value, str):
                clean[key] = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            clean[key] = value
    return clean


def actual_facts(estimate: Mapping[str, Any], reported: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the vendor reported, over the estimate."""
    return {**estimate, **clean_facts(reported)}


def charge(config: Config, model: str, facts: Mapping[str, Any], group: str) -> int:
    """The charge, in micro-units, for ``facts`` of public ``model`` for a token in ``group``.

    Raises :class:`vidgate.prices.PriceError` when the expression cannot be evaluated for
    these facts (e.g. a division by a fact that is 0). A negative price is 0.
    """
    rule = config.models.get(model)
    expression = rule.expression() if rule is not None else None
    if expression is None:
        return 0
    group_cfg = config.group(group)
    ratio = group_cfg.ratio if group_cfg else 1.0
    return max(0, to_micro(_compiled(expression)(facts) * ratio))


def price(config: Config, model: str, job: VendorJob, group: str) -> int:
    """The estimated charge of ``job`` (what submit pre-deducts)."""
    return charge(config, model, estimate_facts(job), group)


def refund_unconfirmed_cancel(config: Config, model: str) -> bool:
    """Whether a cancel the vendor did not confirm as unbilled is refunded."""
    rule = config.models.get(model)
    policy = rule.refund_on_unconfirmed_cancel if rule is not None else None
    return (policy or config.billing.refund_on_unconfirmed_cancel) == "full"
