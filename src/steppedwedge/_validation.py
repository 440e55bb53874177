"""Small validators shared by every public entry point.

Each public function validates its inputs once, in a private ``_..._iv`` helper built from
these pieces; code further down trusts what it is given.  Messages follow one template:
"`name` must be ...; got ...".
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from ._typing import RNGLike
from .exceptions import OptionError

__all__ = [
    "check_option",
    "check_positive_int",
    "check_probability",
    "check_nonnegative",
    "check_unit_interval",
    "normalise_rng",
    "parse_date_text",
]


def normalise_rng(rng: RNGLike) -> np.random.Generator:
    """Return a :class:`numpy.random.Generator` for ``rng`` (SPEC 7 semantics).

    An ``int`` or :class:`~numpy.random.SeedSequence` seeds a new PCG64 generator; a
    Generator is used as is (not copied); ``None`` draws fresh OS entropy.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer, np.random.SeedSequence)):
        if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and rng < 0:
            raise OptionError(f"`rng` must be a non-negative integer seed; got {rng}.")
        return np.random.default_rng(rng)
    raise TypeError(
        "`rng` must be an int seed, a numpy.random.Generator, a SeedSequence or None; "
        f"got {type(rng).__name__}."
    )


def check_option(name: str, value: Any, allowed: Iterable[str]) -> str:
    """Check that ``value`` is one of the ``allowed`` strings, listing them if not."""
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        listed = ", ".join(repr(a) for a in allowed)
        raise OptionError(f"`{name}` must be one of {listed}; got {value!r}.")
    return value


def check_positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Check that ``value`` is an integer ``>= minimum`` and return it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise OptionError(f"`{name}` must be an integer >= {minimum}; got {value!r}.")
    if value < minimum:
        raise OptionError(f"`{name}` must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def _as_float(name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise OptionError(f"`{name}` must be a number; got {value!r}.") from None
    if math.isnan(out):
        raise OptionError(f"`{name}` must be a number; got NaN.")
    return out


def check_nonnegative(name: str, value: Any) -> float:
    """Check that ``value`` is a finite number ``>= 0``."""
    out = _as_float(name, value)
    if not math.isfinite(out) or out < 0:
        raise OptionError(f"`{name}` must be a finite number >= 0; got {value!r}.")
    return out


def check_unit_interval(name: str, value: Any, *, closed: bool = True) -> float:
    """Check that ``value`` lies in [0, 1] (or (0, 1) when ``closed=False``)."""
    out = _as_float(name, value)
    ok = 0.0 <= out <= 1.0 if closed else 0.0 < out < 1.0
    if not ok:
        interval = "[0, 1]" if closed else "(0, 1)"
        raise OptionError(f"`{name}` must lie in {interval}; got {value!r}.")
    return out


def check_probability(name: str, value: Any) -> float:
    """Check that ``value`` is a probability strictly inside (0, 1) (e.g. ``alpha``)."""
    return check_unit_interval(name, value, closed=False)


# ISO 8601 calendar dates (with an optional time of day), basic or extended, and year-month
_ISO_DATE = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$|^\d{8}$|^\d{4}-\d{2}$"
)
_MONTH_NAME = re.compile(
    r"\b(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\b\.?", re.IGNORECASE
)
_NUMERIC_DMY = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2}|\d{4})$")


def _numeric_readings(a: int, b: int, y: int) -> list[str]:
    """Return the distinct valid readings of ``a/b/y``: day first, then month first."""
    year = y + 2000 if y < 100 else y
    out: list[str] = []
    seen: set[_dt.date] = set()
    for day, month, order in ((a, b, "day first"), (b, a, "month first")):
        try:
            d = _dt.date(year, month, day)
        except ValueError:
            continue
        if d not in seen:
            seen.add(d)
            out.append(f"{d.day} {d:%B %Y} ({order})")
    return out


def check_dayfirst(dayfirst: Any, date_format: Any) -> None:
    """Check the ``dayfirst=`` / ``date_format=`` pair of a date-reading entry point."""
    if dayfirst is not None and not isinstance(dayfirst, (bool, np.bool_)):
        raise OptionError(f"`dayfirst` must be True, False or None; got {dayfirst!r}.")
    if date_format is not None and not isinstance(date_format, str):
        raise OptionError(f"`date_format` must be a strptime format string; got {date_format!r}.")
    if dayfirst is not None and date_format is not None:
        raise OptionError(
            "`dayfirst` and `date_format` cannot be combined: `date_format` already fixes the "
            f"order of day and month; got dayfirst={dayfirst!r}, date_format={date_format!r}."
        )


