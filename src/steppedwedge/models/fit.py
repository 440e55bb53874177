"""The public :func:`fit` entry point: dispatch on the outcome family."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from .._validation import check_option
from ..results import FitResult
from .mixed import fit_gaussian

__all__ = ["fit"]

_FAMILIES = ("gaussian", "binomial", "poisson", "negative_binomial")


def fit(
    data: pd.DataFrame,
    *,
    outcome: str,
    cluster: str,
    period: str,
    treatment: str,
    individual: str | None = None,
    family: str = "gaussian",
    covariates: str | None = None,
    random: str = "nested",
    time: str = "categorical",
    knots: Sequence[float] | None = None,
    effect: str = "immediate",
    exposure_window: tuple[int, int] | None = None,
    exposure_time: int | None = None,
    method: str = "reml",
    dof: str | None = None,
    vcov: str = "model",
    missing: str = "raise",
    design: Any = None,
) -> FitResult:
    """Analyse a stepped-wedge trial with a mixed model.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per individual observation (never modified).
    outcome, cluster, period, treatment : str
        Column names.  ``treatment`` is 0/1, or a fraction in (0, 1) for partial or
        delayed (known-shape) effects with ``effect="immediate"``.
    individual : str, optional
        Individual id for cohorts (the same people measured in several periods): adds an
        individual random intercept ``psi2`` on top of ``random``.  The likelihood is then
        evaluated cluster by cluster on the rows (exact; cost linear in clusters, cubic in
        rows per cluster) because individual effects cross the cells.
    family : {"gaussian"}
        Outcome family; other families raise ``ValueError`` for now.
    covariates : str, optional
        Right-hand-side formula of individual- or cluster-level covariates, e.g.
        ``"age + C(sex)"`` (evaluated by patsy).
    random : str
        ``"nested"`` (default: cluster + cluster-period intercepts), ``"cluster"`` (Hussey &
        Hughes), ``"decay"`` (cluster-period effects with covariance ``gamma2 * r^|j-k|``,
        Kasza et al. 2019, as glmmTMB ``ar1(period + 0 | cluster)``), ``"nested+decay"``,
        ``"random-slope"`` (cluster intercept and an independent cluster treatment effect,
        Hughes, Granston & Heagerty 2015), ``"random-slope-corr"`` (correlated), and the
        ``"nested+..."`` variants adding cluster-period effects.
    time : {"categorical", "linear", "spline", "none"}
        Secular trend: one effect per period (default), linear, natural cubic spline with
        interior ``knots`` (period units), or none (warns: assumes no secular trend).
    knots : sequence of float, optional
        Interior knots for ``time="spline"`` (default: the median period).
    effect : {"immediate", "eti", "tate", "pte"}
        Immediate treatment effect (IT); or exposure-time indicators (Kenny et al. 2022)
        with the time-averaged effect over ``exposure_window`` (``"eti"``/``"tate"``, default
        all observed exposure times) or the point effect at ``exposure_time`` (``"pte"``).
    exposure_window : tuple of int, optional
        ``(e1, e2)`` for the TATE.
    exposure_time : int, optional
        ``e`` for the PTE.
    method : {"reml", "ml"}
        Estimation method.
    dof : {"kenward-roger", "satterthwaite", "between-within", "normal"}, optional
        Denominator df rule; default Kenward-Roger for REML and Satterthwaite for ML.  With
        Kenward-Roger the standard error is the adjusted one (pbkrtest ``vcovAdj``).
    vcov : {"model", "robust", "cr2"}
        Model-based or CR2 cluster-robust variance (``"robust"`` = ``"cr2"``, t with I-1 df).
    missing : {"raise", "drop"}
        Missing outcomes/covariates: raise (default) or drop with a warning.
    design : Design, optional
        Check the rows against a design.

    Returns
    -------
    FitResult

    Raises
    ------
    DataError
        Invalid data (non-numeric/infinite/missing outcomes, an individual id in two
        clusters, ...) or a non-identifiable effect (treatment constant within every period,
        covariates collinear with treatment or period).
    ValueError
        Invalid options (e.g. Kenward-Roger with ML), or a family not available yet.

    References
    ----------
    Hussey MA, Hughes JP (2007). Contemp Clin Trials 28:182-191.
    Kasza J et al. (2019). Stat Methods Med Res 28:703-716.
    Hughes JP, Granston TS, Heagerty PJ (2015). Contemp Clin Trials 45:55-60.
    Kenny A et al. (2022). Stat Med 41:4311-4339.
    Kenward MG, Roger JH (1997). Biometrics 53:983-997.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> import steppedwedge.models as m
    >>> rng = np.random.default_rng(3)
    >>> rows = []
    >>> for i in range(8):
    ...     a = rng.normal(0, 0.3)
    ...     for j in range(5):
    ...         x = float(j > i % 4)
    ...         rows += [(i, j, x, a + 0.5 * x + rng.normal()) for _ in range(10)]
    >>> df = pd.DataFrame(rows, columns=["clinic", "month", "arm", "y"])
    >>> res = m.fit(df, outcome="y", cluster="clinic", period="month", treatment="arm")
    >>> round(res.estimate, 3), round(res.df, 1)
    (0.361, 31.2)
    >>> res.tidy().columns.tolist()
    ['term', 'estimate', 'std_error', 'statistic', 'df', 'p_value', 'conf_low', 'conf_high']
    """
    check_option("family", family, _FAMILIES)
    if family != "gaussian":
        raise ValueError(f"family={family!r} is not available yet; only family='gaussian' can be fitted.")
    return fit_gaussian(
        data, outcome=outcome, cluster=cluster, period=period, treatment=treatment, individual=individual,
        covariates=covariates, random=random, time=time, knots=knots, effect=effect,
        exposure_window=exposure_window, exposure_time=exposure_time, method=method, dof=dof, vcov=vcov,
        missing=missing, design=design,
    )
