r"""Design-based inference: randomisation (permutation) tests and their confidence intervals.

:func:`permutation_test` re-draws the trial's allocation from exactly the space it was
randomised from (an :class:`~steppedwedge.randomise.Allocation`, or, without one, all
allocations of the clusters to the observed sequences keeping the sequence sizes),
recomputes a test statistic for each re-drawn treatment matrix and compares it with the
observed one.  Under Fisher's sharp null of no effect in any cluster-period the test has
exact size whatever the correlation structure (Wang & DeGruttola 2017; Ji et al. 2017).

Statistics
----------
``"twfe"`` (default)
    Least-squares coefficient of treatment in the regression of the cell summaries on
    cluster and period dummies (unweighted, or weighted by cell size with ``weights="size"``).
    It uses the within-cluster (horizontal) as well as the within-period (vertical)
    contrasts, so it has far more power than ``"cluster-period"`` when clusters differ
    persistently: 84.8% against 18.2% at rate ratio 0.85 in the 17-council count audit
    scenario (500 trials; size 4.9% and 5.4% in 1,000 null trials), see
    :doc:`/explanation/calibration`.  Weighting by cell size (``weights="size"``) gave
    86.0%, within Monte-Carlo error of the unweighted default.
``"cluster-period"``
    Thompson et al. (2018) within-period ("vertical") comparison: in each period the mean
    cell summary of treated clusters minus that of control clusters, combined over periods
    with weights ``n1 n0 / (n1 + n0)`` (``weights="clusters"``, default) or inverse-variance
    weights (``weights="inverse-variance"``).  The default before 0.1.0.
``"lmm"``
    The treatment estimate (``use="estimate"``) or Wald t statistic (``use="t"``) of
    :func:`steppedwedge.fit` for the outcome's family (Gaussian nested-exchangeable REML by
    default; a GLMM for counts and binomial outcomes, e.g. ``lmm_options={"random":
    "nested+decay"}``; ``lmm_options`` are passed on).  Slow: one fit per
    re-randomisation, on any executor.
``"glmm-score"``
    Binomial and count outcomes: the GLMM without a treatment term (``lmm_options={"random":
    "cluster" | "nested" | "decay" | "nested+decay"}``, default ``"nested"``) is fitted
    once, and each re-randomised treatment is scored by the derivative of its Laplace
    log-likelihood in a treatment coefficient at 0, standardised by the efficient
    information (``use="estimate"``: ``U / I``, one Newton step towards the GLMM estimate;
    ``use="t"``: ``U / sqrt(I)``).  Linear in the treatment, so all re-randomisations are
    one pass: 10,000 with a 95% interval took 1.7 s of CPU (nested; 2.1 s nested+decay) on
    the council example, about 1,300 (2,000) times less than ``"lmm"`` refits would
    (``benchmarks/bench_permutation_score.py``).  In the count audit scenario the
    ``nested+decay`` score had 94.4% power at rate ratio 0.85 against 88.2% for ``"twfe"``
    on the same trials (size 5.4% and 4.2%, 500 trials each), see
    :doc:`/explanation/calibration`.
callable
    ``f(frame) -> float`` called with a copy of ``data`` whose treatment column holds the
    re-randomised treatment.

Cell summaries are cell means for Gaussian outcomes, empirical log-odds
``log((y + 0.5) / (n - y + 0.5))`` for binomial outcomes and log rates
``log((y + 0.5) / exposure)`` for counts (``link="identity"`` gives proportions or rates),
as in :func:`steppedwedge.models.cluster_level.fit_cluster_summary`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from .._core.permutation import (
    permutation_pvalue,
    treatment_batch,
)
from .._typing import RNGLike
from .._validation import check_option, check_positive_int, normalise_rng
from .._warnings import warn
from ..data import TrialData
from ..design import Design
from ..exceptions import DataError, OptionError, SmallSampleWarning
from ..randomise import Allocation
from ..results import Summary, _fmt
from . import _permutation_ci as ci
from ._permutation_space import (
    CHUNK,
    Space,
    batched,
    cell_arrays,
    cell_statistic,
    draw_assignments,
    space_of,
)
from ._randomisation_result import RandomisationInference

__all__ = [
    "NullDistribution",
    "PermutationResult",
    "null_distribution_from_allocation",
    "permutation_test",
]

StatisticName = Literal["cluster-period", "glmm-score", "lmm", "twfe"]
Alternative = Literal["two-sided", "greater", "less"]
_STATISTICS = ("cluster-period", "glmm-score", "lmm", "twfe")
_ALTERNATIVES = ("two-sided", "greater", "less")
_DEFAULT_LINK = {
    "gaussian": "identity",
    "binomial": "logit",
    "poisson": "log",
    "negative_binomial": "log",
}
_INTERVAL_NOTE = {
    "identity": "The interval inverts the test under a constant additive effect on the "
    "cell-summary scale (Y - theta X are the control outcomes).",
    "log": "The interval inverts the test under a constant rate ratio exp(theta) (a "
    "multiplicative effect on the expected count): treated cells' counts are scaled by "
    "exp(-theta) before the log rates are recomputed -- approximate, since a scaled count "
    "has the control mean but not the control distribution.",
    "logit": "The interval inverts the test under a constant odds ratio exp(theta): treated "
    "cells' event odds are scaled by exp(-theta) before the log-odds are recomputed -- "
    "approximate, since the scaled counts have the control odds but not the control "
    "distribution.",
    "model": "The interval inverts the test in the offset form: the model is refitted with "
    "theta X added to the linear predictor's offset (log mu - theta X; Gaussian: Y - theta X) "
    "and the re-randomised treatment as the tested term.",
    "score": "The interval inverts the test in the offset form: the GLMM without a treatment "
    "term is refitted once per hypothesised effect theta with theta X added to the offset "
    "(log mu - theta X), and every re-randomisation is scored at that fit.",
}


# --------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PermutationResult(RandomisationInference):
    r"""Result of :func:`permutation_test`.

    Attributes
    ----------
    statistic : float
        Observed value of the test statistic.
    estimate : float
        Treatment-effect estimate: the statistic itself for ``"cluster-period"``,
        ``"twfe"``, ``"lmm"`` with ``use="estimate"`` and callables; the LMM estimate
        for ``use="t"``.
    pvalue : float
        Randomisation p-value (see :func:`permutation_test`, Notes).
    null_distribution : numpy.ndarray
        The statistic under each re-randomised allocation: the whole admissible space when
        :attr:`exact` (it then contains the observed allocation), else the Monte-Carlo
        draws (without the observed allocation).  Read-only.
    n_permutations : int
        Number of allocations in :attr:`null_distribution`.
    exact : bool
        Whether the whole admissible space was enumerated.
    min_pvalue : float
        Smallest attainable p-value: ``1 / n_admissible`` when exact, else
        ``max(1 / (1 + n_permutations), 1 / n_admissible)``.
    statistic_name : str
        ``"cluster-period"``, ``"twfe"``, ``"lmm"`` or the callable's name.
    alternative : str
    n_admissible : int
        Size of the allocation space re-drawn from.
    allocation_method : str
        How that space was defined (``"simple"``, ``"stratified"``, ``"restricted"``, with
        ``"+ constrained"`` for covariate-constrained randomisation).
    confidence_level : float or None
    interval : tuple of float or None
        Confidence interval by test inversion when requested.
    family, link, weights : str
        Outcome family, scale of the cell summaries, weighting of the statistic.
    std_error, df : float
        NaN: a randomisation test has neither (kept for the shared result protocol).
    n_failed : int
        Re-randomisations whose statistic could not be computed (left out).
    pvalue_mc_se : float
        Monte-Carlo standard error of :attr:`pvalue`, ``sqrt(p (1 - p) / B)``; 0 when
        :attr:`exact`.
    outcome : str
        Name of the outcome column.
    n_clusters, n_periods : int
        Clusters and periods of the trial.
    estimand : str
        Name of the tested term (``"treatment"``).
    method : str
        ``"permutation"``.
    messages : tuple of str
        Notes shown in the summary.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from steppedwedge.inference.permutation import permutation_test
    >>> rng = np.random.default_rng(4)
    >>> rows = [(i, j, float(j > i % 4), 0.8 * (j > i % 4) + rng.normal())
    ...         for i in range(8) for j in range(5)]
    >>> df = pd.DataFrame(rows, columns=["c", "t", "x", "y"])
    >>> res = permutation_test(df, outcome="y", cluster="c", period="t", treatment="x",
    ...                        n_permutations=999, rng=1, confidence_level=0.9)
    >>> res.exact, res.n_permutations, res.n_admissible
    (False, 999, 2520)
    >>> res.tidy()[["term", "p_value"]].shape
    (1, 2)
    """

    statistic: float
    estimate: float
    pvalue: float
    null_distribution: np.ndarray = field(repr=False)
    n_permutations: int
    exact: bool
    min_pvalue: float
    statistic_name: str
    alternative: str
    n_admissible: int
    allocation_method: str
    confidence_level: float | None
    interval: tuple[float, float] | None
    family: str
    link: str
    weights: str
    outcome: str
    n_clusters: int
    n_periods: int
    n_failed: int = 0
    pvalue_mc_se: float = 0.0
    estimand: str = "treatment"
    method: str = "permutation"
    std_error: float = float("nan")
    df: float = float("nan")
    messages: tuple[str, ...] = ()
    _invert: Callable[[float], tuple[float, float]] | None = field(default=None, repr=False)
    _intervals: dict[float, tuple[float, float]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def method_label(self) -> str:
        """How the p-value was obtained, e.g. ``"randomisation test (twfe, exact)"``."""
        kind = "exact" if self.exact else f"B={self.n_permutations}"
        return f"randomisation test ({self.statistic_name}, {kind})"

    def _no_interval(self) -> tuple[float, float]:
        raise OptionError(
            "a confidence interval by test inversion is available for the 'twfe', "
            "'cluster-period', 'lmm' and 'glmm-score' statistics, not for a callable."
        )

    def summary(self) -> Summary:
        """Text/HTML/Markdown/LaTeX summary.

        Returns
        -------
        Summary
            Renders with ``as_text()``, ``as_html()``, ``as_markdown()``, ``as_latex()``.
        """
        kind = (
            f"exact: all {self.n_permutations} admissible allocations"
            if self.exact
            else f"Monte Carlo: {self.n_permutations} re-randomisations "
            f"from {self.n_admissible} admissible allocations"
        )
        header = [
            ("Outcome", self.outcome),
            (
                "Statistic",
                f"{self.statistic_name} (cell summaries: {self.link} scale, "
                f"weights: {self.weights})",
            ),
            ("Allocation space", f"{self.allocation_method}, {self.n_admissible} allocations"),
            ("Re-randomisations", kind),
            ("Clusters / periods", f"{self.n_clusters} / {self.n_periods}"),
            ("Estimate", _fmt(self.estimate)),
            ("Observed statistic", _fmt(self.statistic)),
            (
                "p-value",
                f"{_fmt(self.pvalue)} ({self.alternative}; smallest attainable "
                f"{_fmt(self.min_pvalue)}"
                + ("" if self.exact else f"; Monte-Carlo SE {_fmt(self.pvalue_mc_se)}")
                + ")",
            ),
        ]
        if self.interval is not None:
            header.append(
                (
                    f"{100 * (self.confidence_level or 0.95):g}% CI (test inversion)",
                    f"{_fmt(self.interval[0])} to {_fmt(self.interval[1])}",
                )
            )
            if self.link in ("log", "logit"):
                ratio = "rate ratio" if self.link == "log" else "odds ratio"
                lo, hi = (math.exp(v) if v < 700 else math.inf for v in self.interval)
                header.append((f"CI as {ratio}", f"{_fmt(lo)} to {_fmt(hi)}"))
        notes = [
            "p counts the observed allocation: exact proportion over the admissible space, "
            "or (1 + #{extreme}) / (1 + B) for B Monte-Carlo draws.",
            *self.messages,
        ]
        if self.interval is not None:
            key = {"lmm": "model", "glmm-score": "score"}.get(self.statistic_name, self.link)
            notes.append(_INTERVAL_NOTE[key])
        return Summary(
            title="Stepped-wedge randomisation test",
            header=tuple(header),
            tables=(("Treatment effect", self.tidy()),),
            notes=tuple(notes),
        )

    def plot(
        self, ax: Any = None, *, confidence_level: float = 0.95, bins: int | str = "auto"
    ) -> Any:
        """Histogram of the null distribution with the observed statistic marked.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
        confidence_level : float, default 0.95
            The stored test-inversion interval is marked when it is at this level and
            the statistic is the estimate (same scale as the histogram).
        bins : int or str
            Passed to :meth:`matplotlib.axes.Axes.hist`.

        Returns
        -------
        matplotlib.axes.Axes
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        null = self.null_distribution[np.isfinite(self.null_distribution)]
        ax.hist(null, bins=bins, color="0.75", edgecolor="0.4")
        ax.axvline(self.statistic, color="C3", lw=2, label=f"observed {self.statistic:.3g}")
        if self.alternative == "two-sided" and self.statistic != 0:
            ax.axvline(-self.statistic, color="C3", lw=1, ls="--")
        same_scale = self.statistic == self.estimate
        if self.interval is not None and self.confidence_level == confidence_level and same_scale:
            for end in self.interval:
                if np.isfinite(end):
                    ax.axvline(end, color="C0", lw=1, ls=":")
        ax.set_xlabel(f"{self.statistic_name} statistic")
        ax.set_ylabel("re-randomisations")
        ax.set_title(
            f"Randomisation test: p = {self.pvalue:.3g}" + (" (exact)" if self.exact else "")
        )
        ax.legend(frameon=False)
        return ax

    def __repr__(self) -> str:
        return (
            f"PermutationResult({self.statistic_name}: estimate={self.estimate:.4g}, "
            f"p={self.pvalue:.3g}, {'exact over' if self.exact else 'B ='} "
            f"{self.n_permutations}{' allocations' if self.exact else ''})"
        )


