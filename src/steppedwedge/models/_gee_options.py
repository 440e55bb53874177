"""Validation of the options of :func:`steppedwedge.models.gee.fit_gee` (one check each).

:func:`gee_options` checks every option of a GEE fit against the validated
:class:`~steppedwedge.data.TrialData` once and returns them resolved in a
:class:`GEEOptions`; the kernels in :mod:`steppedwedge._core.gee` then trust them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._core import gee as _gee
from .._validation import check_option
from ..data import TrialData, check_covariate_column
from ..exceptions import DataError, OptionError

__all__ = ["GEE_LINKS", "GEE_VCOVS", "GEEOptions", "gee_dof", "gee_options"]

#: Links of each family (the first is the default).
GEE_LINKS: dict[str, tuple[str, ...]] = {
    "gaussian": ("identity", "log"),
    "binomial": ("logit", "identity", "log"),
    "poisson": ("log", "identity"),
    "negative_binomial": ("log",),
}
#: ``vcov=`` choices of a GEE fit.
GEE_VCOVS = ("model", "robust", "kc", "md", "fg")


@dataclass(frozen=True)
class GEEOptions:
    """The resolved options of one GEE fit (see :func:`~steppedwedge.models.gee.fit_gee`)."""

    family: str
    link: str
    corstr: str
    vcov: str
    dof: float | None
    time: str
    covariates: tuple[str, ...]
    corr_params: np.ndarray | None
    scale: float | None
    scale_method: str
    nb_theta: float | None
    maee: bool | str
    corr_method: str


def gee_options(
    td: Any,
    family: str | None,
    link: str | None,
    corstr: str,
    vcov: str,
    dof: Any,
    time: str,
    covariates: Sequence[str] | None,
    corr_params: Any,
    scale: Any,
    nb_theta: Any,
    maee: Any = False,
    corr_method: Any = "moment",
) -> GEEOptions:
    """Check the options of :func:`~steppedwedge.models.gee.fit_gee` and resolve defaults."""
    if not isinstance(td, TrialData):
        raise TypeError(
            f"`trial_data` must be a steppedwedge TrialData (TrialData.from_frame); "
            f"got {type(td).__name__}."
        )
    fam = _family(td, family)
    lk = _link(fam, link)
    cs = check_option("corstr", corstr, tuple(_gee.CORSTRS))
    if cs == "block-exchangeable" and "individual" not in td.roles:
        raise DataError(
            "corstr='block-exchangeable' (closed cohort) needs the `individual` column: "
            "build the TrialData with individual=..."
        )
    vc = check_option("vcov", vcov, GEE_VCOVS)
    tm = check_option("time", time, ("categorical", "linear", "none"))
    d = gee_dof(dof)
    covs = tuple(covariates or ())
    _check_columns(td, covs)
    cp = _corr_params(cs, corr_params)
    sc, sm = _scale(scale)
    nbt = _nb_theta(nb_theta)
    cm = _check_maee_method(td, fam, cs, cp, covs, maee, corr_method)
    return GEEOptions(fam, lk, cs, vc, d, tm, covs, cp, sc, sm, nbt, maee, cm)


def _family(td: TrialData, family: str | None) -> str:
    """Resolve the family (default: the TrialData's), checking the outcome against another."""
    fam = td.family if family is None else check_option("family", family, tuple(GEE_LINKS))
    if fam == td.family:
        return fam
    y = td.frame["outcome"].to_numpy(np.float64)
    if fam == "binomial" and td.kind == "individual" and not np.all((y == 0) | (y == 1)):
        bad = np.flatnonzero((y != 0) & (y != 1))[:5]
        raise DataError(
            f"`family='binomial'` needs a 0/1 outcome; column "
            f"{td.roles['outcome']!r} has {_vals(y[bad])}."
        )
    if fam in ("poisson", "negative_binomial") and not np.all((y >= 0) & (y == np.round(y))):
        bad = np.flatnonzero((y < 0) | (y != np.round(y)))[:5]
        raise DataError(
            f"`family={fam!r}` needs non-negative integer counts; column "
            f"{td.roles['outcome']!r} has {_vals(y[bad])}."
        )
    return fam


def _vals(a: np.ndarray) -> str:
    return ", ".join(f"{v:g}" for v in a)


def _link(fam: str, link: str | None) -> str:
    if link is None:
        return GEE_LINKS[fam][0]
    if not isinstance(link, str) or link not in GEE_LINKS[fam]:
        listed = ", ".join(repr(x) for x in GEE_LINKS[fam])
        raise OptionError(f"`link` must be one of {listed} for family {fam!r}; got {link!r}.")
    return link


def gee_dof(dof: Any) -> float | None:
    """None (``I - p``) for ``"residual"``, ``inf`` for ``"normal"``, or the positive number."""
    if dof is None or dof == "residual":
        return None
    if dof == "normal":
        return math.inf
    if isinstance(dof, (int, float, np.integer, np.floating)) and not isinstance(dof, bool):
        if not dof > 0:
            raise OptionError(f"`dof` must be positive; got {dof!r}.")
        return float(dof)
    raise OptionError(
        f"`dof` must be 'residual' (I - p), 'normal' or a positive number; got {dof!r}."
    )


def _check_columns(td: TrialData, covs: tuple[str, ...]) -> None:
    """Covariate columns numeric and finite; the offset finite."""
    for c in covs:
        check_covariate_column(td.frame, c)
        s = td.frame[c]
        if not (pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype)):
            raise DataError(
                f"covariate column {c!r} must be numeric (dtype {s.dtype}); encode "
                "categories as 0/1 indicator columns."
            )
        if not np.all(np.isfinite(s.to_numpy(np.float64))):
            raise DataError(f"covariate column {c!r} has missing or infinite values.")
    if "offset" in td.frame.columns and "offset" in td.roles:
        off = td.frame["offset"].to_numpy(np.float64)
        if not np.all(np.isfinite(off)):
            bad = np.flatnonzero(~np.isfinite(off))[:5]
            raise DataError(
                f"`offset` column {td.roles['offset']!r} has non-finite values in rows "
                f"{list(td.frame.index[bad])}."
            )


