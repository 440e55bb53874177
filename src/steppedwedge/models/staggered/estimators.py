"""Staggered-rollout estimators on trial rows: panel building, checks and dispatch.

Each cluster is a unit; each cluster-period cell is reduced to one number (the mean for
Gaussian outcomes; the proportion or empirical log-odds for binomial ones; the log rate
``log((events + 0.5) / exposure)`` or the rate for counts, as
:func:`~steppedwedge.models.cluster_level.fit_cluster_summary`), and the estimators work on
that balanced cluster-by-period panel.  On the log scale the estimands are differences of
mean log rates: ``exp(estimate)`` is a ratio of geometric-mean rates, not of arithmetic ones.

The estimators are written here rather than taken from a Python DiD package: they are a few
cohort-by-period means and covariances, the packages' inputs differ (unit-level panels
without exposure), and none reproduces the design-based (Roth & Sant'Anna) standard errors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..._core.blas import single_threaded_blas
from ..._validation import check_option
from ..._warnings import warn
from ...data import TrialData
from ...exceptions import DataError, MissingDataWarning, OptionError, SmallSampleWarning
from ..cluster_level import _SUMMARY, _cell_summaries
from ..spec import AnalysisSpec
from . import _engine as eng
from ._imputation import imputation
from ._result import StaggeredResult, _curve

__all__ = ["fit_staggered", "fit_staggered_spec"]

METHODS = ("efficient-staggered", "callaway-santanna", "sun-abraham", "imputation")
_ESTIMANDS = ("simple", "cohort", "calendar", "event-time")
_CONTROLS = ("not-yet-treated", "never-treated", "last-treated")
_LINKS = {
    "gaussian": ("identity",),
    "binomial": ("identity", "logit"),
    "poisson": ("log", "identity"),
    "negative_binomial": ("log", "identity"),
}


def _lab(x: Any) -> str:
    return str(x.item() if isinstance(x, np.generic) else x)


def _panel(td: TrialData, link: str, unbalanced: str) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Build the balanced cluster-by-period summaries, treatment matrix and kept clusters."""
    cells = td.cells()
    ci, pj, _, s, _ = _cell_summaries(td, link, "none")
    n_i, n_t = cells.shape
    y = np.full((n_i, n_t), np.nan)
    y[ci, pj] = s
    keep = np.arange(n_i)
    missing = ~cells.observed
    if missing.any():
        bad = np.nonzero(missing.any(axis=1))[0]
        where = "; ".join(
            f"cluster {_lab(td.clusters[i])}: period(s) "
            + ", ".join(_lab(td.periods[j]) for j in np.nonzero(missing[i])[0][:5])
            for i in bad[:5]
        )
        if unbalanced != "drop":
            raise DataError(
                f"The staggered estimators need a balanced panel, but {len(bad)} cluster(s) "
                f"have no rows in some periods ({where}{'; ...' if len(bad) > 5 else ''}). "
                "Pass unbalanced='drop' to analyse only the complete clusters."
            )
        warn(
            f"unbalanced='drop': dropped {len(bad)} cluster(s) with missing periods ({where}).",
            MissingDataWarning,
        )
        keep = np.nonzero(~missing.any(axis=1))[0]
    x = cells.treatment[keep]
    frac = (x != 0) & (x != 1)
    if frac.any():
        i, j = np.argwhere(frac)[0]
        raise DataError(
            f"Staggered-rollout estimators need a 0/1 `{td.roles['treatment']}`; cluster "
            f"{_lab(td.clusters[keep[i]])} has {x[i, j]:g} in period {_lab(td.periods[j])}."
        )
    return y[keep], x, [td.clusters[i] for i in keep]


def _cohorts(x: np.ndarray) -> np.ndarray:
    """First treated period index of each cluster (``T`` if never treated)."""
    n_t = x.shape[1]
    on = x.astype(bool)
    out: np.ndarray = np.where(on.any(axis=1), on.argmax(axis=1), n_t)
    return out