@dataclass(frozen=True)
class NullDistribution:
    """Observed statistics and their randomisation distributions for outcome replicates.

    Attributes
    ----------
    observed : numpy.ndarray
        ``(R,)`` statistic under the allocation's own assignment.
    null : numpy.ndarray
        ``(R, B)`` statistic under each re-randomised allocation.
    exact : bool
        Whether ``null`` covers the whole admissible space.

    Examples
    --------
    >>> import numpy as np
    >>> from steppedwedge.inference.permutation import NullDistribution
    >>> nd = NullDistribution(observed=np.array([2.0]), null=np.array([[0.5, -2.5, 1.0]]),
    ...                       exact=False)
    >>> nd.pvalues().round(3)  # (1 + 1) / (1 + 3)
    array([0.5])
    """

    observed: np.ndarray
    null: np.ndarray
    exact: bool

    def pvalues(self, alternative: Alternative = "two-sided") -> np.ndarray:
        """Randomisation p-value of each replicate (conventions of :func:`permutation_test`)."""
        check_option("alternative", alternative, _ALTERNATIVES)
        return np.array(
            [
                permutation_pvalue(float(o), n, alternative, exact=self.exact)
                for o, n in zip(self.observed, self.null, strict=True)
            ]
        )


# --------------------------------------------------------------------------------------
# the public function
# --------------------------------------------------------------------------------------
def permutation_test(
    data: pd.DataFrame,
    *,
    outcome: str,
    cluster: str,
    period: str,
    treatment: str,
    allocation: Allocation | None = None,
    design: Design | None = None,
    statistic: StatisticName | Callable[[pd.DataFrame], float] = "twfe",
    family: str = "gaussian",
    link: str | None = None,
    exposure: str | None = None,
    trials: str | None = None,
    individual: str | None = None,
    weights: str | None = None,
    use: Literal["estimate", "t"] = "estimate",
    lmm_options: dict[str, Any] | None = None,
    n_permutations: int = 9999,
    alternative: Alternative = "two-sided",
    rng: RNGLike = None,
    confidence_level: float | None = None,
    alpha: float | None = 0.05,
    executor: Executor | None = None,
    n_jobs: int | None = None,
) -> PermutationResult:
    r"""Randomisation (permutation) test of no treatment effect, re-drawing the allocation.

    Parameters
    ----------
    data : pandas.DataFrame
        Trial rows (individual or cluster-period aggregates); never modified.
    outcome, cluster, period, treatment : str
        Column names (as :func:`steppedwedge.fit`).
    allocation : Allocation, optional
        The allocation space the trial was randomised from (:func:`steppedwedge.randomise`,
        with the same strata, restrictions and constraints).  The observed treatment must be
        one of its admissible allocations (else :class:`DataError`); its recorded
        assignment need not be the observed one.
    design : Design, optional
        Without ``allocation``: the sequences the clusters were allocated to (simple
        randomisation, sequence sizes kept).  Default: the sequences seen in the data.
    statistic : {"twfe", "cluster-period", "lmm", "glmm-score"} or callable
        See the module notes.  Default ``"twfe"``: the statistic with the most power at the
        (exact) nominal size in the calibration of :doc:`/explanation/calibration`.  A
        callable receives a copy of ``data`` with the treatment column re-randomised and
        returns a float.
    family : {"gaussian", "binomial", "poisson", "negative_binomial"}
    link : str, optional
        Scale of the cell summaries: identity for Gaussian; ``"logit"`` (default) or
        ``"identity"`` for binomial; ``"log"`` (default) or ``"identity"`` for counts.
    exposure, trials, individual : str, optional
        As :func:`steppedwedge.fit`.
    weights : str, optional
        ``"cluster-period"``: ``"clusters"`` (default) or ``"inverse-variance"``;
        ``"twfe"``: ``"none"`` (default, each cell once) or ``"size"`` (cell size or exposure).
    use : {"estimate", "t"}
        ``"lmm"``: the estimate or its Wald t statistic; ``"glmm-score"``: the one-step
        estimate ``U / I`` or the score z ``U / sqrt(I)``.
    lmm_options : dict, optional
        ``"lmm"``: further arguments of :func:`steppedwedge.fit`; ``"glmm-score"``: only
        ``{"random": "cluster" | "nested" | "decay" | "nested+decay"}`` (default
        ``"nested"``).
    n_permutations : int, default 9999
        Monte-Carlo re-randomisations; the whole space is enumerated instead when it has at
        most this many allocations.
    alternative : {"two-sided", "greater", "less"}
    rng : int, numpy.random.Generator or None
        Source of the Monte-Carlo draws.
    confidence_level : float, optional
        Also invert the test into a confidence interval for the effect on the analysis
        scale (difference; log rate ratio for counts; log odds ratio for binomial
        outcomes), for ``"twfe"``, ``"cluster-period"``, ``"lmm"`` (not binomial) and
        ``"glmm-score"``; see Notes.
    alpha : float or None, default 0.05
        Warn (:class:`~steppedwedge.SmallSampleWarning`) when the smallest attainable
        p-value exceeds ``alpha``; ``None`` disables the check.
    executor : concurrent.futures.Executor, optional
        ``"lmm"`` only: where to run the refits (a process pool, dask's
        ``Client.get_executor()``...); results do not depend on it.
    n_jobs : int, optional
        ``"lmm"`` only, without ``executor``: refit on a process pool of this size.

    Returns
    -------
    PermutationResult

    Raises
    ------
    DataError
        Data inconsistent with the allocation (clusters, periods, an observed treatment
        pattern that is not admissible).
    OptionError
        Invalid options.

    Warns
    -----
    SmallSampleWarning
        When the smallest attainable p-value exceeds ``alpha``.

    Notes
    -----
    The p-value counts the observed allocation once (``(1 + #{extreme}) / (1 + B)`` for
    Monte-Carlo draws).  The interval collects the effects not rejected over the same
    re-randomisations.  Both, missing cells, the matching of data to the allocation and the
    cost of each statistic: :doc:`/explanation/randomisation_tests`.

    References
    ----------
    Thompson JA et al. (2018) Stat Med 37:2487-2500.  Wang R, DeGruttola V (2017) Stat Med
    36:2831-2843.  Ji X et al. (2017) Ann Appl Stat 11:1-20.  Rabideau DJ, Wang R (2021)
    Stat Med 40:4442-4456 (offset-form intervals).  Rao CR (1948) Proc Camb Philos Soc
    44:50-57 (the efficient score statistic).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from steppedwedge.inference.permutation import permutation_test
    >>> rng = np.random.default_rng(1)
    >>> rows = [(i, j, float(j > i), 0.5 * (j > i) + rng.normal(0, 0.3))
    ...         for i in range(6) for j in range(7)]
    >>> df = pd.DataFrame(rows, columns=["c", "t", "x", "y"])
    >>> res = permutation_test(df, outcome="y", cluster="c", period="t", treatment="x",
    ...                        statistic="twfe", rng=2)
    >>> res.exact, res.n_permutations, round(res.pvalue, 4)
    (True, 720, 0.0014)
    """
    name, b = _check_options(statistic, alternative, use, n_permutations, alpha, confidence_level)
    roles = dict(outcome=outcome, cluster=cluster, period=period, treatment=treatment,
                 individual=individual, family=family, trials=trials,
                 exposure=exposure)  # fmt: skip
    td = TrialData.from_frame(data, **roles)  # type: ignore[arg-type]
    lk, wts = _link_and_weights(td, name, link, weights)
    _check_model_options(
        td, name, statistic, link, confidence_level, use, lmm_options, executor, n_jobs
    )
    problem = _problem(td, allocation, design, b, rng, alternative)
    if name in ("twfe", "cluster-period"):
        run = _cell_test(problem, name, lk, wts)
    elif name == "glmm-score":
        run = _score_test(problem, use, lmm_options or {})
    else:
        opts = lmm_options or {}
        run = _refit_test(data, problem, statistic, name, use, opts, executor, n_jobs, roles)
    link_out = lk if name not in ("lmm", "glmm-score") else _DEFAULT_LINK[td.family]
    return _result(run, problem, name, confidence_level, alpha, link_out, wts, outcome)


