"""Prices: what a task costs, from what the vendor was actually asked to make.

Money is held as integers in micro-units (1 unit = 1/1,000,000 of the configured
currency), so sums never drift. A model with no ``[models.NAME]`` price is free.
"""

from __future__ import annotations

from .config import Config
from .vendor import VendorJob

MICRO = 1_000_000


def to_micro(amount: float) -> int:
    return round(amount * MICRO)


def from_micro(amount: int | None) -> float | None:
    return None if amount is None else amount / MICRO


def price(config: Config, model: str, job: VendorJob, group: str) -> int:
    """The charge, in micro-units, for ``job`` of public ``model`` for a token in ``group``."""
    rule = config.models.get(model)
    if rule is None:
        return 0
    if rule.price_per_second is not None:
        base = rule.price_per_second * job.seconds
    else:
        base = rule.price_per_request or 0.0
    multiplier = rule.resolution_multipliers.get(job.resolution or "", rule.resolution_multipliers.get(job.size, 1.0))
    group_cfg = config.group(group)
    ratio = group_cfg.ratio if group_cfg else 1.0
    return to_micro(base * multiplier * ratio)
