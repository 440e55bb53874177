"""Numbers formatted for reading: thousands separators, significant digits, CIs, p-values.

Never scientific notation: ``38680.2`` reads ``38,680``, ``0.000661`` reads ``0.000661`` and
a confidence interval reads ``0.87 (0.79 to 0.96)``.  The raw numbers go to
``results.json`` unformatted.

Examples
--------
>>> from steppedwedge.report.formatting import fmt_ci, fmt_num, fmt_p
>>> fmt_num(38680.2), fmt_num(0.0006612), fmt_num(12.345)
('38,680', '0.000661', '12.3')
>>> fmt_ci(0.8718, 0.7902, 0.9618)
'0.87 (0.79 to 0.96)'
>>> fmt_p(0.00942), fmt_p(0.0004), fmt_short(0.000500), fmt_df(15.0)
('0.009', '<0.001', '0.0005', '15')
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "fmt_ci",
    "fmt_df",
    "fmt_int",
    "fmt_num",
    "fmt_p",
    "fmt_ratio",
    "fmt_short",
    "is_missing",
]

_MINUS = "\u2212"


def is_missing(value: Any) -> bool:
    """Return whether ``value`` is ``None`` or a non-finite float."""
    if value is None:
        return True
    try:
        return not math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _sign(text: str) -> str:
    return text.replace("-", _MINUS) if text.startswith("-") else text


def fmt_int(value: Any) -> str:
    """Format an integer with thousands separators (``""`` when missing)."""
    if is_missing(value):
        return ""
    return _sign(f"{round(float(value)):,d}")


def fmt_num(value: Any, sig: int = 3) -> str:
    """Format a number to ``sig`` significant digits, in positional notation with separators.

    Values of 1,000 and more are rounded to whole numbers; values below ``1e-6`` in size
    are written as a power of ten (``2.1 × 10⁻⁷``) rather than as a row of zeros.
    """
    if is_missing(value):
        return ""
    x = float(value)
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    if abs(x) >= 10 ** (sig - 1) or mag >= 3:
        return fmt_int(x)
    if mag < -6:
        mant = x / 10**mag
        sup = str(mag).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
        return _sign(f"{mant:.{sig - 1}f} × 10{sup}")
    decimals = max(sig - 1 - mag, 0)
    text = f"{x:,.{decimals}f}"
    return _sign(text)


def fmt_short(value: Any, sig: int = 3) -> str:
    """Format like :func:`fmt_num` without trailing zeros (for running text: ``0.0005``, ``15``)."""
    text = fmt_num(value, sig)
    if "." in text and "×" not in text:
        text = text.rstrip("0").rstrip(".")
    return text


def fmt_df(value: Any) -> str:
    """Format degrees of freedom: whole numbers as integers, else one decimal (``15``, ``12.5``)."""
    if is_missing(value):
        return ""
    x = float(value)
    return f"{x:.0f}" if abs(x - round(x)) < 0.05 else f"{x:.1f}"


def fmt_p(value: Any) -> str:
    """Format a p-value: ``<0.001``, three decimals below 0.1, two from 0.1."""
    if is_missing(value):
        return ""
    p = float(value)
    if p < 0.001:
        return "<0.001"
    if p < 0.1:
        return f"{p:.3f}"
    return f"{p:.2f}"


def _decimals_for(values: list[float], sig: int) -> int:
    """Decimals that give the smallest-magnitude value ``sig`` significant digits."""
    finite = [abs(v) for v in values if v != 0 and math.isfinite(v)]
    if not finite:
        return 0
    mag = math.floor(math.log10(min(finite)))
    return max(sig - 1 - mag, 0)


def fmt_ci(estimate: Any, low: Any, high: Any, *, decimals: int | None = None) -> str:
    """Format ``estimate (low to high)`` with a common number of decimals.

    By default: two decimals for estimates between 0.1 and 10 with intervals 0.05 to 10 wide
    (a rate ratio reads ``0.87 (0.79 to 0.96)``), otherwise enough decimals to give the
    interval's width three significant digits (``0.046 (0.014 to 0.198)``,
    ``125.3 (100.2 to 150.4)``); without an interval, three significant digits.
    """
    if is_missing(estimate):
        return ""
    est = float(estimate)
    has_ci = not (is_missing(low) or is_missing(high))
    if decimals is None:
        width = float(high) - float(low) if has_ci else 0.0
        if width > 0 and 0.1 <= abs(est) < 10 and 0.05 <= width < 10:
            decimals = 2
        elif width > 0:
            decimals = max(0, 2 - math.floor(math.log10(width)))
        else:
            decimals = _decimals_for([est], 3)
    decimals = min(decimals, 6)

    def f(v: Any) -> str:
        return _sign(f"{float(v):,.{decimals}f}")

    return f"{f(est)} ({f(low)} to {f(high)})" if has_ci else f(est)


def fmt_ratio(value: Any) -> str:
    """Format a ratio (rate, odds or SE ratio) to two decimals."""
    if is_missing(value):
        return ""
    return f"{float(value):.2f}"