def parse_date_text(
    text: str, what: str, *, dayfirst: bool | None = None, date_format: str | None = None
) -> _dt.datetime:
    """Read one date written as text, refusing to guess the order of day and month.

    ISO 8601 (``"2024-07-01"``, ``"20240701"``, ``"2024-07"``) is read as such, and so is
    a date with the month as a word and a four-digit year (``"1 April 2023"``).  Any other
    form needs ``date_format`` (a :func:`datetime.datetime.strptime` format) or ``dayfirst``
    (``True``: ``"01/07/2024"`` is 1 July; ``False``: 7 January), and is then read strictly:
    a month above 12 is an error, never a silent swap.

    Parameters
    ----------
    text : str
        The date.
    what : str
        What the date is, for messages (e.g. ``"the start date of cluster 'Leeds'"``).
    dayfirst : bool, optional
        Day before month in non-ISO dates.
    date_format : str, optional
        Exact format, e.g. ``"%d/%m/%Y"``.

    Returns
    -------
    datetime.datetime

    Raises
    ------
    OptionError
        If a non-ISO date is given without ``dayfirst``/``date_format`` (the message says
        both readings when they differ), or it does not match the given order or format.

    Examples
    --------
    >>> from steppedwedge._validation import parse_date_text
    >>> parse_date_text("2024-07-01", "start").date()
    datetime.date(2024, 7, 1)
    >>> parse_date_text("01/07/2024", "start", dayfirst=True).date()
    datetime.date(2024, 7, 1)
    """
    check_dayfirst(dayfirst, date_format)
    raw = text
    text = text.strip()
    if date_format is not None:
        try:
            return _dt.datetime.strptime(text, date_format)
        except ValueError:
            raise OptionError(
                f"{what}: {raw!r} does not match date_format={date_format!r}."
            ) from None
    if _ISO_DATE.match(text):
        try:
            if len(text) == 7:
                return _dt.datetime.strptime(text, "%Y-%m")
            if len(text) == 8:
                return _dt.datetime.strptime(text, "%Y%m%d")
            return _dt.datetime.fromisoformat(text)
        except ValueError:
            raise OptionError(f"{what}: {raw!r} is not a valid ISO 8601 date.") from None
    m = _NUMERIC_DMY.match(text)
    numbers = re.findall(r"\d+", text)
    if (
        dayfirst is None
        and _MONTH_NAME.search(text)
        and [len(n) == 4 for n in numbers]
        in (
            [True, False],
            [False, True],
        )
    ):
        # "1 April 2023", "April 1, 2023": the month is a word, so day and year are the
        # two numbers and cannot be swapped (the year has four digits)
        return _parse_with_pandas(text, raw, what, dayfirst=False)
    if dayfirst is None:
        hint = ""
        if not m:
            _parse_with_pandas(text, raw, what, dayfirst=False)  # raises if not a date at all
        if m:
            readings = _numeric_readings(*(int(g) for g in m.groups()))
            if len(readings) == 2:
                hint = f" It is ambiguous: {readings[0]} or {readings[1]}."
            elif readings:
                hint = f" It can only be {readings[0]}, but the order is never guessed."
        raise OptionError(
            f"{what}: {raw!r} is not an ISO 8601 date (YYYY-MM-DD).{hint} Write it as "
            "YYYY-MM-DD, or pass dayfirst=True (UK, 01/07/2024 = 1 July), dayfirst=False "
            "(US, 07/01/2024 = 1 July) or date_format= (e.g. '%d/%m/%Y')."
        )
    if m:
        a, b, y = (int(g) for g in m.groups())
        day, month = (a, b) if dayfirst else (b, a)
        year = y + 2000 if y < 100 else y
        try:
            return _dt.datetime(year, month, day)
        except ValueError:
            order = "day/month/year" if dayfirst else "month/day/year"
            raise OptionError(
                f"{what}: {raw!r} is not a valid date read as {order} (dayfirst={dayfirst})."
            ) from None
    return _parse_with_pandas(text, raw, what, dayfirst=bool(dayfirst))


def _parse_with_pandas(text: str, raw: str, what: str, *, dayfirst: bool) -> _dt.datetime:
    import pandas as pd

    try:
        ts = pd.to_datetime(text, dayfirst=dayfirst)
    except (TypeError, ValueError, OverflowError):
        raise OptionError(f"{what} is not a date; got {raw!r}.") from None
    return ts.to_pydatetime()
