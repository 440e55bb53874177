"""The public :func:`fit` entry point: dispatch on the outcome family."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import pandas as pd

from .._validation import check_option
from ..data import TrialData, apply_period_order, check_period_order
from ..exceptions import MissingDataWarning, OptionError
from .mixed import check_decay_scale, fit_gaussian

__all__ = ["fit"]


def _ordered_periods(
    data: Any,
    period: str,
    period_order: Sequence[Any] | None,
    design: Any,
    time: str,
    random: str,
    effect: str,
    options: dict[str, Any],
) -> Any:
    """Apply ``period_order``; refuse text periods where the analysis uses period distance."""
    if not isinstance(data, pd.DataFrame):
        return data
    if period_order is not None:
        if design is not None:
            raise OptionError(
                "`period_order` and `design` cannot be combined: the design fixes the order."
            )
        return apply_period_order(data, period, period_order)
    if design is not None:
        return data
    corstr = str(options.get("corstr") or "")
    needs = [
        f"time={time!r}" if time in ("linear", "spline") else "",
        f"random={random!r}" if "decay" in str(random) else "",
        f"effect={effect!r}" if effect in ("eti", "tate", "pte") else "",
        f"corstr={corstr!r}" if any(k in corstr for k in ("decay", "ar1")) else "",
    ]
    why = " and ".join(n for n in needs if n)
    if why:
        check_period_order(data, period, why)
    return data


def _check_rows(
    data: Any,
    outcome: str,
    cluster: str,
    period: str,
    treatment: str,
    family: str,
    exposure: str | None,
    offset: str | None,
    missing: str,
) -> None:
    """Run the data-integrity checks of ``TrialData.from_frame`` for a fitter that reads rows.

    The fixed-effects GLM reads the rows itself; the same refusals (repeated rows, reversal,
    near-duplicate labels, ``exposure`` with ``offset``, no variation) apply to it.  Only the
    checks run here: the fitter's numbers are computed from the rows as before.
    """
    if not isinstance(data, pd.DataFrame):
        return
    several = (
        family != "binomial"
        and {cluster, period} <= set(data.columns)
        and bool(data.duplicated([cluster, period]).any())
    )
    with warnings.catch_warnings():  # the fitter issues its own missing-data warnings
        warnings.simplefilter("ignore", MissingDataWarning)
        TrialData.from_frame(
            data,
            outcome=outcome,
            cluster=cluster,
            period=period,
            treatment=treatment,
            family=family,
            exposure=exposure,
            offset=offset,
            kind="individual" if several or family in ("gaussian", "binomial") else None,
            missing=missing,  # type: ignore[arg-type]
        )


_FAMILIES = ("gaussian", "binomial", "poisson", "negative_binomial")
_METHODS = ("reml", "ml", "laplace", "agq", "gee", "cluster-summary", "fixed-effects")
_STAGGERED = ("efficient-staggered", "callaway-santanna", "sun-abraham", "imputation")
_DESIGN_BASED = ("vertical", "hughes", "synthetic-control", "crossover")


def fit(
    data: pd.DataFrame,
    *,
    outcome: str,
    cluster: str,
    period: str,
    treatment: str,
    individual: str | None = None,
    family: str = "gaussian",
    link: str | None = None,
    exposure: str | None = None,
    offset: str | None = None,
    trials: str | None = None,
    covariates: str | None = None,
    random: str = "nested",
    time: str = "categorical",
    knots: Sequence[float] | None = None,
    effect: str = "immediate",
    exposure_window: tuple[int, int] | None = None,
    exposure_time: int | None = None,
    method: str | None = None,
    dof: str | None = None,
    vcov: str | None = None,
    missing: str = "raise",
    design: Any = None,
    period_order: Sequence[Any] | None = None,
    decay_scale: str = "period",
    **options: Any,
) -> Any:
    """Analyse a stepped-wedge trial: mixed models (Gaussian, GLMM), GEE or cluster summaries.

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
    family : {"gaussian", "binomial", "poisson", "negative_binomial"}
        Outcome family.  Non-Gaussian families go to
        :func:`steppedwedge.models.glmm.fit_glmm` (Laplace/AGQ) unless ``method`` is
        ``"gee"`` or ``"cluster-summary"``.
    link : str, optional
        Link of non-Gaussian models (default logit for binomial, log for counts).
    exposure, offset, trials : str, optional
        Counts: exposure (logged internally) or a log-scale offset; binomial aggregates:
        the trials column.
    covariates : str, optional
        Right-hand-side formula of individual- or cluster-level covariates, e.g.
        ``"age + C(sex)"`` (evaluated by patsy).
    random : str
        ``"nested"`` (default: cluster + cluster-period intercepts), ``"cluster"`` (Hussey &
        Hughes), ``"decay"`` (cluster-period effects with covariance ``gamma2 * r^|j-k|``,
        Kasza et al. 2019, as glmmTMB ``ar1(period + 0 | cluster)``), ``"nested+decay"``,
        ``"random-slope"`` (cluster intercept and an independent cluster treatment effect,
        Hughes, Granston & Heagerty 2015), ``"random-slope-corr"`` (correlated), and the
        ``"nested+..."`` variants adding cluster-period effects.  ``"nested+decay"`` is a
        persistent cluster effect plus the decaying one (glmmTMB ``(1 | cluster) +
        ar1(period + 0 | cluster)``), the structure of real council rates.  Gaussian models
        accept all of them; GLMMs (binomial, Poisson, negative binomial) accept
        ``"cluster"``, ``"nested"``, ``"decay"``, ``"nested+decay"``, ``"random-slope"`` and
        ``"nested+random-slope"`` (see :func:`steppedwedge.models.glmm.fit_glmm` for what each
        is for).
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
    method : {"reml", "ml", "laplace", "agq", "gee", "cluster-summary", "fixed-effects"}, optional
        ``"reml"`` (Gaussian default) or ``"ml"``; ``"laplace"`` (GLMM default) or ``"agq"``;
        ``"gee"`` (:func:`steppedwedge.models.gee.fit_gee_frame`), ``"cluster-summary"``
        (:func:`steppedwedge.models.cluster_level.fit_cluster_summary_frame`) or
        ``"fixed-effects"``: a GLM with cluster and period fixed effects and CR2
        cluster-robust errors with Satterthwaite df, as R clubSandwich
        (:func:`steppedwedge.models.fixed_effects.fit_fixed_effects`; ``effect`` may also be
        ``"period-interaction"``).  Staggered-rollout estimators: ``"efficient-staggered"``,
        ``"callaway-santanna"``, ``"sun-abraham"``, ``"imputation"``
        (:func:`steppedwedge.models.staggered.fit_staggered`; options ``estimand``,
        ``event_times``, ``beta``, ``n_permutations``, ``rng``, ...).  Design-based
        estimators with randomisation inference: ``"vertical"``, ``"hughes"``,
        ``"synthetic-control"``, ``"crossover"``
        (:func:`steppedwedge.models.design_based.fit_design_based`).
    dof : str or float, optional
        Denominator df rule.  Gaussian mixed models: ``"kenward-roger"`` (default for REML;
        the standard error is then the adjusted one, as pbkrtest ``vcovAdj``),
        ``"satterthwaite"`` (default for ML), ``"between-within"`` or ``"normal"``.  GLMMs:
        ``"clusters"`` (default: t with I - 2 df for the treatment effect, clusters minus
        cluster-level parameters), ``"between-within"``, ``"residual"``, ``"normal"`` (Wald z,
        as glmer) or a number.  GEE: ``"residual"`` (I - p, default) or ``"normal"``.
        Cluster summaries: ``"clusters"`` (I - 2, default), ``"satterthwaite"`` or
        ``"residual"``.
    vcov : str, optional
        Mixed models (Gaussian and GLMM): ``"model"`` (default) or a cluster-robust sandwich,
        ``"cr0"``, ``"cr2"`` (= ``"robust"``), ``"cr3"``, ``"kc"``, ``"md"``, ``"fg"``,
        ``"mbn"`` (:mod:`steppedwedge.inference.sandwich`), with t on ``I - p_c`` df by
        default (``p_c`` = cluster-level parameters: ``I - 2`` without cluster-level
        covariates; Ouyang et al. 2024 recommend CR3/MD with ``I - 2``); ``dof=`` overrides.
        GEE: ``"lz"``, ``"kc"``, ``"md"`` (default), ``"fg"``...
        Cluster summaries: ``"cr2"`` (default, clustered by cluster), ``"model"``, ``"hc2"``.
    missing : {"raise", "drop"}
        Missing outcomes/covariates: raise (default) or drop with a warning.
    design : Design, optional
        Check the rows against a design (it also fixes the period order).
    period_order : sequence, optional
        The period labels in calendar order.  Text labels (``"P4"``, ``"Jan-20"``) sort
        alphabetically, so linear or spline time, decay structures and exposure-time effects
        refuse them (:class:`~steppedwedge.exceptions.DataError`) unless the order is given
        here, by an ordered categorical column or by ``design``.
    decay_scale : {"period", "time"}, default "period"
        For ``random="decay"`` / ``"nested+decay"``: the decay counts periods
        (``r**|j - k|``), or years between period mid-points (``"time"``, ``r**|t_j - t_k|``,
        continuous-time decay, Grantham et al. 2019) taken from ``design``
        (:meth:`Design.period_midpoints`), which is then required.  Gaussian mixed models
        and GLMMs (``method="laplace"``).

    **options
        Passed to the GEE, cluster-summary or GLMM fitter (e.g. ``corstr``, ``weights``,
        ``n_quadrature``).

    Returns
    -------
    FitResult
        (:class:`~steppedwedge.models.glmm.GLMMResult`, GEE and cluster-summary results for
        the other methods.)

    Raises
    ------
    DataError
        Invalid data (non-numeric/infinite/missing outcomes, an individual id in two
        clusters, ...) or a non-identifiable effect (treatment constant within every period,
        covariates collinear with treatment or period).
    ValueError
        Invalid options (e.g. Kenward-Roger with ML, a method that does not fit the family).

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
    if method is None:
        method = "reml" if family == "gaussian" else "laplace"
    check_option("method", method, _METHODS + _STAGGERED + _DESIGN_BASED)
    check_option("decay_scale", decay_scale, ("period", "time"))
    if decay_scale != "period" and method not in ("reml", "ml", "laplace", "agq"):
        raise OptionError(
            f"`decay_scale={decay_scale!r}` is available for mixed models (method='reml', "
            f"'ml', 'laplace' or 'agq') only; got method={method!r}."
        )
    check_decay_scale(decay_scale, random, design)
    data = _ordered_periods(data, period, period_order, design, time, random, effect, options)
    common = dict(
        outcome=outcome,
        cluster=cluster,
        period=period,
        treatment=treatment,
        individual=individual,
        missing=missing,
        design=design,
    )
    if method in _DESIGN_BASED:
        from .design_based import check_unused, fit_design_based

        check_unused(method, individual, covariates, random, time, effect, dof, vcov, offset)
        return fit_design_based(
            data, outcome=outcome, cluster=cluster, period=period, treatment=treatment,
            method=method, family=family, link=link, exposure=exposure, trials=trials,
            missing=missing, design=design, **options,
        )  # fmt: skip
    if method in _STAGGERED:
        from .staggered import fit_staggered

        ignored = {
            "individual": individual is None,
            "covariates": covariates is None,
            "random": random == "nested",
            "time": time == "categorical",
            "effect": effect == "immediate",
            "dof": dof is None,
            "vcov": vcov is None,
        }
        if not all(ignored.values()):
            bad = ", ".join(f"`{k}`" for k, ok in ignored.items() if not ok)
            raise OptionError(
                f"{bad} do(es) not apply to method={method!r} (a design-based estimator on "
                "cluster-period summaries); use `estimand=` / `event_times=` instead."
            )
        return fit_staggered(
            data,
            outcome=outcome,
            cluster=cluster,
            period=period,
            treatment=treatment,
            method=method,
            family=family,
            link=link,
            exposure=exposure,
            offset=offset,
            trials=trials,
            missing=missing,
            design=design,
            **options,
        )
    if method == "gee":
        from .gee import fit_gee_frame

        return fit_gee_frame(
            data,
            family=family,
            link=link,
            exposure=exposure,
            offset=offset,
            trials=trials,
            covariates=covariates,
            random=random,
            time=time,
            effect=effect,
            dof=dof,
            vcov=vcov,
            **common,
            **options,
        )
    if method == "fixed-effects":
        from .fixed_effects import fit_fixed_effects

        if individual is not None or design is not None:
            raise OptionError(
                "`individual` and `design` are not used by method='fixed-effects'; drop them."
            )
        if link not in (None, "logit" if family == "binomial" else "log", "identity"):
            raise OptionError(
                f"method='fixed-effects' uses the canonical link of family={family!r}; "
                f"got link={link!r}."
            )
        if trials is not None:
            raise OptionError(
                "method='fixed-effects' needs individual binary rows; `trials` (aggregated "
                "events/trials) is not supported there: use method='laplace' or 'gee'."
            )
        _check_rows(data, outcome, cluster, period, treatment, family, exposure, offset, missing)
        return fit_fixed_effects(
            data,
            outcome=outcome,
            cluster=cluster,
            period=period,
            treatment=treatment,
            family=family,  # type: ignore[arg-type]
            covariates=covariates,
            offset=offset,
            exposure=exposure,
            effect=effect,  # type: ignore[arg-type]
            vcov="cr2" if vcov is None else vcov,  # type: ignore[arg-type]
            dof=dof,  # type: ignore[arg-type]
            missing=missing,  # type: ignore[arg-type]
            **options,
        )
    if method == "cluster-summary":
        from .cluster_level import fit_cluster_summary_frame

        return fit_cluster_summary_frame(
            data,
            family=family,
            link=link,
            exposure=exposure,
            offset=offset,
            trials=trials,
            vcov=vcov,  # type: ignore[arg-type]
            dof=dof,  # type: ignore[arg-type]
            **common,
            **options,
        )
    if family == "gaussian":
        if method not in ("reml", "ml"):
            raise OptionError(
                f"method={method!r} is for non-Gaussian mixed models; Gaussian outcomes use "
                "method='reml' (default) or 'ml', or method='gee' / 'cluster-summary'."
            )
        if link not in (None, "identity"):
            raise OptionError(f"Gaussian mixed models use the identity link; got link={link!r}.")
        for name, value in (("exposure", exposure), ("offset", offset), ("trials", trials)):
            if value is not None:
                raise OptionError(
                    f"`{name}` is for count or binomial outcomes; it cannot be used with "
                    "family='gaussian'."
                )
        if options:
            raise TypeError(
                f"fit() got unexpected keyword arguments {sorted(options)} for a Gaussian "
                "mixed model."
            )
        return fit_gaussian(
            data,
            covariates=covariates,
            random=random,
            time=time,
            knots=knots,
            effect=effect,
            exposure_window=exposure_window,
            exposure_time=exposure_time,
            method=method,
            dof=dof,
            vcov="model" if vcov is None else vcov,
            decay_scale=decay_scale,
            **common,
        )
    if method in ("reml", "ml"):
        raise OptionError(
            f"method={method!r} is for Gaussian outcomes; family={family!r} mixed models use "
            "method='laplace' (default) or 'agq', or method='gee' / 'cluster-summary'."
        )
    from .glmm import fit_glmm

    return fit_glmm(
        data,
        family=family,
        link=link,
        trials=trials,
        exposure=exposure,
        offset=offset,
        covariates=covariates,
        random=random,
        time=time,
        knots=knots,
        effect=effect,
        exposure_window=exposure_window,
        exposure_time=exposure_time,
        method=method,
        dof=dof,
        vcov="model" if vcov is None else vcov,
        decay_scale=decay_scale,
        **common,
        **options,
    )