def _corr_params(cs: str, corr_params: Any) -> np.ndarray | None:
    if corr_params is None:
        return None
    n_par = len(_gee.CORSTRS[cs])
    cp = np.atleast_1d(np.asarray(corr_params, dtype=float))
    if cp.shape != (n_par,) or not np.all(np.isfinite(cp)):
        names = ", ".join(_gee.CORSTRS[cs]) or "none"
        raise OptionError(
            f"`corr_params` for corstr={cs!r} must be {n_par} finite number(s) "
            f"({names}); got {corr_params!r}."
        )
    if cs in ("decay", "ar1") and not 0.0 <= cp[-1] <= 1.0:
        raise OptionError(f"the decay parameter must lie in [0, 1]; got {cp[-1]!r}.")
    return cp


def _scale(scale: Any) -> tuple[float | None, str]:
    """Return ``(fixed scale or None, moment method)``."""
    if isinstance(scale, str):
        return None, check_option("scale", scale, ("geepack", "residual", "bias-corrected"))
    if scale is None:
        return None, "geepack"
    sc = float(scale)
    if not (math.isfinite(sc) and sc > 0):
        raise OptionError(f"`scale` must be a positive number or a method name; got {scale!r}.")
    return sc, "geepack"


def _nb_theta(nb_theta: Any) -> float | None:
    if nb_theta is None:
        return None
    nbt = float(nb_theta)
    if not (math.isfinite(nbt) and nbt > 0):
        raise OptionError(f"`nb_theta` must be a positive number; got {nb_theta!r}.")
    return nbt


def _check_maee_method(
    td: TrialData,
    fam: str,
    cs: str,
    cp: np.ndarray | None,
    covs: tuple[str, ...],
    maee: Any,
    corr_method: Any,
) -> str:
    """Check ``maee`` and ``corr_method`` against the structure and data; return the method."""
    if maee not in (False, True, "geecrt"):
        raise OptionError(f"`maee` must be False, True or 'geecrt'; got {maee!r}.")
    if maee and cs in ("independence", "block-exchangeable"):
        raise OptionError(f"`maee` is not available with corstr={cs!r}.")
    if maee and cp is not None:
        raise OptionError("`maee` adjusts estimated correlations; drop `corr_params` or `maee`.")
    if maee == "geecrt" and td.kind != "individual":
        raise DataError("`maee='geecrt'` needs individual rows (its pairs follow row order).")
    cm = check_option("corr_method", corr_method, ("moment", "cluster-period"))
    if cm != "cluster-period":
        return cm
    if cs not in ("exchangeable", "nested-exchangeable"):
        raise OptionError(
            "`corr_method='cluster-period'` is available for corstr='exchangeable' and "
            f"'nested-exchangeable'; got corstr={cs!r}."
        )
    if maee:
        raise OptionError("`corr_method='cluster-period'` cannot be combined with `maee`.")
    if covs or (td.kind == "aggregate" and not (fam == "binomial" and "trials" in td.roles)):
        raise DataError(
            "`corr_method='cluster-period'` works on whole cluster-period cells: it needs "
            "individual rows (or binomial events/trials) and no covariates."
        )
    return cm