@dataclass(frozen=True)
class _Problem:
    """The data, the allocation space and the re-randomisations of one test."""

    td: TrialData
    space: Space
    assignments: np.ndarray
    exact: bool
    observed_x: np.ndarray
    alternative: Alternative


@dataclass
class _Run:
    """What a statistic's test produced: observed value, estimate, null, inverter, notes."""

    obs: float
    estimate: float
    null: np.ndarray
    invert: Callable[[float], tuple[float, float]] | None = None
    messages: list[str] = field(default_factory=list)
    ci_failures: list[int] = field(default_factory=list)
    score_failures: list[float] = field(default_factory=list)


def _problem(
    td: TrialData, allocation: Any, design: Any, b: int, rng: RNGLike, alternative: Alternative
) -> _Problem:
    """Match the allocation space to the data and enumerate or draw the re-randomisations."""
    cells = td.cells()
    treat = np.where(cells.observed, cells.treatment, np.nan)
    space = space_of(td, treat, allocation, design)
    assignments, exact = draw_assignments(space.alloc, b, normalise_rng(rng))
    return _Problem(
        td=td,
        space=space,
        assignments=assignments,
        exact=exact,
        observed_x=treatment_batch(space.seq_matrix, space.observed_assignment, space.columns),
        alternative=alternative,
    )


