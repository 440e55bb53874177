"""The one place that talks to the formula library (patsy) for covariates.

Trial structure (cluster, period, treatment, time and exposure effects) is never written
in a formula: it comes from explicit arguments.  Only optional covariates are given as a
formula string such as ``"age + C(sex) + baseline"``; this module turns it into a numeric
matrix without an intercept (factors use reduced-rank treatment coding because the model
always has an intercept).  Swapping patsy for formulaic later means changing this file only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..exceptions import DataError

__all__ = ["CovariateMatrix", "covariate_matrix"]


@dataclass(frozen=True)
class CovariateMatrix:
    """Numeric covariate columns for every row, with their names and the source columns."""

    values: np.ndarray  # (N, k) float64
    names: tuple[str, ...]
    formula: str
    variables: tuple[str, ...]


def covariate_matrix(formula: str, frame: pd.DataFrame) -> CovariateMatrix:
    """Evaluate a right-hand-side covariate formula on ``frame`` (no intercept column).

    Parameters
    ----------
    formula : str
        A patsy right-hand side, e.g. ``"x1 + C(site_type)"`` (a leading ``~`` is allowed).
    frame : pandas.DataFrame
        The rows; never modified.

    Returns
    -------
    CovariateMatrix

    Raises
    ------
    DataError
        If the formula cannot be evaluated (unknown column, bad syntax) or produces
        missing or non-finite values.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "g": ["a", "b", "a"]})
    >>> cm = covariate_matrix("x + C(g)", df)
    >>> cm.names
    ('C(g)[T.b]', 'x')
    >>> cm.values.tolist()
    [[0.0, 1.0], [1.0, 2.0], [0.0, 3.0]]
    """
    import patsy  # local: keeps import steppedwedge light

    if not isinstance(formula, str) or not formula.strip():
        raise DataError(
            f"`covariates` must be a non-empty formula string such as 'x1 + x2'; got {formula!r}."
        )
    rhs = formula.strip()
    if rhs.startswith("~"):
        rhs = rhs[1:].strip()
    if "~" in rhs:
        raise DataError(
            "`covariates` takes only the right-hand side of a formula (e.g. 'x1 + x2'); "
            f"got {formula!r}."
        )
    try:
        dm = patsy.dmatrix("1 + " + rhs, frame, NA_action="raise", return_type="dataframe")
    except patsy.PatsyError as exc:
        raise DataError(f"`covariates` formula {formula!r} could not be evaluated: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - e.g. a name that is not a column
        raise DataError(f"`covariates` formula {formula!r} could not be evaluated: {exc}") from None
    info = dm.design_info
    dm = dm.drop(columns=["Intercept"])
    values = dm.to_numpy(dtype=np.float64)
    if values.shape[1] == 0:
        raise DataError(f"`covariates` formula {formula!r} produced no columns.")
    if not np.all(np.isfinite(values)):
        bad = [c for c in dm.columns if not np.all(np.isfinite(dm[c].to_numpy(dtype=float)))]
        raise DataError(f"`covariates` column(s) {bad} contain missing or infinite values.")
    variables = tuple(sorted({str(f.name()) for term in info.terms for f in term.factors}))
    return CovariateMatrix(
        values=values, names=tuple(str(c) for c in dm.columns), formula=formula, variables=variables
    )