def _check_cohorts(
    cohort: np.ndarray, clusters: list[Any], periods: pd.Index, method: str, control: str
) -> list[str]:
    """Refuse rollouts the estimator cannot use; return notes on the cohorts."""
    n_t = len(periods)
    glist = np.unique(cohort)
    name = {
        int(g): ("never treated" if g == n_t else f"starting {_lab(periods[g])}") for g in glist
    }

    def members(g: int) -> str:
        ids = [_lab(c) for c, k in zip(clusters, cohort, strict=True) if k == g]
        return ", ".join(ids[:6]) + (", ..." if len(ids) > 6 else "")

    if len(glist) < 2:
        raise DataError(
            f"Every cluster is in one cohort ({name[int(glist[0])]}): there is no "
            "not-yet-treated comparison for any cluster-period."
        )
    if control == "never-treated" and glist.max() != n_t:
        raise OptionError(
            "control_group='never-treated' needs clusters never treated within the panel; "
            "every cluster starts treatment. Use 'not-yet-treated'."
        )
    if method != "efficient-staggered" and glist.min() == 0:
        raise DataError(
            f"Cohort {name[0]} (clusters {members(0)}) is treated from the first period: "
            f"it has no pre-treatment period, so method={method!r} cannot compare it. Drop "
            "these clusters (or use method='efficient-staggered')."
        )
    gmax = int(glist.max())
    notes = []
    if gmax < n_t:
        notes.append(
            f"Cohort {name[gmax]} (clusters {members(gmax)}) is the last to start: no "
            "not-yet-treated comparison exists from then on, so it serves only as a "
            f"comparison and periods from {_lab(periods[gmax])} are not used."
        )
    return notes


def _weights(
    cs: eng.CohortSummaries, n_t: int, estimand: str, e: int | None = None, base: str = ""
) -> np.ndarray:
    kind = "event" if estimand == "event-time" else estimand
    return eng.att_weights(cs.g, cs.n, n_t, kind, e, first_period=int(base == "varying"))


def _many(
    cs: eng.CohortSummaries,
    weights: list[np.ndarray],
    spec: dict[str, Any],
    y: np.ndarray,
    cohort: np.ndarray,
    chunk: int = 4096,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Any]]:
    """(estimates, SEs, Neyman SEs, betas) of several estimands (weights on ATT(g, t))."""
    if spec["method"] == "imputation":
        fits = [imputation(y, cohort, w, cs.g) for w in weights]
        est = np.array([f.estimate for f in fits])
        se = np.array([f.std_error for f in fits])
        return est, se, se, [None] * len(fits)
    out: list[list[Any]] = [[], [], [], []]
    full = None if spec["use_did_a0"] else eng.full_a0(cs.g, y.shape[1])
    for start in range(0, len(weights), chunk):
        cons = [
            eng.contrast_for(cs.g, cs.n, w, spec["rule"], spec["base"])
            for w in weights[start : start + chunk]
        ]
        a_theta = np.stack([c.a_theta for c in cons])
        if full is None:
            a_0 = np.stack([c.a_0 for c in cons])
        else:
            a_0 = np.broadcast_to(full, (len(cons), *full.shape))
        fit = eng.efficient(cs, a_theta, a_0, spec["beta"])
        if fit.negative_variance and not spec.get("quiet"):
            warn(
                "The refined (design-based) variance estimate is negative; its standard "
                "error is set to 0. Use std_error_neyman.",
                SmallSampleWarning,
            )
        for lst, val in zip(out, (fit.estimate, fit.std_error, fit.std_error_neyman), strict=False):
            lst.extend(val.tolist())
        out[3].extend(list(fit.beta))
    return np.array(out[0]), np.array(out[1]), np.array(out[2]), out[3]


def _event_vcov(
    cs: eng.CohortSummaries,
    rows: list[tuple[str, np.ndarray, dict[str, Any]]],
    spec: dict[str, Any],
    betas: list[Any],
) -> tuple[pd.DataFrame, pd.DataFrame] | tuple[None, None]:
    """Joint (design-based, Neyman) covariance of the event-time rows (not for imputation)."""
    if spec["method"] == "imputation" or not rows:
        return None, None
    n_t = cs.ybar.shape[1]
    cons = [eng.contrast_for(cs.g, cs.n, w, spec["rule"], spec["base"]) for _, w, _ in rows]
    a_theta = np.stack([c.a_theta for c in cons])
    if spec["use_did_a0"]:
        a_0 = np.stack([c.a_0 for c in cons])
    else:
        full = eng.full_a0(cs.g, n_t)
        a_0 = np.broadcast_to(full, (len(cons), *full.shape))
    vcv, vcv_n = eng.joint_vcov(cs, a_theta, a_0, np.array(betas, dtype=float))
    names = [r[0] for r in rows]
    return (
        pd.DataFrame(vcv, index=names, columns=names),
        pd.DataFrame(vcv_n, index=names, columns=names),
    )


