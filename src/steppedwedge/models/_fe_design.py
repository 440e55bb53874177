"""Rows and design matrix of the cluster fixed-effects GLM, with the aliased terms named.

:func:`fe_rows` checks the role columns of the rows (outcome values for the family, a 0/1
treatment, a finite offset or positive exposure, the missing-value policy, two clusters) and
:func:`fe_design` builds the intercept, period, cluster, covariate and treatment columns,
drops the columns that add no rank (R's pivoting QR) and says why each was dropped.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._warnings import warn
from ..data import check_role_column
from ..exceptions import DataError, MissingDataWarning, SmallSampleWarning
from ._fe_glm import independent_columns

__all__ = ["FEDesign", "FERows", "fe_design", "fe_rows"]


@dataclass(frozen=True)
class FERows:
    """The analysed rows: outcome, treatment, offset, cluster and period codes."""

    frame: pd.DataFrame
    y: np.ndarray
    trt: np.ndarray
    off: np.ndarray
    cl_lab: pd.Index
    pe_lab: pd.Index
    cl_code: np.ndarray
    pe_code: np.ndarray
    messages: tuple[str, ...]

    @property
    def n(self) -> int:
        """Number of rows."""
        return len(self.y)


@dataclass(frozen=True)
class FEDesign:
    """The estimable design: kept columns, their names, the treatment terms, the aliased."""

    x: np.ndarray
    names: list[str]
    kept_names: list[str]
    n_nontrt: int
    trt_kept: list[str]
    aliased: pd.DataFrame
    cov_formula: str | None
    messages: tuple[str, ...]


def label(x: Any) -> str:
    """Term label of a period or cluster value."""
    return str(x)


def sort_key(v: Hashable) -> tuple[int, Any]:
    """Numbers first (numerically), then the rest as strings."""
    if isinstance(v, (int, float, np.integer, np.floating)):
        return (0, float(v))
    return (1, str(v))


def _covariate_columns(covariates: str | None, frame: pd.DataFrame) -> list[str]:
    """Columns named by the covariate formula (for the missing-value check)."""
    if covariates is None:
        return []
    import patsy

    try:
        desc = patsy.ModelDesc.from_formula(covariates.strip().lstrip("~"))
        names = sorted({str(f.name()) for t in desc.rhs_termlist for f in t.factors})
    except Exception:  # noqa: BLE001 - reported by covariate_matrix in fe_design
        names = []
    return [v for v in names if v in frame.columns]


def _check_columns(frame: pd.DataFrame, roles: dict[str, str | None]) -> None:
    for arg in ("outcome", "cluster", "period", "treatment"):
        col = roles[arg]
        if col is None:
            raise TypeError(f"`{arg}` is required (a column name).")
        check_role_column(frame, arg, col)
    for arg in ("offset", "exposure"):
        col = roles[arg]
        if col is not None:
            check_role_column(frame, arg, col)


def _drop_missing(
    frame: pd.DataFrame, used: list[str], missing: str, messages: list[str]
) -> pd.DataFrame:
    sub = frame[list(dict.fromkeys(used))]
    na = sub.isna().any(axis=1).to_numpy()
    if not na.any():
        return frame
    bad = [c for c in sub.columns if sub[c].isna().any()]
    if missing == "raise":
        raise DataError(
            f"{int(na.sum())} row(s) have missing values in column(s) {bad}; pass "
            "`missing='drop'` to drop them (counted in a warning), or impute and use `pool`."
        )
    warn(
        f"dropped {int(na.sum())} row(s) with missing values in column(s) {bad}.",
        MissingDataWarning,
    )
    messages.append(f"{int(na.sum())} row(s) with missing values dropped.")
    kept: pd.DataFrame = frame.loc[~na]
    return kept


def _numeric(frame: pd.DataFrame, col: str) -> np.ndarray:
    return np.asarray(pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64))


def _outcome_treatment(
    frame: pd.DataFrame, outcome: str, treatment: str, family: str
) -> tuple[np.ndarray, np.ndarray]:
    y = _numeric(frame, outcome)
    if not np.all(np.isfinite(y)):
        raise DataError(f"`outcome` column {outcome!r} must be numeric and finite.")
    if family == "binomial" and not np.all((y == 0) | (y == 1)):
        raise DataError(f"`outcome` column {outcome!r} must be 0/1 for family='binomial'.")
    if family == "poisson" and (np.any(y < 0) or np.any(y != np.round(y))):
        raise DataError(
            f"`outcome` column {outcome!r} must hold non-negative counts for family='poisson'."
        )
    trt = _numeric(frame, treatment)
    if not np.all((trt == 0) | (trt == 1)):
        raise DataError(f"`treatment` column {treatment!r} must be 0/1 per row.")
    return y, trt


def _offset(frame: pd.DataFrame, offset: str | None, exposure: str | None) -> np.ndarray:
    off = np.zeros(len(frame))
    if offset is not None:
        off = _numeric(frame, offset)
        if not np.all(np.isfinite(off)):
            raise DataError(f"`offset` column {offset!r} must be finite numbers.")
    if exposure is not None:
        ex = _numeric(frame, exposure)
        if not np.all(np.isfinite(ex) & (ex > 0)):
            raise DataError(f"`exposure` column {exposure!r} must be positive numbers.")
        off = np.log(ex)
    return off


def fe_rows(
    frame: pd.DataFrame,
    roles: dict[str, str | None],
    family: str,
    covariates: str | None,
    missing: str,
) -> FERows:
    """Check and extract the rows of a fixed-effects GLM (see the module notes).

    ``roles`` maps ``outcome``, ``cluster``, ``period``, ``treatment``, ``offset`` and
    ``exposure`` to columns (None for an unused offset/exposure).
    """
    _check_columns(frame, roles)
    used = [c for c in roles.values() if c is not None]
    messages: list[str] = []
    frame = _drop_missing(frame, used + _covariate_columns(covariates, frame), missing, messages)
    outcome, treatment = str(roles["outcome"]), str(roles["treatment"])
    y, trt = _outcome_treatment(frame, outcome, treatment, family)
    off = _offset(frame, roles["offset"], roles["exposure"])
    cluster, period = str(roles["cluster"]), str(roles["period"])
    cl_lab = pd.Index(sorted(pd.unique(frame[cluster]), key=sort_key))
    pe_lab = pd.Index(sorted(pd.unique(frame[period]), key=sort_key))
    if len(cl_lab) < 2:
        raise DataError(
            f"cluster-robust inference needs at least 2 clusters; `cluster` column {cluster!r} has "
            f"{len(cl_lab)}."
        )
    return FERows(
        frame=frame,
        y=y,
        trt=trt,
        off=off,
        cl_lab=cl_lab,
        pe_lab=pe_lab,
        cl_code=cl_lab.get_indexer(frame[cluster]),
        pe_code=pe_lab.get_indexer(frame[period]),
        messages=tuple(messages),
    )


def _columns(
    rows: FERows, effect: str, covariates: str | None
) -> tuple[np.ndarray, list[str], int, str | None]:
    """All candidate columns, their names, the number of non-treatment columns, the formula."""
    n, pe_lab, cl_lab = rows.n, rows.pe_lab, rows.cl_lab
    names: list[str] = ["(Intercept)"]
    blocks: list[np.ndarray] = [np.ones((n, 1))]
    blocks.append((rows.pe_code[:, None] == np.arange(1, len(pe_lab))[None, :]).astype(float))
    names += [f"period[{label(p)}]" for p in pe_lab[1:]]
    blocks.append((rows.cl_code[:, None] == np.arange(1, len(cl_lab))[None, :]).astype(float))
    names += [f"cluster[{label(c)}]" for c in cl_lab[1:]]
    cov_formula = None
    if covariates is not None:
        from ._formula import covariate_matrix

        cm = covariate_matrix(covariates, rows.frame)
        names += list(cm.names)
        blocks.append(cm.values)
        cov_formula = cm.formula
    n_nontrt = len(names)
    if effect == "immediate":
        names.append("treatment")
        blocks.append(rows.trt[:, None])
    else:
        names += [f"treatment:period[{label(p)}]" for p in pe_lab]
        blocks.append(
            rows.trt[:, None] * (rows.pe_code[:, None] == np.arange(len(pe_lab))[None, :])
        )
    return np.hstack(blocks), names, n_nontrt, cov_formula


def _alias_reason(j: int, n_nontrt: int, effect: str, rows: FERows) -> str:
    """Why column ``j`` adds no rank."""
    trt = rows.trt
    if j < n_nontrt:
        return "collinear with earlier terms (covariate, period or cluster effects)"
    if effect == "immediate":
        return (
            "no treated observations"
            if not trt.any()
            else "collinear with the period/cluster effects (treatment is confounded with time)"
        )
    k = j - n_nontrt
    in_p = rows.pe_code == k
    if not (trt[in_p] == 1).any():
        return f"no treated observations in period {label(rows.pe_lab[k])}"
    if (trt[in_p] == 1).all():
        return (
            f"every observation in period {label(rows.pe_lab[k])} is treated "
            "(aliased with the period effect)"
        )
    return "collinear with the other terms"


def fe_design(rows: FERows, effect: str, covariates: str | None) -> FEDesign:
    """Estimable design of the fixed-effects GLM (aliased terms dropped, named and explained).

    Raises
    ------
    DataError
        If every treatment term is aliased.

    Warns
    -----
    SmallSampleWarning
        When some treatment terms are not estimable.
    """
    x_full, names, n_nontrt, cov_formula = _columns(rows, effect, covariates)
    keep = independent_columns(x_full)
    aliased_rows = [
        (names[j], _alias_reason(int(j), n_nontrt, effect, rows)) for j in np.flatnonzero(~keep)
    ]
    trt_kept = [names[j] for j in range(n_nontrt, len(names)) if keep[j]]
    trt_aliased = [(t, r) for t, r in aliased_rows if t.startswith("treatment")]
    if not trt_kept:
        listing = "; ".join(f"{t}: {r}" for t, r in trt_aliased)
        raise DataError(
            f"the treatment effect is not estimable: every treatment term is aliased ({listing})."
        )
    messages: list[str] = []
    if trt_aliased:
        msg = "not estimable, dropped: " + "; ".join(f"{t} ({r})" for t, r in trt_aliased)
        warn(msg, SmallSampleWarning)
        messages.append(msg)
    other_dropped = [t for t, _ in aliased_rows if not t.startswith("treatment")]
    if other_dropped:
        messages.append("aliased terms dropped: " + ", ".join(other_dropped))
    return FEDesign(
        x=x_full[:, keep],
        names=names,
        kept_names=[nm for nm, k in zip(names, keep, strict=True) if k],
        n_nontrt=n_nontrt,
        trt_kept=trt_kept,
        aliased=pd.DataFrame(aliased_rows, columns=["term", "reason"]),
        cov_formula=cov_formula,
        messages=tuple(messages),
    )
