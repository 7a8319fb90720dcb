r"""Checks where values enter minivae: one sentence naming the value, the allowed range and the fix.

A value out of range raises :class:`InvalidInput` (a ``ValueError``); a value of the wrong kind (a
float where a count is needed, a string where a number is) raises :class:`InvalidInputType`, which
is both an ``InvalidInput`` and a ``TypeError``.  A script catches ``InvalidInput`` and prints its
one line.

These look at host scalars, shapes and dtypes only, never at array contents, so none of them waits
for a GPU; the data rules (finite, in [0, 1] for Bernoulli pixels) live with each likelihood
(:meth:`minivae.likelihoods.Bernoulli.check_data`).
"""
from __future__ import annotations

import math
import numbers

import numpy as np


class InvalidInput(ValueError):
    """A value given to minivae is outside what it accepts; the message says which, and the fix."""


class InvalidInputType(InvalidInput, TypeError):
    """A value given to minivae is of the wrong kind, e.g. ``k=2.5`` where a count is needed."""


def _fix(fix: str) -> str:
    return f": {fix}" if fix else ""


def check_int(name: str, value, minimum: int = 1, fix: str = "") -> int:
    """``value`` as an int >= ``minimum``; bools, floats (even 3.0) and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidInputType(f"{name} must be an integer >= {minimum}, got {value!r}{_fix(fix)}.")
    if value < minimum:
        raise InvalidInput(f"{name} must be an integer >= {minimum}, got {int(value)}{_fix(fix)}.")
    return int(value)


def _inequality(name: str, low: float, high: float, low_open: bool, high_open: bool) -> str:
    """'lr > 0', 'beta >= 0', '0 <= beta1 < 1': the allowed range, written about ``name``."""
    if high == math.inf:
        return f"{name} {'>' if low_open else '>='} {low:g}"
    return f"{low:g} {'<' if low_open else '<='} {name} {'<' if high_open else '<='} {high:g}"


def check_real(name: str, value, low: float = -math.inf, high: float = math.inf, *,
               low_open: bool = False, high_open: bool = False, fix: str = "") -> float:
    """``value`` as a finite float between ``low`` and ``high`` (either end open as asked)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        range_ = _inequality(name, low, high, low_open, high_open)
        raise InvalidInputType(f"{name} must be a finite number with {range_}, got "
                               f"{value!r}{_fix(fix)}.")
    v = float(value)
    if not (math.isfinite(v) and (low < v if low_open else low <= v)
            and (v < high if high_open else v <= high)):
        range_ = _inequality(name, low, high, low_open, high_open)
        raise InvalidInput(f"{name} must be a finite number with {range_}, got {v!r}{_fix(fix)}.")
    return v


def check_positive(name: str, value, fix: str = "") -> float:
    """``value`` as a finite float > 0 (a learning rate, a standard deviation, an epsilon)."""
    return check_real(name, value, 0.0, low_open=True, fix=fix)


def check_sizes(name: str, value) -> list:
    """Layer sizes: a sequence (possibly empty) of ints >= 1, as a list."""
    ok = not isinstance(value, (str, bytes)) and hasattr(value, "__iter__")
    items = list(value) if ok else []
    kinds_ok = all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in items)
    if not (ok and kinds_ok and all(s >= 1 for s in items)):
        error = InvalidInput if ok and kinds_ok else InvalidInputType
        raise error(f"{name} must be a sequence of layer sizes, integers >= 1 such as (200, 200) "
                    f"or () for none, got {value!r}.")
    return [int(s) for s in items]


def check_choice(kind: str, value, choices) -> str:
    """``value`` if it names one of ``choices``, else 'Unknown <kind> ...: choose one of ...'."""
    if not (isinstance(value, str) and value in choices):
        error = InvalidInput if isinstance(value, str) else InvalidInputType
        raise error(f"Unknown {kind} {value!r}: choose one of {', '.join(choices)}.")
    return value


def check_float_dtype(value) -> np.dtype:
    """float32 or float64 as a NumPy dtype (float16 would lose the bound in rounding)."""
    try:
        dtype = None if value is None else np.dtype(value)     # np.dtype(None) would be float64
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or dtype.name not in ("float32", "float64"):
        raise InvalidInput(f"dtype must be float32 or float64, got {value!r}: float32 to train, "
                           f"float64 for gradient checks.")
    return dtype