def _one(
    cs: eng.CohortSummaries,
    weights: np.ndarray,
    spec: dict[str, Any],
    y: np.ndarray,
    cohort: np.ndarray,
) -> tuple[float, float, float, np.ndarray | None]:
    """(estimate, SE, Neyman SE, beta) of one estimand."""
    est, se, se_n, b = _many(cs, [weights], spec, y, cohort)
    return float(est[0]), float(se[0]), float(se_n[0]), b[0]


def fit_staggered(
    data: pd.DataFrame,
    *,
    outcome: str,
    cluster: str,
    period: str,
    treatment: str,
    method: str = "efficient-staggered",
    estimand: str = "simple",
    event_times: Sequence[int] | None = None,
    family: str = "gaussian",
    link: str | None = None,
    exposure: str | None = None,
    offset: str | None = None,
    trials: str | None = None,
    beta: float | Sequence[float] | None = None,
    use_did_a0: bool = True,
    control_group: str = "not-yet-treated",
    base_period: str | None = None,
    n_permutations: int = 0,
    rng: Any = None,
    unbalanced: str = "raise",
    missing: str = "raise",
    design: Any = None,
    period_order: Sequence[Any] | None = None,
) -> StaggeredResult:
    """Estimators for randomised staggered rollouts (stepped-wedge timing as the design).

    Parameters
    ----------
    data : pandas.DataFrame
        Trial rows (individual rows or one row per cluster-period; never modified).
    outcome, cluster, period, treatment : str
        Column names; ``treatment`` is 0/1 and switches on at the cluster's start period.
    method : {"efficient-staggered", "callaway-santanna", "sun-abraham", "imputation"}
        ``"efficient-staggered"``: Roth & Sant'Anna (2023), as R ``staggered::staggered``;
        ``"callaway-santanna"``: ``beta = 1`` with not-yet-treated (or never-treated)
        comparisons, as ``staggered_cs`` and ``did::att_gt``; ``"sun-abraham"``: ``beta = 1``
        with the last-treated cohort (the never-treated clusters, if any) as the only
        comparison, as ``staggered_sa``;
        ``"imputation"``: Borusyak, Jaravel & Spiess (2024).
    estimand : {"simple", "cohort", "calendar", "event-time"}
        Aggregation of the group-time effects ``ATT(g, t)`` (Roth & Sant'Anna section 2.3):
        size-weighted over all identified post-treatment cells; mean over each cohort's
        periods, size-weighted; mean over periods of the size-weighted mean of the cohorts
        treated by then; or by event time ``t - g`` (``event_times``).
    event_times : sequence of int, optional
        Event times for ``estimand="event-time"`` (default: every ``e >= 0`` with a
        comparison; negative values are pre-treatment placebos, not for ``"imputation"``).
        The headline estimate is the estimator of the mean of the non-negative event-time
        effects.
    family, link, exposure, offset, trials : optional
        Cell summary: Gaussian mean; binomial proportion (``link="identity"``, default) or
        empirical log-odds (``"logit"``); counts: log rate ``log((y + 0.5) / exposure)``
        (``"log"``, default) or rate (``"identity"``).
    beta : float or sequence, optional
        Efficient estimator only: a fixed ``beta`` instead of the plug-in ``beta*``
        (``1``: Callaway-Sant'Anna with not-yet-treated; ``0``: the simple difference in
        means), as the ``staggered`` package.
    use_did_a0 : bool, default True
        Efficient estimator: adjust by the difference-in-differences pre-treatment contrast
        (``staggered``'s default) or, if False, by every pre-treatment cohort comparison.
    control_group : {"not-yet-treated", "never-treated", "last-treated"}
        Comparison cohorts of each ``ATT(g, t)``.  ``"sun-abraham"`` always uses
        ``"last-treated"``; ``"never-treated"`` (needs never-treated clusters) reproduces
        ``did``'s default.
    base_period : {"varying", "universal"}, optional
        Base of pre-treatment placebo effects: ``t - 1`` (``"varying"``, did's default, and
        the default of ``"callaway-santanna"``) or ``g - 1`` (``"universal"``, as
        ``staggered``; the default otherwise).  Post-treatment effects always use ``g - 1``.
    n_permutations : int, default 0
        Draws of the Fisher randomisation test: cohort labels permuted among clusters
        (complete randomisation of the rollout), statistic ``estimate / SE`` recomputed.
    rng : numpy.random.Generator or int, optional
        Source of the permutations.
    unbalanced : {"raise", "drop"}
        A cluster with no rows in some period: :class:`DataError` naming it (default) or
        drop such clusters with a :class:`MissingDataWarning` (as ``staggered``).
    missing, design, period_order
        As :meth:`steppedwedge.TrialData.from_frame`.

    Returns
    -------
    StaggeredResult

    Raises
    ------
    DataError
        Unbalanced panel, treatment reversal or non-0/1 treatment, a single cohort (no
        comparison), a cohort treated from the first period (DiD methods and imputation),
        a cohort of one cluster (efficient estimator), event times without comparisons.
    OptionError
        Unknown or conflicting options.

    Notes
    -----
    Validated against R ``staggered`` 1.2.3 (its README numbers to the printed digits;
    every estimand to ~1e-12 relative on a simulated panel), the ``did`` README on
    ``mpdta`` (group-time, group and dynamic aggregations) and a direct ``lm``
    computation of the imputation estimator (``tests/reference/staggered/``).  Deliberate
    differences from ``staggered``: a pre-treatment placebo at event time ``e < 0`` averages
    over the cohorts observed at ``g + e`` (staggered 1.2.3 mixes in the others' base
    periods when some cohort starts fewer than ``-e`` periods into the panel); the
    randomisation p-value counts the observed assignment, ``(1 + #{|t*| >= |t|}) / (1 + B)``
    (staggered uses ``#{|t*| > |t|} / B``); an unbalanced panel raises unless
    ``unbalanced="drop"``; a cohort of one cluster is an error rather than dropped.  The
    randomisation test assumes every permutation of the start periods among clusters was a
    possible allocation (complete randomisation); for restricted schemes use
    :func:`steppedwedge.permutation_test`.  The design-based standard errors assume random
    timing (the stepped-wedge randomisation); the normal reference is asymptotic in the
    number of clusters per cohort.

    References
    ----------
    Roth J, Sant'Anna PHC (2023). Efficient estimation for staggered rollout designs.
    J Polit Econ Microecon 1:669-709.
    Callaway B, Sant'Anna PHC (2021). J Econometrics 225:200-230.
    Sun L, Abraham S (2021). J Econometrics 225:175-199.
    Borusyak K, Jaravel X, Spiess J (2024). Rev Econ Stud 91:3253-3285.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> import steppedwedge as sw
    >>> rng = np.random.default_rng(1)
    >>> rows = [(i, t, float(t >= 1 + i % 4), rng.normal(0.5 * (t >= 1 + i % 4) + 0.1 * t))
    ...         for i in range(40) for t in range(5)]
    >>> df = pd.DataFrame(rows, columns=["clinic", "month", "arm", "y"])
    >>> res = sw.fit(df, outcome="y", cluster="clinic", period="month", treatment="arm",
    ...              method="efficient-staggered")
    >>> round(res.estimate, 3), round(res.std_error, 3), round(res.std_error_neyman, 3)
    (0.85, 0.183, 0.185)
    """
    check_option("method", method, METHODS)
    spec = AnalysisSpec.from_options(
        outcome=outcome, cluster=cluster, period=period, treatment=treatment, method=method,
        family=family, link=link, exposure=exposure, offset=offset, trials=trials,
        missing=missing, design=design,
    )  # fmt: skip
    return fit_staggered_spec(
        data, spec, estimand=estimand, event_times=event_times, beta=beta,
        use_did_a0=use_did_a0, control_group=control_group, base_period=base_period,
        n_permutations=n_permutations, rng=rng, unbalanced=unbalanced, period_order=period_order,
    )  # fmt: skip


