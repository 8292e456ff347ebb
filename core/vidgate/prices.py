"""Price expressions: a model's price as arithmetic over usage facts.

``[models."veo-3"] price = "0.40 * seconds * (1.5 if resolution == '1080p' else 1)"``.
Expressions are Python syntax evaluated by simpleeval (never ``eval``): numbers, the fact
names of :data:`FACTS`, ``+ - * / // % **``, comparisons, ``and``/``or``/``not``,
``a if cond else b``, and the functions ``min``, ``max``, ``round`` and ``abs``. The
shorthands ``price_per_second``, ``price_per_request`` and ``resolution_multipliers`` are
turned into such an expression (:func:`shorthand_expression`), so there is one way of
pricing.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

import simpleeval

#: The usage-fact vocabulary, with the value a fact has when neither the estimate nor the
#: vendor's report gives it (0, or "" for the two string facts).
FACTS: dict[str, Any] = {
    "seconds": 0,  # clip length
    "width": 0,  # pixels
    "height": 0,
    "resolution": "",  # tier as the vendor names it: "720p", "1080p", "4k"
    "size": "",  # "WxH" (or "W:H") as shown to the client
    "fps": 0,
    "frames": 0,
    "count": 0,  # videos made (1 per task unless the vendor makes several)
    "tokens": 0,  # vendor tokens, all kinds together
    "video_tokens": 0,
    "audio_tokens": 0,
    "credits": 0,  # vendor credits / units
    "compute_seconds": 0,  # compute time the vendor ran the job for (hardware-time billing)
}
STRING_FACTS = frozenset({"resolution", "size"})
# A typical task, to check an expression at config load: every name must be known and
# the result a number.
_SAMPLE: dict[str, Any] = {
    **{k: 1 for k in FACTS},
    "seconds": 8,
    "width": 1280,
    "height": 720,
    "resolution": "720p",
    "size": "1280x720",
    "fps": 24,
    "frames": 192,
}
_FUNCTIONS = {"min": min, "max": max, "round": round, "abs": abs}


class PriceError(ValueError):
    """An expression that does not parse, names an unknown fact, or gives no number."""


class Price:
    """A compiled price expression; :meth:`__call__` gives the price of some facts."""

    def __init__(self, text: str) -> None:
        self.text = text
        try:
            self._tree = ast.parse(text.strip(), mode="eval").body
        except SyntaxError as exc:
            raise PriceError(f"not a valid expression: {exc.msg}") from None
        unknown = sorted(
            {n.id for n in ast.walk(self._tree) if isinstance(n, ast.Name)} - FACTS.keys() - _FUNCTIONS.keys()
        )
        if unknown:
            raise PriceError(f"unknown name {unknown[0]!r}; usage facts are {', '.join(FACTS)}")
        self(_SAMPLE)  # operators, types, functions: fail now, not at the first task

    def __call__(self, facts: Mapping[str, Any]) -> float:
        names = {**FACTS, **{k: v for k, v in facts.items() if k in FACTS}}
        evaluator = simpleeval.SimpleEval(names=names, functions=_FUNCTIONS)
        try:
            value = evaluator.eval(self.text.strip(), previously_parsed=self._tree)
        except simpleeval.InvalidExpression as exc:
            raise PriceError(str(exc)) from None
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise PriceError(f"{type(exc).__name__}: {exc}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PriceError(f"gives {type(value).__name__} {value!r}, not a number")
        return float(value)


def shorthand_expression(
    price_per_second: float | None, price_per_request: float | None, resolution_multipliers: Mapping[str, float]
) -> str | None:
    """The expression the three shorthand keys mean (None when no price is set).

    A ``resolution_multipliers`` key matches the resolution tier first, else the exact
    size, as it always has.
    """
    if price_per_second is None and price_per_request is None:
        return None
    base = f"{price_per_second!r} * seconds" if price_per_second is not None else repr(price_per_request)
    if not resolution_multipliers:
        return base
    multiplier = "1.0"
    for key, factor in reversed(list(resolution_multipliers.items())):
        multiplier = f"{float(factor)!r} if size == {key!r} else ({multiplier})"
    for key, factor in reversed(list(resolution_multipliers.items())):
        multiplier = f"{float(factor)!r} if resolution == {key!r} else ({multiplier})"
    return f"({base}) * ({multiplier})"
