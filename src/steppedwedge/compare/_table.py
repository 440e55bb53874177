"""Side-by-side comparison of analyses: :func:`compare`.

Any result that follows the shared result protocol (a ``tidy(confidence_level)`` table with
the columns ``term, estimate, std_error, statistic, df, p_value, conf_low, conf_high`` and an
``estimand``) can be compared: mixed models (:class:`~steppedwedge.results.FitResult`),
GLMMs, GEE, cluster-level analyses, randomisation tests
(:class:`~steppedwedge.inference.permutation.PermutationResult`) and results pooled over
imputations.  The comparison is a plain :class:`pandas.DataFrame` (which already renders as
HTML in notebooks), one row per analysis, so it can be filtered, sorted and exported like
any table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import OptionError
from ..results import TIDY_COLUMNS

__all__ = ["COMPARE_COLUMNS", "compare"]

#: Columns of the table returned by :func:`compare`, in order.
COMPARE_COLUMNS = (
    "model",
    "term",
    "estimate",
    "std_error",
    "conf_low",
    "conf_high",
    "p_value",
    "df",
    "method",
)


def _method_label(result: Any) -> str:
    """Describe briefly how ``result`` was obtained: its ``method_label`` (result protocol).

    A result from outside the library without one is labelled by its ``method`` (or its
    class name).
    """
    label = getattr(result, "method_label", None)
    if isinstance(label, str) and label:
        return label
    method = getattr(result, "method", None)
    return str(method) if method is not None else type(result).__name__


def _estimand_row(result: Any, confidence_level: float) -> pd.Series:
    tidy = getattr(result, "tidy", None)
    if not callable(tidy):
        raise TypeError(
            f"compare() needs results with a `tidy()` table; got {type(result).__name__}."
        )
    table = tidy(confidence_level=confidence_level)
    missing = [c for c in TIDY_COLUMNS if c not in table.columns]
    if missing or len(table) == 0:
        raise TypeError(
            f"the `tidy()` table of {type(result).__name__} lacks the column(s) {missing} "
            "of the result protocol or has no rows."
        )
    estimand = getattr(result, "estimand", None)
    hit = table.index[table["term"] == estimand] if estimand is not None else []
    row: pd.Series = table.loc[hit[0]] if len(hit) else table.iloc[0]
    return row


def compare(
    results: Sequence[Any] | Mapping[str, Any],
    *,
    names: Sequence[str] | None = None,
    confidence_level: float = 0.95,
) -> pd.DataFrame:
    """Put the treatment-effect estimates of several analyses side by side.

    Parameters
    ----------
    results : sequence of results, or mapping of name -> result
        Results following the shared protocol (``tidy()``; an ``estimand`` attribute picks
        the row, else the first row of ``tidy()`` is used).
    names : sequence of str, optional
        Row labels (``model`` column); default the mapping's keys, else ``"1"``, ``"2"``, ...
    confidence_level : float, default 0.95
        Passed to each result's ``tidy``.  A randomisation test reports an interval only
        when it can invert its statistic (else NaN).

    Returns
    -------
    pandas.DataFrame
        One row per result with the columns ``model, term, estimate, std_error, conf_low,
        conf_high, p_value, df, method``.  Statistics a method does not have (the standard
        error and df of a randomisation test) are NaN.

    Raises
    ------
    ValueError
        For no results, or ``names`` of the wrong length or with repeats.
    TypeError
        For an object that does not follow the result protocol.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> import steppedwedge.models as m
    >>> from steppedwedge.compare import compare
    >>> from steppedwedge.inference.permutation import permutation_test
    >>> rng = np.random.default_rng(3)
    >>> rows = [(i, j, float(j > i % 4), 0.5 * (j > i % 4) + rng.normal())
    ...         for i in range(8) for j in range(5) for _ in range(5)]
    >>> df = pd.DataFrame(rows, columns=["c", "t", "x", "y"])
    >>> roles = dict(outcome="y", cluster="c", period="t", treatment="x")
    >>> table = compare({"LMM": m.fit(df, **roles),
    ...                  "permutation": permutation_test(df, **roles, statistic="twfe",
    ...                                                  rng=1, n_permutations=999)})
    >>> table.columns.tolist()
    ['model', 'term', 'estimate', 'std_error', 'conf_low', 'conf_high', 'p_value', 'df', 'method']
    >>> table["model"].tolist()
    ['LMM', 'permutation']
    """
    if isinstance(results, Mapping):
        labels = [str(k) for k in results]
        items = list(results.values())
        if names is not None:
            raise OptionError("give names either as the mapping's keys or as `names`, not both.")
    else:
        items = list(results)
        labels = (
            [str(k + 1) for k in range(len(items))] if names is None else [str(n) for n in names]
        )
    if not items:
        raise OptionError("`results` is empty; give at least one result to compare.")
    if len(labels) != len(items):
        raise OptionError(f"`names` has {len(labels)} entries for {len(items)} results.")
    if len(set(labels)) != len(labels):
        raise OptionError(f"`names` must be unique; got {labels}.")
    if not 0.0 < confidence_level < 1.0:
        raise OptionError(f"`confidence_level` must lie in (0, 1); got {confidence_level!r}.")
    rows = []
    for label, res in zip(labels, items, strict=True):
        r = _estimand_row(res, confidence_level)
        rows.append(
            (
                label,
                str(r["term"]),
                float(r["estimate"]),
                float(r["std_error"]) if r["std_error"] is not None else np.nan,
                float(r["conf_low"]),
                float(r["conf_high"]),
                float(r["p_value"]),
                float(r["df"]) if r["df"] is not None else np.nan,
                _method_label(res),
            )
        )
    out: pd.DataFrame = pd.DataFrame(rows, columns=list(COMPARE_COLUMNS))
    return out