def fit_staggered_spec(
    data: pd.DataFrame,
    spec: AnalysisSpec,
    *,
    estimand: str = "simple",
    event_times: Sequence[int] | None = None,
    beta: float | Sequence[float] | None = None,
    use_did_a0: bool = True,
    control_group: str = "not-yet-treated",
    base_period: str | None = None,
    n_permutations: int = 0,
    rng: Any = None,
    unbalanced: str = "raise",
    period_order: Sequence[Any] | None = None,
) -> StaggeredResult:
    """Fit the staggered-rollout estimator ``spec.method`` (the entry of :func:`steppedwedge.fit`).

    Roles, family, link, ``missing`` and ``design`` come from ``spec`` (validated there);
    the numerical options are those of :func:`fit_staggered`.

    Parameters
    ----------
    data : pandas.DataFrame
        Trial rows; never modified.
    spec : AnalysisSpec
        The analysis (``spec.method`` one of :data:`METHODS`).
    estimand, event_times, beta, use_did_a0, control_group, base_period, n_permutations, \
rng, unbalanced, period_order
        As :func:`fit_staggered`.

    Returns
    -------
    StaggeredResult

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from steppedwedge.models.spec import AnalysisSpec
    >>> from steppedwedge.models.staggered import fit_staggered_spec
    >>> rng = np.random.default_rng(1)
    >>> rows = [(i, t, float(t >= 1 + i % 4), rng.normal(0.5 * (t >= 1 + i % 4) + 0.1 * t))
    ...         for i in range(40) for t in range(5)]
    >>> df = pd.DataFrame(rows, columns=["clinic", "month", "arm", "y"])
    >>> spec = AnalysisSpec.from_options(outcome="y", cluster="clinic", period="month",
    ...                                  treatment="arm", method="efficient-staggered")
    >>> round(fit_staggered_spec(df, spec).estimate, 3)
    0.85

    References
    ----------
    Roth J, Sant'Anna PHC (2023). J Polit Econ Microecon 1:669-709.
    """
    method = check_option("method", spec.method, METHODS)
    control_group, base_period = _check_numerics(
        method, estimand, event_times, beta, use_did_a0, control_group, base_period,
        n_permutations, unbalanced,
    )  # fmt: skip
    links = _LINKS.get(spec.family, ("identity",))
    link = spec.link  # the spec resolved the default (identity for binary outcomes)
    check_option("link", link, links)
    td = spec.trial_data(data, period_order=period_order)
    td.require_period_order(f"method={method!r}")
    spec_args = (control_group, base_period, beta, use_did_a0, n_permutations, rng, spec.outcome)
    # small dense algebra in loops: multi-threaded BLAS only oversubscribes the cores
    with single_threaded_blas():
        return _fit_panel(td, link, unbalanced, method, estimand, event_times, spec_args)