def _check_options(
    statistic: Any,
    alternative: str,
    use: str,
    n_permutations: int,
    alpha: float | None,
    confidence_level: float | None,
) -> tuple[str, int]:
    """Validate the options that need no data; return the statistic's name and ``B``."""
    if not isinstance(statistic, str) and not callable(statistic):
        raise OptionError(
            "`statistic` must be one of 'cluster-period', 'twfe', 'lmm', 'glmm-score' or a "
            "callable; "
            f"got {statistic!r}."
        )
    name = (
        check_option("statistic", statistic, _STATISTICS)
        if isinstance(statistic, str)
        else (getattr(statistic, "__name__", "callable"))
    )
    check_option("alternative", alternative, _ALTERNATIVES)
    check_option("use", use, ("estimate", "t"))
    b = check_positive_int("n_permutations", n_permutations)
    if alpha is not None and not 0.0 < float(alpha) < 1.0:
        raise OptionError(f"`alpha` must lie in (0, 1) or be None; got {alpha!r}.")
    if confidence_level is not None and not 0.0 < float(confidence_level) < 1.0:
        raise OptionError(f"`confidence_level` must lie in (0, 1); got {confidence_level!r}.")
    return name, b


def _link_and_weights(
    td: TrialData, name: str, link: str | None, weights: str | None
) -> tuple[str, str]:
    """Resolve the cell-summary scale for the family and the statistic's weights."""
    lk = _DEFAULT_LINK[td.family] if link is None else link
    allowed_links = {"gaussian": ("identity",), "binomial": ("logit", "identity")}.get(
        td.family, ("log", "identity")
    )
    check_option("link", lk, allowed_links)
    if name == "twfe":
        wts = check_option("weights", "none" if weights is None else weights, ("none", "size"))
    elif name == "cluster-period":
        wts = check_option(
            "weights", "clusters" if weights is None else weights, ("clusters", "inverse-variance")
        )
    else:
        if weights is not None:
            raise OptionError("`weights` applies to the 'twfe' and 'cluster-period' statistics.")
        wts = "n/a"
    return lk, wts


