r"""Design-based estimators on cluster-period summaries, with randomisation inference.

Each cluster-period cell is reduced to one number on the analysis scale (the cell mean;
the empirical log-odds ``log((y + 0.5) / (n - y + 0.5))`` for binomial outcomes; the log
rate ``log((y + 0.5) / exposure)`` for counts; ``link="identity"`` gives proportions or
rates), as :func:`steppedwedge.permutation_test`, and the estimators below compare those
summaries.  Their validity rests on the randomisation alone: the p-values re-draw the
allocation from the space the trial was randomised from (``allocation=``, else every
assignment of the clusters to the observed sequences, sequence sizes kept).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..._core.permutation import invert_test, permutation_pvalue, treatment_batch
from ..._typing import RNGLike
from ..._validation import check_option, check_positive_int, normalise_rng
from ...data import TrialData
from ...exceptions import DataError, OptionError
from ...inference import _permutation_ci as ci
from ...inference._permutation_space import cell_arrays, draw_assignments, space_of
from ...inference.permutation import permutation_test
from ..cluster_level import _SUMMARY
from ..spec import AnalysisSpec
from . import _kernels as k
from ._result import DesignBasedResult

__all__ = ["METHODS", "fit_design_based", "fit_design_based_spec"]

METHODS = ("vertical", "hughes", "synthetic-control", "crossover")
_VARIANTS = {
    "vertical": ("clusters", "inverse-variance"),
    "hughes": ("clusters", "equal", "exchangeable"),
    "synthetic-control": k.SC_VARIANTS,
    "crossover": k.CO_VARIANTS,
}
_DEFAULT_VARIANT = {
    "vertical": "clusters",
    "hughes": "clusters",
    "synthetic-control": "SC-2",
    "crossover": "CO-2",
}


def fit_design_based(
    data: pd.DataFrame,
    *,
    outcome: str,
    cluster: str,
    period: str,
    treatment: str,
    method: str = "vertical",
    family: str = "gaussian",
    link: str | None = None,
    exposure: str | None = None,
    trials: str | None = None,
    weights: str | None = None,
    working_icc: float = 0.1,
    n_permutations: int | None = None,
    rng: RNGLike = None,
    allocation: Any = None,
    design: Any = None,
    confidence_level: float = 0.95,
    missing: str = "raise",
    period_order: Sequence[Any] | None = None,
) -> DesignBasedResult:
    r"""Vertical, Hughes, synthetic-control and crossover estimators of a stepped-wedge trial.

    Parameters
    ----------
    data : pandas.DataFrame
        Trial rows (individual or cluster-period aggregates); never modified.
    outcome, cluster, period, treatment : str
        Column names; ``treatment`` is 0/1.
    method : {"vertical", "hughes", "synthetic-control", "crossover"}
        ``"vertical"``: Thompson et al. (2018), per period the mean summary of treated
        minus control clusters, combined over periods; randomisation p-value and interval
        (:func:`steppedwedge.permutation_test` with ``statistic="cluster-period"``).
        ``"hughes"``: the within-period contrasts with weights fixed by the design and the
        closed-form permutation standard error (Hughes et al. 2020; see Notes).
        ``"synthetic-control"`` / ``"crossover"``: Kennedy-Shaffer et al. (2020), see Notes;
        randomisation p-values (and, for the crossover estimator, an interval by inversion).
    family, link, exposure, trials : optional
        The cell summaries, as :func:`steppedwedge.permutation_test` (default scale:
        identity, logit for binomial, log for counts).
    weights : str, optional
        ``"vertical"``: ``"clusters"`` (``n1 n0 / (n1 + n0)``, default) or
        ``"inverse-variance"`` (the period's pooled between-cluster variance, Thompson);
        ``"hughes"``: ``"clusters"`` (default), ``"equal"`` or ``"exchangeable"`` (the
        variance-optimal combination under a working exchangeable correlation
        ``working_icc`` of a cluster's summaries); ``"synthetic-control"``: ``"SC-1"``
        (mean of the contrasts) or ``"SC-2"`` (inverse pre-period MSPE within each start
        group, default); ``"crossover"``: ``"CO-1"`` ... ``"CO-4"`` (default ``"CO-2"``).
    working_icc : float, default 0.1
        ``weights="exchangeable"`` only: the working correlation (fixed in advance, so the
        estimator stays unbiased whatever the true correlation).
    n_permutations : int, optional
        Re-randomisations (the whole space is enumerated when it is no larger).  Default
        9999 (vertical, crossover), 999 (synthetic control: a least-squares fit per treated
        cluster-period per draw), 0 for Hughes (its standard error is closed form).
    rng : int, numpy.random.Generator or None
    allocation, design : optional
        The allocation space (:func:`steppedwedge.randomise`) or the design whose sequences
        the clusters were allocated to, as :func:`steppedwedge.permutation_test`.
    confidence_level : float, default 0.95
    missing, period_order
        As :meth:`steppedwedge.TrialData.from_frame`.

    Returns
    -------
    DesignBasedResult

    Raises
    ------
    DataError
        Non-0/1 treatment (all but the vertical analysis), missing cells (Hughes,
        synthetic control), a cluster treated from the first period (synthetic control:
        no pre-period), data that do not match ``allocation``.
    OptionError
        Unknown or misplaced options.

    Notes
    -----
    **Vertical** (Thompson et al. 2018): ``theta_j = mean_{x=1} s_ij - mean_{x=0} s_ij`` in
    each period with both conditions, ``theta = sum_j w_j theta_j / sum_j w_j``.  The
    randomisation test and its inversion are exact on the identity scale; on the log and
    logit scales the interval assumes a constant rate (odds) ratio and scales the treated
    cells' counts back (see :func:`steppedwedge.permutation_test`).

    **Hughes et al. (2020)**: the estimator is ``sum_i a_{s(i)} . s_i``, a combination of
    the period contrasts whose coefficients ``a_s`` depend only on each cluster's sequence
    (the weights are fixed by the design, not estimated), so under the randomisation it is
    unbiased for a constant effect whatever the mean and covariance of the outcomes.  Its
    standard error is the exact variance of that combination over random permutations of
    the clusters' sequences (Hoeffding's combinatorial formula,
    ``sum_{k,i} D_ki^2 / (I - 1)`` with ``D`` the doubly centred ``a_k . s0_i``), evaluated
    at the implied control summaries ``s0 = s - theta x``; the interval is normal.  This
    follows the estimator's description (period contrasts, design-fixed weights,
    permutation variance); the paper's worked numbers were not available to us, so the
    implementation is checked against a brute-force enumeration of its definition
    (``tests/test_vertical.py``).  The closed form assumes every permutation of the
    sequences was possible (complete randomisation); with ``allocation=`` the randomisation
    p-value follows the actual space.

    **Synthetic control** (Kennedy-Shaffer et al. 2020): in each period with treated and
    control clusters, each treated cluster is compared with the convex combination of the
    still-untreated clusters that best fits its own pre-start summaries (least squares on
    the simplex, the target of ``Synth::synth`` in the authors' code); SC-1 averages the
    contrasts, SC-2 weights them by inverse pre-period MSPE, each start group weighing 1.
    **Crossover**: for each period ``j`` the change ``s_ij - s_i,j-1`` of the clusters that
    switch at ``j`` minus the mean change of the comparison clusters (control in both
    periods; CO-3/CO-4 also those treated in both), periods weighted equally (CO-1, CO-3)
    or by ``(1/n_switch + 1/n_comparison)^-1`` (CO-2, CO-4).  Definitions as the authors'
    code (github.com/leekshaffer/SW-CRT-analysis), on the cell-summary scale (they contrast
    cluster means by a difference, log ratio or log odds ratio).

    References
    ----------
    Thompson JA, Davey C, Fielding K, Hargreaves JR, Hayes RJ (2018). Robust analysis of
    stepped wedge trials using cluster-level summaries within periods. Stat Med
    37:2487-2500.
    Hughes JP, Heagerty PJ, Xia F, Ren Y (2020). Robust inference for the stepped wedge
    design. Biometrics 76:119-130.
    Kennedy-Shaffer L, de Gruttola V, Lipsitch M (2020). Novel methods for the analysis of
    stepped wedge cluster randomized trials. Stat Med 39:815-844.
    Hoeffding W (1951). A combinatorial central limit theorem. Ann Math Stat 22:558-566.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> import steppedwedge as sw
    >>> rng = np.random.default_rng(1)
    >>> rows = [(i, t, float(t > i % 4), rng.normal(0.6 * (t > i % 4) + 0.2 * t))
    ...         for i in range(8) for t in range(5)]
    >>> df = pd.DataFrame(rows, columns=["clinic", "month", "arm", "y"])
    >>> res = sw.fit(df, outcome="y", cluster="clinic", period="month", treatment="arm",
    ...              method="hughes")
    >>> round(res.estimate, 3), round(res.std_error, 3)
    (1.454, 0.295)
    """
    check_option("method", method, METHODS)
    spec = AnalysisSpec.from_options(
        outcome=outcome, cluster=cluster, period=period, treatment=treatment, method=method,
        family=family, link=link, exposure=exposure, trials=trials, missing=missing,
        design=design,
    )  # fmt: skip
    return fit_design_based_spec(
        data, spec, weights=weights, working_icc=working_icc, n_permutations=n_permutations,
        rng=rng, allocation=allocation, confidence_level=confidence_level,
        period_order=period_order,
    )  # fmt: skip


def fit_design_based_spec(
    data: pd.DataFrame,
    spec: AnalysisSpec,
    *,
    weights: str | None = None,
    working_icc: float = 0.1,
    n_permutations: int | None = None,
    rng: RNGLike = None,
    allocation: Any = None,
    confidence_level: float = 0.95,
    period_order: Sequence[Any] | None = None,
) -> DesignBasedResult:
    """Fit the design-based estimator ``spec.method`` (the entry of :func:`steppedwedge.fit`).

    Roles, family, link, ``missing`` and ``design`` come from ``spec`` (validated there);
    the numerical options are those of :func:`fit_design_based`.

    Parameters
    ----------
    data : pandas.DataFrame
        Trial rows; never modified.
    spec : AnalysisSpec
        The analysis (``spec.method`` one of :data:`METHODS`).
    weights, working_icc, n_permutations, rng, allocation, confidence_level, period_order
        As :func:`fit_design_based`.

    Returns
    -------
    DesignBasedResult

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from steppedwedge.models.spec import AnalysisSpec
    >>> from steppedwedge.models.design_based import fit_design_based_spec
    >>> rng = np.random.default_rng(1)
    >>> rows = [(i, t, float(t > i % 4), rng.normal(0.6 * (t > i % 4) + 0.2 * t))
    ...         for i in range(8) for t in range(5)]
    >>> df = pd.DataFrame(rows, columns=["clinic", "month", "arm", "y"])
    >>> spec = AnalysisSpec.from_options(outcome="y", cluster="clinic", period="month",
    ...                                  treatment="arm", method="hughes")
    >>> round(fit_design_based_spec(df, spec).estimate, 3)
    1.454

    References
    ----------
    Hughes JP, Heagerty PJ, Xia F, Ren Y (2020). Biometrics 76:119-130.
    """
    method = check_option("method", spec.method, METHODS)
    variant, b = _numerics(method, weights, working_icc, confidence_level, n_permutations)
    # with `allocation`, the design is the allocation's (the permutation test refuses both)
    frame_spec = spec if allocation is None else dataclasses.replace(spec, design=None)
    td = frame_spec.trial_data(data, period_order=period_order)
    if method != "vertical":
        td.require_period_order(f"method={method!r}")
    lk = spec.link  # the spec resolved the family default
    allowed = {"gaussian": ("identity",), "binomial": ("logit", "identity")}.get(
        td.family, ("log", "identity")
    )
    check_option("link", lk, allowed)
    common = dict(
        method=method,
        variant=variant,
        link=lk,
        scale=_SUMMARY[(td.family, lk)],
        outcome=spec.outcome,
        n_clusters=td.n_clusters,
        n_periods=td.n_periods,
        confidence_level=float(confidence_level),
    )
    if method == "vertical":
        return _fit_vertical(data, spec, td, variant, b, rng, allocation, common)
    return _fit_other(
        td, method, variant, lk, float(working_icc), b, rng, allocation, spec.design, common
    )


def _numerics(
    method: str,
    weights: str | None,
    working_icc: float,
    confidence_level: float,
    n_permutations: int | None,
) -> tuple[str, int]:
    """Validate the numerical options; return the weighting variant and the draws ``B``."""
    variant = _DEFAULT_VARIANT[method] if weights is None else weights
    check_option("weights", variant, _VARIANTS[method])
    if method != "hughes" or variant != "exchangeable":
        if working_icc != 0.1:
            raise OptionError("`working_icc` applies to method='hughes', weights='exchangeable'.")
    elif not 0.0 <= float(working_icc) < 1.0:
        raise OptionError(f"`working_icc` must lie in [0, 1); got {working_icc!r}.")
    if not 0.0 < float(confidence_level) < 1.0:
        raise OptionError(f"`confidence_level` must lie in (0, 1); got {confidence_level!r}.")
    b = {"hughes": 0, "synthetic-control": 999}.get(method, 9999)
    if n_permutations is not None:
        b = 0 if method == "hughes" and n_permutations == 0 else n_permutations
        if b:
            check_positive_int("n_permutations", b)
    return variant, b


def _fit_vertical(
    data: pd.DataFrame,
    spec: AnalysisSpec,
    td: TrialData,
    variant: str,
    b: int,
    rng: RNGLike,
    allocation: Any,
    common: dict[str, Any],
) -> DesignBasedResult:
    """Run the vertical analysis: :func:`permutation_test` of the cluster-period statistic."""
    lk = str(common["link"])
    res = permutation_test(
        data,
        outcome=spec.outcome,
        cluster=spec.cluster,
        period=spec.period,
        treatment=spec.treatment,
        allocation=allocation,
        design=spec.design,
        statistic="cluster-period",
        family=spec.family,
        link=lk,
        exposure=spec.exposure,
        trials=spec.trials,
        weights=variant,
        n_permutations=b,
        rng=rng,
        confidence_level=float(common["confidence_level"]),
        alpha=None,
    )
    y, _, _ = cell_arrays(td, lk, "none")
    x = np.where(td.cells().observed, td.cells().treatment, np.nan)
    return DesignBasedResult(
        estimate=res.estimate,
        table=_period_table(td, y, x, variant),
        randomisation_pvalue=res.pvalue,
        interval=res.interval,
        n_permutations=res.n_permutations,
        exact=res.exact,
        null_distribution=res.null_distribution,
        messages=res.messages,
        _invert=res.conf_int,
        **common,
    )


def _lab(x: Any) -> str:
    return str(x.item() if isinstance(x, np.generic) else x)


def _period_table(td: TrialData, y: np.ndarray, x: np.ndarray, variant: str) -> pd.DataFrame:
    pc = k.period_contrasts(y, x)
    w = k.combine_weights(pc, variant)
    keep = (pc["n1"] > 0) & (pc["n0"] > 0)
    table: pd.DataFrame = pd.DataFrame(
        {
            "period": [td.periods[int(j)] for j in np.flatnonzero(keep)],
            "n_treated": pc["n1"][keep].astype(int),
            "n_control": pc["n0"][keep].astype(int),
            "mean_treated": pc["mean1"][keep],
            "mean_control": pc["mean0"][keep],
            "contrast": pc["contrast"][keep],
            "weight": w[keep],
        }
    )
    return table


def _complete(td: TrialData, method: str) -> None:
    cells = td.cells()
    if not cells.observed.all():
        i, j = np.argwhere(~cells.observed)[0]
        raise DataError(
            f"method={method!r} needs every cluster observed in every period; cluster "
            f"{_lab(td.clusters[i])} has no rows in period {_lab(td.periods[j])}. Use "
            "method='vertical' or 'crossover', which use the observed cells only."
        )


def _binary_treatment(td: TrialData, method: str) -> np.ndarray:
    cells = td.cells()
    x = np.where(cells.observed, cells.treatment, np.nan)
    bad = np.isfinite(x) & (x != 0) & (x != 1)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise DataError(
            f"method={method!r} needs a 0/1 `{td.roles['treatment']}`; cluster "
            f"{_lab(td.clusters[i])} has {x[i, j]:g} in period {_lab(td.periods[j])}."
        )
    return x


def _fit_other(
    td: TrialData,
    method: str,
    variant: str,
    lk: str,
    icc: float,
    b: int,
    rng: RNGLike,
    allocation: Any,
    design: Any,
    common: dict[str, Any],
) -> DesignBasedResult:
    """Hughes, synthetic control and crossover: estimate, table and randomisation inference."""
    x = _binary_treatment(td, method)
    if method in ("hughes", "synthetic-control"):
        _complete(td, method)
    y, _, _ = cell_arrays(td, lk, "none")
    if method == "synthetic-control":
        _pre_periods(td, x)
    stat = _statistic(method, variant, icc)
    est = float(stat(y, np.nan_to_num(x)[None])[0])
    if not math.isfinite(est):
        raise DataError(f"method={method!r} has no contrast: no period compares the conditions.")
    extra: dict[str, Any] = {"table": _table(td, method, variant, y, x, icc)}
    messages: list[str] = []
    if method == "hughes":
        coef = k.sequence_weights(np.nan_to_num(x), variant, icc)
        se = math.sqrt(max(k.hughes_variance(coef, y - est * np.nan_to_num(x)), 0.0))
        extra.update(std_error=se, df=math.inf)
        if allocation is not None:
            messages.append(
                "The closed-form SE assumes complete randomisation of the sequences; the "
                "randomisation p-value (n_permutations > 0) follows `allocation`."
            )
    if b:
        space = space_of(td, x, allocation, design)
        assignments, exact = draw_assignments(space.alloc, b, normalise_rng(rng))
        xs = np.nan_to_num(treatment_batch(space.seq_matrix, assignments, space.columns))
        null = stat(y, xs)
        p = permutation_pvalue(est, null, "two-sided", exact=exact)
        n_failed = int(np.count_nonzero(~np.isfinite(null)))
        if n_failed:
            messages.append(f"{n_failed} re-randomisation(s) gave no estimate (left out).")
        extra.update(
            randomisation_pvalue=float(p),
            n_permutations=int(null.size),
            exact=exact,
            null_distribution=null,
        )
        if method == "crossover":
            inverter = _inverter(td, lk, y, x, xs, stat, est, null, exact)
            extra["interval"] = inverter(float(common["confidence_level"]))
            extra["_invert"] = inverter
    return DesignBasedResult(estimate=est, messages=tuple(messages), **extra, **common)


def _statistic(method: str, variant: str, icc: float) -> Any:
    """``f(y, xs) -> (B,)`` estimates for a batch of treatment matrices."""
    if method == "crossover":
        return lambda y, xs: k.crossover_estimates(y, xs, variant)
    if method == "hughes":
        return lambda y, xs: np.array(
            [float(np.sum(k.sequence_weights(xb, variant, icc) * y)) for xb in xs]
        )
    return lambda y, xs: np.array(
        [k.synthetic_estimate(k.synthetic_control(y, xb), variant) for xb in xs]
    )


def _pre_periods(td: TrialData, x: np.ndarray) -> None:
    first = np.flatnonzero(x[:, 0] == 1)
    if first.size:
        raise DataError(
            f"method='synthetic-control' fits each treated cluster's pre-start periods; "
            f"cluster {_lab(td.clusters[first[0]])} is treated from the first period "
            f"({_lab(td.periods[0])}) and has none."
        )


def _table(
    td: TrialData, method: str, variant: str, y: np.ndarray, x: np.ndarray, icc: float
) -> pd.DataFrame:
    x0 = np.nan_to_num(x)
    if method == "hughes":
        pc = k.period_contrasts(y, x0)
        coef = k.sequence_weights(x0, variant, icc)
        keep = (pc["n1"] > 0) & (pc["n0"] > 0)
        w = np.where(x0 == 1, coef, 0.0).sum(axis=0)  # weight of each period's contrast
        out: pd.DataFrame = pd.DataFrame(
            {
                "period": [td.periods[int(j)] for j in np.flatnonzero(keep)],
                "n_treated": pc["n1"][keep].astype(int),
                "n_control": pc["n0"][keep].astype(int),
                "contrast": pc["contrast"][keep],
                "weight": w[keep],
            }
        )
        return out
    if method == "synthetic-control":
        rows = k.synthetic_control(y, x0)
        out = pd.DataFrame(
            {
                "period": [td.periods[r[0]] for r in rows],
                "cluster": [td.clusters[r[1]] for r in rows],
                "start": [td.periods[r[2]] for r in rows],
                "contrast": [r[3] for r in rows],
                "mspe": [r[4] for r in rows],
            }
        )
        inv = 1.0 / out["mspe"].to_numpy()
        grp = out.groupby("start")["mspe"].transform(lambda m: (1.0 / m).sum()).to_numpy()
        out["weight"] = 1.0 / len(out) if variant == "SC-1" else inv / grp / len(np.unique(grp))
        return out
    rows = []
    both = variant in ("CO-3", "CO-4")
    for j in range(1, y.shape[1]):
        kind = x0[:, j] + x0[:, j - 1]
        d = y[:, j] - y[:, j - 1]
        sw_, cm = (
            (kind == 1) & np.isfinite(d),
            ((kind == 0) | (both & (kind == 2))) & np.isfinite(d),
        )
        if sw_.any() and cm.any():
            n1, n0 = int(sw_.sum()), int(cm.sum())
            w = 1.0 / (1 / n1 + 1 / n0) if variant in ("CO-2", "CO-4") else 1.0
            rows.append((td.periods[j], n1, n0, float(d[sw_].mean() - d[cm].mean()), w))
    out = pd.DataFrame(
        rows, columns=["period", "n_switching", "n_comparison", "contrast", "weight"]
    )
    out["weight"] = out["weight"] / out["weight"].sum()
    return out


def _inverter(
    td: TrialData,
    lk: str,
    y: np.ndarray,
    x: np.ndarray,
    xs: np.ndarray,
    stat: Any,
    est: float,
    null: np.ndarray,
    exact: bool,
) -> Callable[[float], tuple[float, float]]:
    """Randomisation interval of the crossover estimate (same re-randomisations per theta)."""
    shift, additive = ci.cell_shift(td, lk, y)
    x_obs = np.nan_to_num(x)[None]

    def pfun(theta: float) -> float:
        yy = shift(theta)
        return permutation_pvalue(float(stat(yy, x_obs)[0]), stat(yy, xs), "two-sided", exact=exact)

    fin = null[np.isfinite(null)]
    n_min = 1.0 / fin.size if exact else 1.0 / (1 + fin.size)
    reach = math.inf if additive else ci.LINK_MAX_DISTANCE
    scale = float(np.std(fin)) if fin.size > 1 else 1.0

    def invert(level: float) -> tuple[float, float]:
        if n_min > 1.0 - level + 1e-12:
            return (-math.inf, math.inf)
        return invert_test(pfun, est, scale, 1.0 - level, rtol=ci.CELL_RTOL, max_distance=reach)

    return invert