def _check_numerics(
    method: str,
    estimand: str,
    event_times: Sequence[int] | None,
    beta: Any,
    use_did_a0: bool,
    control_group: str,
    base_period: str | None,
    n_permutations: int,
    unbalanced: str,
) -> tuple[str, str]:
    """Validate the estimator's options; return the resolved control group and base period."""
    check_option("estimand", estimand, _ESTIMANDS)
    check_option("control_group", control_group, _CONTROLS)
    check_option("unbalanced", unbalanced, ("raise", "drop"))
    if method == "sun-abraham":
        if control_group not in ("not-yet-treated", "last-treated"):
            raise OptionError("method='sun-abraham' compares with the last-treated cohort only.")
        control_group = "last-treated"
    if base_period is None:
        base_period = "varying" if method == "callaway-santanna" else "universal"
    check_option("base_period", base_period, ("varying", "universal"))
    if method != "efficient-staggered" and (beta is not None or not use_did_a0):
        raise OptionError(
            f"`beta` and `use_did_a0` are options of method='efficient-staggered'; "
            f"method={method!r} fixes them."
        )
    if method == "imputation" and control_group != "not-yet-treated":
        raise OptionError("method='imputation' uses every untreated cell; drop control_group.")
    if estimand != "event-time" and event_times is not None:
        raise OptionError("`event_times` needs estimand='event-time'.")
    if int(n_permutations) < 0:
        raise OptionError(f"`n_permutations` must be >= 0; got {n_permutations!r}.")
    return control_group, base_period