def _check_model_options(
    td: TrialData,
    name: str,
    statistic: Any,
    link: str | None,
    confidence_level: float | None,
    use: str,
    lmm_options: dict[str, Any] | None,
    executor: Executor | None,
    n_jobs: int | None,
) -> None:
    """Refuse the options that do not apply to the statistic (or the interval it allows)."""
    if confidence_level is not None and not isinstance(statistic, str):
        raise OptionError(
            "`confidence_level` (test inversion) needs statistic='twfe', 'cluster-period', "
            "'lmm' or 'glmm-score'; a callable statistic cannot be shifted by a hypothesised "
            "effect."
        )
    if confidence_level is not None and name == "lmm" and td.family == "binomial":
        raise OptionError(
            "`confidence_level` with statistic='lmm' inverts the test in the offset form, "
            "which the binomial GLMM does not take; use statistic='glmm-score' (the offset "
            "form of the GLMM without a treatment term), 'twfe' or 'cluster-period' "
            "(empirical log-odds) for a binomial randomisation interval."
        )
    if name not in ("lmm", "glmm-score") and (use != "estimate" or lmm_options):
        raise OptionError("`use` and `lmm_options` apply to statistic='lmm' and 'glmm-score' only.")
    if name != "lmm" and (executor is not None or n_jobs not in (None, 1)):
        raise OptionError(
            "`executor` and `n_jobs` apply to statistic='lmm' (one refit each; the other "
            "statistics are vectorised)."
        )
    if name == "glmm-score" and link is not None and link != _DEFAULT_LINK[td.family]:
        raise OptionError(
            f"statistic='glmm-score' works on the GLMM's own link ({_DEFAULT_LINK[td.family]!r}); "
            f"got link={link!r}."
        )


def _cell_test(problem: _Problem, name: str, lk: str, wts: str) -> _Run:
    """Observed value, null distribution and inverter of a vectorised cell statistic."""
    td, space, assignments = problem.td, problem.space, problem.assignments
    y, wt, mask = cell_arrays(td, lk, wts)
    kcache: dict[bytes, np.ndarray] = {}  # shared with the interval's coefficients
    stat = cell_statistic(name, wts, mask, wt, kcache)
    obs = float(stat(y, problem.observed_x)[0])
    null = batched(lambda x: stat(y, x), space, assignments)
    if not np.isfinite(obs):
        raise DataError(
            f"the {name} statistic is not defined for the observed allocation (no period "
            "with both treated and control clusters, or treatment collinear with time)."
        )
    prob = ci.CellProblem(
        name=name,
        weights=wts,
        mask=mask,
        cell_weights=wt,
        stat=stat,
        batches=lambda: [
            treatment_batch(space.seq_matrix, assignments[s : s + CHUNK], space.columns)
            for s in range(0, assignments.shape[0], CHUNK)
        ],
        observed_x=problem.observed_x,
        alternative=problem.alternative,
        exact=problem.exact,
        cache=kcache,
    )
    shift, additive = ci.cell_shift(td, lk, y)
    invert = ci.cell_inverter(prob, shift, additive, obs, null)
    return _Run(obs=obs, estimate=obs, null=null, invert=invert)


def _result(
    run: _Run,
    problem: _Problem,
    name: str,
    confidence_level: float | None,
    alpha: float | None,
    link: str,
    wts: str,
    outcome: str,
) -> PermutationResult:
    """Assemble the result: the p-value, its floor and warning, the interval and its notes."""
    alloc, exact, null = problem.space.alloc, problem.exact, run.null
    messages = list(run.messages)
    n_failed = int(np.count_nonzero(~np.isfinite(null)))
    if n_failed:
        messages.append(
            f"{n_failed} of {null.size} re-randomisation(s) gave no finite statistic and were "
            "left out (the allocation does not depend on the outcomes, so the test stays valid)."
        )
    pval = permutation_pvalue(run.obs, null, problem.alternative, exact=exact)
    n_used = int(null.size - n_failed)
    min_p = 1.0 / alloc.n_admissible if exact else max(1.0 / (1 + n_used), 1.0 / alloc.n_admissible)
    if alpha is not None and min_p > alpha:
        warn(
            f"the randomisation test can never reach p <= {alpha:g}: the smallest attainable "
            f"p-value is {min_p:.3g} ({alloc.n_admissible} admissible allocations"
            + ("" if exact else f", {n_used} re-randomisations")
            + "); interpret p with that in mind or use model-based small-sample inference.",
            SmallSampleWarning,
        )
    invert = None if run.invert is None else _bounded_inverter(run.invert, min_p)
    interval = None
    if confidence_level is not None and invert is not None:
        interval = _interval(invert, float(confidence_level), min_p, alloc.n_admissible, exact)
        messages += _interval_notes(run, interval, float(confidence_level), min_p, alloc)
    frozen = np.asarray(null, dtype=np.float64).copy()
    frozen.flags.writeable = False
    return PermutationResult(
        statistic=run.obs,
        estimate=float(run.estimate),
        pvalue=float(pval),
        null_distribution=frozen,
        n_permutations=int(null.size),
        exact=exact,
        min_pvalue=float(min_p),
        statistic_name=name,
        alternative=problem.alternative,
        n_admissible=int(alloc.n_admissible),
        allocation_method=alloc.method + (" + constrained" if alloc.constrained else ""),
        confidence_level=None if confidence_level is None else float(confidence_level),
        interval=interval,
        family=problem.td.family,
        link=link,
        weights=wts,
        outcome=outcome,
        n_clusters=problem.td.n_clusters,
        n_periods=problem.td.n_periods,
        n_failed=n_failed,
        pvalue_mc_se=0.0 if exact else math.sqrt(pval * (1.0 - pval) / max(n_used, 1)),
        messages=tuple(messages),
        _invert=invert,
    )


def _interval_notes(
    run: _Run, interval: tuple[float, float], level: float, min_p: float, alloc: Allocation
) -> list[str]:
    """Say which ends are unbounded and which fits failed while the interval was searched."""
    notes = []
    if not all(np.isfinite(interval)):
        notes.append(_unbounded_note(interval, level, min_p, alloc))
    if run.score_failures:
        notes.append(
            f"the GLMM without a treatment term could not be fitted at "
            f"{len(run.score_failures)} hypothesised effect(s) while the interval was "
            "searched; those were not rejected (the interval can only be wider)."
        )
    worst = int(np.max(run.ci_failures)) if run.ci_failures else 0
    if worst:
        notes.append(
            f"up to {worst} of the {run.null.size} refits failed at a hypothesised "
            "effect while the interval was searched (left out of that p-value)."
        )
    return notes


def _bounded_inverter(
    invert: Callable[[float], tuple[float, float]], min_p: float
) -> Callable[[float], tuple[float, float]]:
    """``(-inf, inf)`` without a search when no p-value can fall to ``1 - level``."""

    def bounded(level: float) -> tuple[float, float]:
        if min_p > 1.0 - level + 1e-12:
            return (-math.inf, math.inf)
        return invert(level)

    return bounded