def _fit_panel(
    td: TrialData,
    link: str,
    unbalanced: str,
    method: str,
    estimand: str,
    event_times: Sequence[int] | None,
    spec_args: tuple[Any, ...],
) -> StaggeredResult:
    """Everything after validation: the panel, cohorts, estimates and the result."""
    (control_group, base_period, beta, use_did_a0, n_permutations, rng, outcome) = spec_args
    y, x, clusters = _panel(td, link, unbalanced)
    cohort = _cohorts(x)
    periods = td.periods
    n_t = len(periods)
    notes = _check_cohorts(cohort, clusters, periods, method, control_group)
    cs = eng.cohort_summaries(y, cohort)
    _check_singletons(cs, clusters, cohort, periods, method)
    spec = dict(
        method=method,
        rule=control_group,
        base=base_period,
        beta=1.0 if method in ("callaway-santanna", "sun-abraham") else beta,
        use_did_a0=use_did_a0,
    )
    head_w, rows = _estimands(cs, n_t, estimand, event_times, method, periods, base_period)
    est, se, se_n, b = _one(cs, head_w, spec, y, cohort)
    table, betas = _table(cs, rows, spec, y, cohort)
    vcv: tuple[pd.DataFrame | None, pd.DataFrame | None] = (None, None)
    if estimand == "event-time":
        vcv = _event_vcov(cs, rows, spec, betas)
    fisher: tuple[float | None, float | None] = (None, None)
    if n_permutations:
        fisher = _fisher(cs, head_w, spec, y, cohort, est, se, se_n, int(n_permutations), rng)
    return StaggeredResult(
        method=method,
        estimand=estimand,
        estimate=est,
        std_error=se,
        std_error_neyman=se_n,
        beta=b,
        table=table,
        scale=_SUMMARY[(td.family, link)],
        link=link,
        cohorts=_cohort_table(cs, periods),
        n_clusters=len(clusters),
        n_periods=n_t,
        outcome=outcome,
        fisher_pvalue=fisher[0],
        fisher_pvalue_neyman=fisher[1],
        n_permutations=int(n_permutations),
        messages=tuple(notes),
        effect_curve=_curve(table) if estimand == "event-time" else None,
        vcov_event_time=vcv[0],
        vcov_event_time_neyman=vcv[1],
    )


def _check_singletons(
    cs: eng.CohortSummaries, clusters: list[Any], cohort: np.ndarray, periods: pd.Index, method: str
) -> None:
    single = [int(g) for g, n in zip(cs.g, cs.n, strict=True) if n < 2]
    if not single:
        return
    desc = ", ".join(
        f"cohort starting {_lab(periods[g]) if g < len(periods) else 'never'} (cluster "
        f"{_lab(clusters[int(np.nonzero(cohort == g)[0][0])])})"
        for g in single
    )
    if method == "efficient-staggered":
        raise DataError(
            f"The efficient estimator needs at least 2 clusters per cohort to estimate the "
            f"cohort covariances; {desc} has one. Use method='callaway-santanna' with "
            "n_permutations= for randomisation inference."
        )
    warn(
        f"{desc} has a single cluster: its variance cannot be estimated, so the standard "
        "errors are NaN; use n_permutations= for a randomisation test.",
        SmallSampleWarning,
    )


def _estimands(
    cs: eng.CohortSummaries,
    n_t: int,
    estimand: str,
    event_times: Sequence[int] | None,
    method: str,
    periods: pd.Index,
    base: str,
) -> tuple[np.ndarray, list[tuple[str, np.ndarray, dict[str, Any]]]]:
    """Headline weights and the further rows ``(term, weights, extra columns)``."""
    rows: list[tuple[str, np.ndarray, dict[str, Any]]] = []
    if estimand == "event-time":
        if event_times is None:  # every non-negative event time with a comparison
            times = [e for e in range(n_t) if _weights(cs, n_t, estimand, e).any()]
        else:
            times = [int(e) for e in event_times]
        if method == "imputation" and any(e < 0 for e in times):
            raise OptionError(
                "method='imputation' estimates treatment effects only (event_times >= 0); "
                "test pre-trends with method='callaway-santanna'."
            )
        for e in times:
            w = _weights(cs, n_t, estimand, e, base)
            if not w.any():
                raise DataError(
                    f"No cohort is observed {e} periods after its start while a later cohort "
                    f"is still untreated: event time {e} has no comparison."
                )
            rows.append((f"event_time[{e}]", w, {"event_time": e}))
        post = [r[1] for r in rows if r[2]["event_time"] >= 0]
        head = np.mean(post, axis=0) if post else np.zeros_like(rows[0][1])
    else:
        head = _weights(cs, n_t, estimand)
        rows = _aggregate_rows(cs, head, estimand, periods)
        if method in ("callaway-santanna", "sun-abraham"):
            rows += _group_time_rows(cs, n_t, periods, method)
    if not head.any() and estimand != "event-time":
        raise DataError("No group-time effect is identified: no cohort has a comparison.")
    return head, rows