def _interval(
    invert: Callable[[float], tuple[float, float]],
    level: float,
    min_p: float,
    n_admissible: int,
    exact: bool,
) -> tuple[float, float]:
    if min_p > 1.0 - level + 1e-12:
        warn(
            f"a {100 * level:g}% randomisation interval needs p-values down to "
            f"{1 - level:.3g}, but with {n_admissible} admissible allocation(s)"
            + ("" if exact else f" and {round(1 / min_p) - 1} re-randomisations")
            + f" the smallest attainable p is {min_p:.3g}: the interval is unbounded "
            f"(-inf, inf). The largest level with a bounded interval is "
            f"{100 * (1 - min_p):.3g}%"
            + ("" if exact else " (or draw more re-randomisations)")
            + ".",
            SmallSampleWarning,
        )
    return invert(level)


def _unbounded_note(
    interval: tuple[float, float], level: float, min_p: float, alloc: Allocation
) -> str:
    if min_p > 1.0 - level + 1e-12:
        return (
            f"The {100 * level:g}% interval is unbounded: {alloc.n_admissible} admissible "
            f"allocations give a smallest attainable p of {min_p:.3g} > {1 - level:.3g}."
        )
    side = "lower" if not np.isfinite(interval[0]) else "upper"
    return (
        f"The {side} end of the {100 * level:g}% interval is unbounded: no effect that far "
        "out (on the analysis scale) is rejected at this level."
    )


def _score_test(problem: _Problem, use: str, options: dict[str, Any]) -> _Run:
    """Observed statistic, estimate, null distribution and inverter of ``"glmm-score"``."""
    from . import _permutation_score as sc

    td, space = problem.td, problem.space
    extra = sorted(set(options) - {"random"})
    if extra:
        raise OptionError(
            "statistic='glmm-score' takes only lmm_options={'random': ...} (the GLMM without "
            f"a treatment term is fitted once); got {extra}."
        )
    random = check_option("lmm_options['random']", options.get("random", "nested"), sc.SCORE_RANDOM)
    model = sc.null_model(td, random)
    pieces = sc.fit_null(model)
    messages = [
        f"Score statistic of the {td.family} GLMM (random={random!r}) fitted once without a "
        "treatment term; "
        + ("use='estimate': U / I, one Newton step from no effect." if use == "estimate" else
           "use='t': U / sqrt(I).")
    ]  # fmt: skip
    if not pieces.core.converged:
        messages.append(f"The null GLMM fit did not converge ({pieces.core.message}).")
    obs = float(sc.score_statistics(pieces, problem.observed_x, use)[0])
    if not np.isfinite(obs):
        raise DataError(
            "the glmm-score statistic is not defined for the observed allocation (the "
            "treatment is collinear with the period effects)."
        )
    estimate = float(sc.score_statistics(pieces, problem.observed_x, "estimate")[0])
    seq_of = np.asarray(problem.assignments)[:, space.columns]  # each cluster's drawn sequence
    null = sc.score_by_sequence(pieces, space.seq_matrix, seq_of, use)
    failures: list[float] = []
    invert = ci.score_inverter(
        model, pieces, space.seq_matrix, seq_of, problem.observed_x, use, problem.alternative,
        problem.exact, estimate, failures,
    )  # fmt: skip
    return _Run(obs, estimate, null, invert, messages, score_failures=failures)


def _refit_test(
    data: pd.DataFrame,
    problem: _Problem,
    statistic: Any,
    name: str,
    use: str,
    options: dict[str, Any],
    executor: Executor | None,
    n_jobs: int | None,
    roles: dict[str, Any],
) -> _Run:
    """Run the test of a refitted statistic (``"lmm"`` or a callable) with its inverter."""
    td, space = problem.td, problem.space
    obs, estimate, null, messages, job = _refit_statistics(
        data, td, statistic, name, use, options, space, problem.assignments, problem.observed_x,
        executor=executor, n_jobs=n_jobs, **roles,
    )  # fmt: skip
    run = _Run(obs, estimate, null, None, messages)
    if job is not None:
        run.invert = ci.model_inverter(
            job, td.family, roles["outcome"], ci.treatment_matrices(space, problem.assignments),
            problem.observed_x, problem.alternative, problem.exact, obs, estimate, null,
            executor, n_jobs, run.ci_failures,
        )  # fmt: skip
    return run


def _permuted_frame(
    data: pd.DataFrame, td: TrialData, treatment: str, x: np.ndarray
) -> pd.DataFrame:
    frame = data.copy()
    frame[treatment] = x[td.cluster_codes, td.period_codes]
    out: pd.DataFrame = frame
    return out


def _refit_statistics(
    data: pd.DataFrame,
    td: TrialData,
    statistic: Any,
    name: str,
    use: str,
    options: dict[str, Any],
    space: Space,
    assignments: np.ndarray,
    observed_x: np.ndarray,
    *,
    executor: Executor | None,
    n_jobs: int | None,
    **roles: Any,
) -> tuple[float, float, np.ndarray, list[str], ci.RefitJob | None]:
    """Observed value, estimate, null distribution and refit job of a refitted statistic."""
    if len(td.frame) != len(data):  # pragma: no cover - from_frame drops nothing here
        raise DataError("rows were dropped while validating `data`; remove them first.")
    messages: list[str] = []
    xs = treatment_batch(space.seq_matrix, assignments, space.columns)
    if name == "lmm":
        opts = dict(options)
        if use == "estimate":
            opts.setdefault("dof", "normal")
        job = ci.RefitJob(
            data=data,
            cluster_codes=np.asarray(td.cluster_codes),
            period_codes=np.asarray(td.period_codes),
            treatment=roles["treatment"],
            fit_args={k: v for k, v in roles.items() if v is not None},
            options=opts,
            use=use,
        )
        obs, est = ci.fit_observed(job, observed_x[0])  # errors propagate to the caller
        null, _, not_conv, errors = ci.refit_many(job, xs, executor, n_jobs)
        if not_conv:
            messages.append(f"{not_conv} of the model fits did not converge (kept).")
        messages += [f"executor failure ({e}); those re-randomisations are missing" for e in errors]
        return obs, est, null, messages, job

    def one(frame: pd.DataFrame) -> float:
        return float(statistic(frame))

    obs = one(_permuted_frame(data, td, roles["treatment"], np.nan_to_num(observed_x[0])))
    null = np.full(assignments.shape[0], np.nan)
    for k in range(assignments.shape[0]):
        try:
            null[k] = one(_permuted_frame(data, td, roles["treatment"], np.nan_to_num(xs[k])))
        except (ValueError, RuntimeError, ArithmeticError, np.linalg.LinAlgError):
            null[k] = np.nan
    return obs, obs, null, messages, None