def _aggregate_rows(
    cs: eng.CohortSummaries, head: np.ndarray, estimand: str, periods: pd.Index
) -> list[tuple[str, np.ndarray, dict[str, Any]]]:
    """List the parts of a cohort (``cohort[g]``) or calendar (``period[t]``) aggregate."""
    rows = []
    if estimand == "cohort":
        for k in np.nonzero(head.any(axis=1))[0]:
            w = np.zeros_like(head)
            w[k] = head[k] / head[k].sum()
            g = periods[int(cs.g[k])]
            rows.append((f"cohort[{_lab(g)}]", w, {"cohort": g}))
    elif estimand == "calendar":
        for t in np.nonzero(head.any(axis=0))[0]:
            w = np.zeros_like(head)
            w[:, t] = head[:, t] / head[:, t].sum()
            p = periods[int(t)]
            rows.append((f"period[{_lab(p)}]", w, {"period": p}))
    return rows


def _group_time_rows(
    cs: eng.CohortSummaries, n_t: int, periods: pd.Index, method: str
) -> list[tuple[str, np.ndarray, dict[str, Any]]]:
    gmax = int(cs.g.max())
    rows = []
    for k, g in enumerate(cs.g):
        g = int(g)
        if g >= gmax or g >= n_t:
            continue
        for t in range(1, min(gmax, n_t)):
            if method == "sun-abraham" and t == g - 1:
                continue
            w = np.zeros((len(cs.g), n_t))
            w[k, t] = 1.0
            term = f"ATT({_lab(periods[g])}, {_lab(periods[t])})"
            rows.append(
                (term, w, {"cohort": periods[g], "period": periods[t], "event_time": t - g})
            )
    return rows


def _table(
    cs: eng.CohortSummaries,
    rows: list[tuple[str, np.ndarray, dict[str, Any]]],
    spec: dict[str, Any],
    y: np.ndarray,
    cohort: np.ndarray,
) -> tuple[pd.DataFrame, list[Any]]:
    est, se, se_n, betas = _many(cs, [r[1] for r in rows], spec, y, cohort)
    out = [
        {"term": term, **extra, "estimate": e, "std_error": s, "std_error_neyman": s_n}
        for (term, _, extra), e, s, s_n in zip(rows, est, se, se_n, strict=True)
    ]
    cols = ["term", "estimate", "std_error", "std_error_neyman"]
    table: pd.DataFrame = pd.DataFrame(out) if out else pd.DataFrame(columns=cols)
    return table, betas


def _fisher(
    cs: eng.CohortSummaries,
    w: np.ndarray,
    spec: dict[str, Any],
    y: np.ndarray,
    cohort: np.ndarray,
    est: float,
    se: float,
    se_n: float,
    n_perm: int,
    rng: Any,
) -> tuple[float, float]:
    """Randomisation p-values of ``|estimate / SE|`` (design-based and Neyman)."""
    gen = np.random.default_rng(rng)
    spec = {**spec, "quiet": True}  # a zero SE in a permutation is handled by _studentised
    t_obs = np.array([_studentised(est, se), _studentised(est, se_n)])
    hits = np.zeros(2)
    for _ in range(n_perm):
        perm = gen.permutation(cohort)
        cs_p = eng.cohort_summaries(y, perm)
        e_p, s_p, sn_p, _ = _one(cs_p, w, spec, y, perm)
        t_p = np.array([_studentised(e_p, s_p), _studentised(e_p, sn_p)])
        hits += t_p >= t_obs * (1.0 - 1e-12)
    p = (1.0 + hits) / (1.0 + n_perm)
    return float(p[0]), float(p[1])


def _studentised(estimate: float, std_error: float) -> float:
    """``|estimate| / std_error``; infinite for a zero standard error and non-zero estimate."""
    if std_error > 0:
        return abs(estimate) / std_error
    return math.inf if estimate != 0 else 0.0


def _cohort_table(cs: eng.CohortSummaries, periods: pd.Index) -> pd.DataFrame:
    n_t = len(periods)
    gmax = int(cs.g.max())
    table: pd.DataFrame = pd.DataFrame(
        {
            "start": [periods[int(g)] if g < n_t else None for g in cs.g],
            "clusters": cs.n.astype(int),
            "role": [
                "comparison only" if int(g) == gmax else "treated and comparison" for g in cs.g
            ],
        }
    )
    return table