# --------------------------------------------------------------------------------------
# null distributions for simulation
# --------------------------------------------------------------------------------------
def null_distribution_from_allocation(
    allocation: Allocation,
    cell_summaries: npt.ArrayLike,
    *,
    statistic: Literal["twfe", "cluster-period"] = "twfe",
    weights: str | None = None,
    cell_weights: npt.ArrayLike | None = None,
    n_permutations: int = 999,
    rng: RNGLike = None,
) -> NullDistribution:
    r"""Randomisation distributions of a cell-level statistic for many outcome replicates.

    For simulation-based type-I error or power of a randomisation test: the clusters keep
    the allocation's own assignment (:attr:`Allocation.assignment`) as the observed one,
    and the same re-randomisations (drawn from the allocation's admissible set, or all of
    it when it has at most ``n_permutations`` members) are applied to every replicate.

    Parameters
    ----------
    allocation : Allocation
        From :func:`steppedwedge.randomise`.
    cell_summaries : array_like, (I, T) or (R, I, T)
        Cell summaries (e.g. cell means) with rows in ``allocation.design.clusters`` order
        (the allocated design's rows) and columns in its period order; NaN = unobserved.
    statistic : {"twfe", "cluster-period"}
    weights : str, optional
        As in :func:`permutation_test`.
    cell_weights : array_like, optional
        ``(I, T)`` cell weights for ``statistic="twfe", weights="size"``.
    n_permutations : int, default 999
    rng : int, numpy.random.Generator or None

    Returns
    -------
    NullDistribution
        ``observed`` ``(R,)``, ``null`` ``(R, B)`` and ``exact``; ``pvalues()`` applies the
        conventions of :func:`permutation_test`.

    Examples
    --------
    >>> import numpy as np
    >>> from steppedwedge.design import Design
    >>> from steppedwedge.randomise import randomise
    >>> from steppedwedge.inference.permutation import null_distribution_from_allocation
    >>> alloc = randomise(Design.stepped_wedge(4), list("abcd"), rng=1, alpha=None)
    >>> y = np.random.default_rng(2).normal(size=(3, 4, 5))
    >>> nd = null_distribution_from_allocation(alloc, y, statistic="twfe")
    >>> nd.null.shape, nd.exact, bool(np.all(nd.pvalues() >= 1 / 24))
    ((3, 24), True, True)
    """
    if not isinstance(allocation, Allocation):
        raise TypeError(
            f"`allocation` must be a steppedwedge Allocation; got {type(allocation).__name__}."
        )
    name = check_option("statistic", statistic, ("twfe", "cluster-period"))
    if name == "twfe":
        wts = check_option("weights", "none" if weights is None else weights, ("none", "size"))
    else:
        wts = check_option(
            "weights", "clusters" if weights is None else weights, ("clusters", "inverse-variance")
        )
    b = check_positive_int("n_permutations", n_permutations)
    d = allocation.design
    y = np.asarray(cell_summaries, dtype=np.float64)
    single = y.ndim == 2
    yr = y[None] if single else y
    if yr.ndim != 3 or yr.shape[1:] != d.matrix.shape:
        raise OptionError(
            f"`cell_summaries` must have shape {d.matrix.shape} or (R, *{d.matrix.shape}); "
            f"got {y.shape}."
        )
    mask = ~np.isnan(yr[0]) & d.observed
    if np.any(np.isnan(yr[:, mask])):
        raise DataError("`cell_summaries` replicates must share one pattern of missing cells.")
    if wts == "size":
        if cell_weights is None:
            raise OptionError("`weights='size'` needs `cell_weights`.")
        wt = np.asarray(cell_weights, dtype=np.float64)
    else:
        wt = np.ones(d.matrix.shape)
    where = {c: k for k, c in enumerate(allocation.clusters)}
    columns = np.array([where[c] for c in d.clusters], dtype=np.intp)
    space = Space(
        alloc=allocation,
        seq_matrix=np.asarray(d.sequence_matrix, dtype=np.float64),
        columns=columns,
        observed_assignment=allocation.sequence_of,
    )
    gen = normalise_rng(rng)
    assignments, exact = draw_assignments(allocation, b, gen)
    stat = cell_statistic(name, wts, mask, wt)
    y0 = np.nan_to_num(yr)
    x_obs = treatment_batch(space.seq_matrix, space.observed_assignment, columns)
    obs = np.asarray(stat(y0, x_obs)).reshape(yr.shape[0])
    null = batched(lambda x: np.asarray(stat(y0, x)).reshape(yr.shape[0], -1), space, assignments)
    return NullDistribution(observed=obs, null=null, exact=exact)
