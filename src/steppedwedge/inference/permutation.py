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
import warnings
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
    twfe_statistics,
    vertical_statistics,
)
from .._typing import RNGLike
from .._validation import check_option, check_positive_int, normalise_rng
from .._warnings import caller_stacklevel, warn
from ..data import TrialData
from ..design import Design
from ..exceptions import DataError, DesignError, OptionError, SmallSampleWarning
from ..randomise import Allocation, randomise
from ..results import TIDY_COLUMNS, ResultMixin, Summary, _fmt
from . import _permutation_ci as ci

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
_CHUNK = 2048  # allocations per batch (bounds the (B, I, T) treatment arrays)
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
class PermutationResult(ResultMixin):
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

    # ------------------------------------------------------------------ inference
    def conf_int(self, confidence_level: float | None = None) -> tuple[float, float]:
        """Confidence interval by test inversion (constant effect on the analysis scale).

        Parameters
        ----------
        confidence_level : float, optional
            Default: the level given to :func:`permutation_test`, else 0.95.  Another level
            is computed on demand from the same re-randomisations.

        Returns
        -------
        tuple of float
            ``(low, high)`` on the scale of :attr:`link` (exponentiate for a rate or odds
            ratio); ``(-inf, inf)`` when the space is too small for the level.

        Raises
        ------
        ValueError
            When the statistic cannot be inverted (callables).
        """
        level = confidence_level
        if level is None:
            level = 0.95 if self.confidence_level is None else self.confidence_level
        if self.interval is not None and self.confidence_level == level:
            return self.interval
        if self._invert is None:
            raise OptionError(
                "a confidence interval by test inversion is available for the 'twfe', "
                "'cluster-period', 'lmm' and 'glmm-score' statistics, not for a callable."
            )
        if not 0.0 < level < 1.0:
            raise OptionError(f"`confidence_level` must lie in (0, 1); got {level!r}.")
        if level not in self._intervals:  # computed once per level (refits are costly)
            self._intervals[level] = self._invert(level)
        return self._intervals[level]

    # ------------------------------------------------------------------ tables
    def tidy(self, confidence_level: float | None = None) -> pd.DataFrame:
        """One row (``term="treatment"``): estimate, statistic, p-value and the interval.

        Parameters
        ----------
        confidence_level : float, optional
            Level of the interval (default as :meth:`conf_int`).

        Returns
        -------
        pandas.DataFrame
            Columns ``term, estimate, std_error, statistic, df, p_value, conf_low,
            conf_high``; ``std_error`` and ``df`` are NaN; ``conf_low``/``conf_high`` are
            NaN unless an interval is available (stored, or computable by inversion).
        """
        try:
            lo, hi = self.conf_int(confidence_level)
        except ValueError:
            lo, hi = float("nan"), float("nan")
        row = (
            self.estimand,
            self.estimate,
            self.std_error,
            self.statistic,
            self.df,
            self.pvalue,
            lo,
            hi,
        )
        out: pd.DataFrame = pd.DataFrame([row], columns=list(TIDY_COLUMNS))
        return out

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

    def plot(self, ax: Any = None, *, bins: int | str = "auto") -> Any:
        """Histogram of the null distribution with the observed statistic marked.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
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
# setting up the problem
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Space:
    alloc: Allocation
    seq_matrix: np.ndarray  # (S, T) in data period order
    columns: np.ndarray  # data row -> allocation column
    observed_assignment: np.ndarray  # (I_alloc,) observed sequence, allocation order


def _label_key(x: Any) -> str:
    return str(x)


def _completed_rows(treat: np.ndarray) -> np.ndarray:
    """Fill unobserved cells with the cluster's previous (else next) observed value."""
    out = np.array(treat, dtype=np.float64)
    n_t = out.shape[1]
    for j in range(1, n_t):  # forward fill
        gap = np.isnan(out[:, j])
        out[gap, j] = out[gap, j - 1]
    for j in range(n_t - 2, -1, -1):  # backward fill what is left at the start
        gap = np.isnan(out[:, j])
        out[gap, j] = out[gap, j + 1]
    return out


def _space_iv(td: TrialData, treat: np.ndarray, allocation: Any, design: Any) -> _Space:
    clusters = list(td.clusters)
    if allocation is not None:
        if not isinstance(allocation, Allocation):
            raise TypeError(
                "`allocation` must be a steppedwedge Allocation (from sw.randomise); got "
                f"{type(allocation).__name__}."
            )
        if design is not None:
            raise OptionError("give `allocation` or `design`, not both (the allocation has one).")
        alloc = allocation
    else:
        if design is None:
            try:
                design = Design.from_matrix(
                    _completed_rows(treat),
                    clusters=clusters,
                    periods=list(td.periods),
                    allow_reversal=True,
                    check_identifiable=False,
                )
            except DesignError as exc:
                raise DataError(
                    f"cannot derive the allocation space from the treatment column: {exc}"
                ) from None
        elif not isinstance(design, Design):
            raise TypeError(f"`design` must be a steppedwedge Design; got {type(design).__name__}.")
        if design.n_clusters != len(clusters):
            raise DataError(
                f"`design` has {design.n_clusters} cluster rows but the data have "
                f"{len(clusters)} clusters; the design must describe the trial's sequences."
            )
        alloc = randomise(design, clusters, rng=0, alpha=None)

    # clusters: data rows <-> allocation columns (matched by label, then by text)
    akeys = [_label_key(c) for c in alloc.clusters]
    dkeys = [_label_key(c) for c in clusters]
    if sorted(akeys) != sorted(dkeys) or len(set(dkeys)) != len(dkeys):
        extra = sorted(set(dkeys) - set(akeys))
        absent = sorted(set(akeys) - set(dkeys))
        raise DataError(
            "the data's clusters differ from the allocation's"
            + (f"; in the data only: {extra[:5]}" if extra else "")
            + (f"; in the allocation only: {absent[:5]}" if absent else "")
            + "."
        )
    where = {k: n for n, k in enumerate(akeys)}
    columns = np.array([where[k] for k in dkeys], dtype=np.intp)

    # periods: by label text, else in order when the numbers agree
    dper = alloc.design.periods
    sm_all = np.asarray(alloc.design.sequence_matrix, dtype=np.float64)
    pk = [_label_key(p) for p in dper]
    tk = [_label_key(p) for p in td.periods]
    if sorted(pk) == sorted(tk):
        pos = {k: n for n, k in enumerate(pk)}
        sm = sm_all[:, [pos[k] for k in tk]]
    elif len(pk) == len(tk):
        sm = sm_all
    else:
        raise DataError(
            f"the allocation's design has {len(pk)} periods but the data have {len(tk)}; "
            "the data must cover the design's periods."
        )

    # the observed allocation: each cluster's sequence, from its treatment pattern
    mask = ~np.isnan(treat)
    obs = np.empty(len(akeys), dtype=np.int64)
    for r, lab in enumerate(clusters):
        m = mask[r]
        rows = sm[:, m]
        match = np.flatnonzero(
            np.all(~np.isnan(rows) & (np.abs(np.nan_to_num(rows) - treat[r, m]) < 1e-9), axis=1)
        )
        if match.size == 0:
            raise DataError(
                f"the treatment of cluster {lab!r} over its observed periods matches no "
                "sequence of the allocation's design; the data were not allocated from this "
                "allocation space."
            )
        own = alloc.assignment.get(alloc.clusters[columns[r]], -1)
        obs[columns[r]] = own if own in match else int(match[0])
    if not _is_admissible(alloc, obs):
        raise DataError(
            "the observed treatment pattern is not an admissible allocation of `allocation` "
            f"(observed sequences: {dict(zip(akeys, (obs + 1).tolist(), strict=True))}, as "
            "waves); a randomisation test must re-draw from the space the trial was actually "
            "randomised from."
        )
    return _Space(alloc=alloc, seq_matrix=sm, columns=columns, observed_assignment=obs)


def _is_admissible(alloc: Allocation, obs: np.ndarray) -> bool:
    """Whether the allocation vector ``obs`` (allocation column order) is admissible."""
    if np.array_equal(obs, alloc.sequence_of):
        return True
    held = alloc._admissible
    if held is None and alloc.n_admissible <= int(alloc.options["max_enumerate"]):
        held = alloc.admissible
    if held is not None:
        return bool(np.any(np.all(held == obs[None, :].astype(held.dtype), axis=1)))
    space = alloc._space  # unconstrained space: per-stratum count bounds
    g = np.bincount(obs, minlength=space.n_sequences)
    if not np.array_equal(g, np.asarray(space.sequence_sizes)):
        return False
    for h, members in enumerate(space.members):
        counts = np.bincount(obs[members], minlength=space.n_sequences)
        if np.any(counts < space.lower[h]) or np.any(counts > space.upper[h]):
            return False
    return True


def _assignments(
    alloc: Allocation, n_permutations: int, gen: np.random.Generator
) -> tuple[np.ndarray, bool]:
    enumerable = alloc._admissible is not None or alloc.n_admissible <= int(
        alloc.options["max_enumerate"]
    )
    if enumerable and alloc.n_admissible <= n_permutations:
        return np.asarray(alloc.admissible), True
    return np.asarray(alloc.draw(n_permutations, gen)), False


def _cell_arrays(
    td: TrialData, link: str, weights: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell summaries ``(I, T)`` (NaN unobserved), size weights, observed mask."""
    from ..models.cluster_level import _cell_summaries

    ci, pj, _, s, w = _cell_summaries(td, link, "size" if weights == "size" else "none")
    shape = (td.n_clusters, td.n_periods)
    y = np.full(shape, np.nan)
    y[ci, pj] = s
    wt = np.zeros(shape)
    wt[ci, pj] = w
    return y, wt, ~np.isnan(y)


def _batched(
    fun: Callable[[np.ndarray], np.ndarray], space: _Space, assignments: np.ndarray
) -> np.ndarray:
    out = []
    for start in range(0, assignments.shape[0], _CHUNK):
        a = assignments[start : start + _CHUNK]
        out.append(fun(treatment_batch(space.seq_matrix, a, space.columns)))
    return np.concatenate(out, axis=-1)


def _cell_statistic(
    name: str,
    weights: str,
    mask: np.ndarray,
    wt: np.ndarray,
    cache: dict[bytes, np.ndarray] | None = None,
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    cache = {} if cache is None else cache  # twfe annihilators by observation pattern
    if name == "twfe":
        w = wt if weights == "size" else np.ones_like(wt)

        def twfe(y: np.ndarray, x: np.ndarray) -> np.ndarray:
            return twfe_statistics(np.nan_to_num(y), x, mask, w, cache=cache)

        return twfe

    def vertical(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        if y.ndim == 3:
            return np.stack([vertical_statistics(yy, x, mask, weights) for yy in y])  # type: ignore[arg-type]
        return vertical_statistics(y, x, mask, weights)  # type: ignore[arg-type]

    return vertical


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
        ``"glmm-score"``.
        See Notes.
    alpha : float or None, default 0.05
        Warn (:class:`~steppedwedge.SmallSampleWarning`) when the smallest attainable
        p-value exceeds ``alpha``; ``None`` disables the check.
    executor : concurrent.futures.Executor, optional
        ``"lmm"`` only: where to run the refits (any executor: a process pool, dask's
        ``Client.get_executor()``...).  Results do not depend on it.
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
    ValueError
        Invalid options.

    Warns
    -----
    SmallSampleWarning
        When the smallest attainable p-value exceeds ``alpha``.

    Notes
    -----
    **p-value.**  Two-sided tests use ``|T|`` (every statistic here estimates 0 under the
    null); ``"greater"``/``"less"`` use ``T``/``-T``.  Enumerated (exact): the proportion of
    the admissible allocations, the observed one included, with a statistic at least as
    extreme as the observed one.  Monte Carlo: ``(1 + #{extreme draws}) / (1 + B)``, which
    counts the observed allocation once and keeps the test valid (Phipson & Smyth 2010).
    Draws are uniform with replacement from the admissible set.

    **Confidence interval.**  The interval is ``{theta0 : p(theta0) > 1 -
    confidence_level}``, where ``p(theta0)`` is the test of the outcomes with the
    hypothesised effect removed, computed over the *same* re-randomisations for every
    ``theta0`` (so ``p`` is a step function and the ends are its jumps):

    * identity scale: ``Y - theta0 X`` (exact under a constant additive effect);
    * counts (log link): a constant rate ratio ``exp(theta0)``, i.e. a multiplicative
      effect on the expected count.  ``"twfe"``/``"cluster-period"`` scale the treated
      cells' counts back, ``y exp(-theta0 x)``, and recompute the log rates
      ``log((y exp(-theta0 x) + 0.5) / exposure)``; binomial (logit): the treated cells'
      odds are scaled by ``exp(-theta0 x)``.  This is an approximation: the scaled counts
      have the control cells' expected value but not their distribution (a Poisson count
      divided by a rate ratio is not Poisson), so the test at ``theta0 != 0`` is not exact
      (its coverage is checked by simulation in ``tests/test_randomisation_ci.py``);
    * ``"lmm"`` (a GLMM for counts, incl. ``random="nested+decay"``): the exact offset
      form, the model refitted with ``log mu = offset + theta0 X_obs + beta X*`` (Gaussian:
      ``Y - theta0 X_obs``) and ``beta`` (or its t) of the re-randomised ``X*`` as the
      statistic.  Binomial GLMMs take no offset and are refused;
    * ``"glmm-score"``: the same offset form (log or logit link), but the model refitted at
      ``theta0`` is the GLMM without a treatment term, once per ``theta0``, and every
      re-randomisation is scored at that fit, so the ends are found by bracketing and
      bisection (to 1e-4 of the model standard error; some 30 GLMM fits in all).

    Cell statistics locate the ends by bracketing and bisection to 1e-7 of the null
    distribution's spread (the statistics are linear in the cell summaries, so each
    ``theta0`` costs one product).  Model statistics refit every re-randomisation at a few
    ``theta0``: each allocation's statistic is smooth in ``theta0``, so the ends are found by
    a secant iteration on the piecewise-linear interpolation through the refitted values
    (to 1e-4 of the spread; 4 to 10 rounds of refits for both ends).  When the
    smallest attainable p-value exceeds ``1 - confidence_level`` (e.g. Family
    Safeguarding's 12 allocations at 95%) the interval is ``(-inf, inf)`` with a
    :class:`~steppedwedge.SmallSampleWarning` naming the number of allocations; an end
    with no rejection within a rate ratio of ``e^30`` (link scales) is infinite and said
    so in :attr:`PermutationResult.messages`.

    **Monte-Carlo error.**  Without enumeration the p-value has Monte-Carlo standard error
    ``sqrt(p (1 - p) / B)`` (:attr:`PermutationResult.pvalue_mc_se`).

    **Missing cells and partial exposure.**  A re-drawn sequence is applied to the cells a
    cluster actually has; a cell that the drawn sequence marks unobserved is left out for
    that draw.  Without ``allocation``/``design``, a cluster's sequence is its treatment
    row with unobserved cells filled from its previous (else next) observed period.  The
    cluster-period statistic compares fully treated (1) with control (0) cells only.  An
    allocation under which the statistic is undefined (e.g. treatment collinear with the
    fixed effects once cells are dropped) is left out of the null distribution; the
    allocation is independent of the outcomes, so the test stays valid.

    **Matching data to the allocation.**  Clusters are matched by label (as text); periods
    by label text, else, when the numbers agree, in order (the data's sorted periods to the
    design's columns).

    **Cost.**  ``"twfe"`` and ``"cluster-period"`` are vectorised over re-randomisations
    (10,000 of ``"cluster-period"`` on 17 councils x 20 quarters take about 1.5 s,
    ``benchmarks/bench_permutation.py``); ``"lmm"`` and callables cost one call per
    re-randomisation (an LMM or GLMM fit takes tens of milliseconds), so use fewer
    re-randomisations, e.g. ``n_permutations=999``, and ``executor``/``n_jobs``.
    ``"glmm-score"`` fits one GLMM and scores all re-randomisations in one pass (10,000
    with the 95% interval: about 2 s of CPU, ``benchmarks/bench_permutation_score.py``).
    Re-randomisations whose statistic fails are counted (:attr:`PermutationResult.n_failed`)
    and left out.

    References
    ----------
    Thompson JA et al. (2018) Stat Med 37:2487-2500.  Wang R, DeGruttola V (2017) Stat Med
    36:2831-2843.  Ji X et al. (2017) Ann Appl Stat 11:1-20.  Phipson B, Smyth GK (2010)
    Stat Appl Genet Mol Biol 9:39.  Rabideau DJ, Wang R (2021) Stat Med 40:4442-4456
    (randomisation intervals from GLM statistics in the offset form).  Rao CR (1948) Proc
    Camb Philos Soc 44:50-57 (the efficient score statistic).

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
    td = TrialData.from_frame(
        data,
        outcome=outcome,
        cluster=cluster,
        period=period,
        treatment=treatment,
        individual=individual,
        family=family,
        trials=trials,
        exposure=exposure,
    )
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

    cells = td.cells()
    treat = np.where(cells.observed, cells.treatment, np.nan)
    space = _space_iv(td, treat, allocation, design)
    alloc = space.alloc
    gen = normalise_rng(rng)
    assignments, exact = _assignments(alloc, b, gen)
    observed_x = treatment_batch(space.seq_matrix, space.observed_assignment, space.columns)

    messages: list[str] = []
    invert: Callable[[float], tuple[float, float]] | None = None
    ci_failures: list[int] = []
    score_failures: list[float] = []
    estimate: float
    if name in ("twfe", "cluster-period"):
        y, wt, mask = _cell_arrays(td, lk, wts)
        kcache: dict[bytes, np.ndarray] = {}  # shared with the interval's coefficients
        stat = _cell_statistic(name, wts, mask, wt, kcache)
        obs = float(stat(y, observed_x)[0])
        null = _batched(lambda x: stat(y, x), space, assignments)
        estimate = obs
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
                treatment_batch(space.seq_matrix, assignments[s : s + _CHUNK], space.columns)
                for s in range(0, assignments.shape[0], _CHUNK)
            ],
            observed_x=observed_x,
            alternative=alternative,
            exact=exact,
            cache=kcache,
        )
        shift, additive = ci.cell_shift(td, lk, y)
        invert = ci.cell_inverter(prob, shift, additive, obs, null)
    elif name == "glmm-score":
        obs, estimate, null, invert, msgs = _score_test(
            td, use, lmm_options or {}, space, assignments, observed_x, alternative, exact,
            score_failures,
        )  # fmt: skip
        messages += msgs
    else:
        roles = dict(
            family=family,
            outcome=outcome,
            cluster=cluster,
            period=period,
            treatment=treatment,
            exposure=exposure,
            trials=trials,
            individual=individual,
        )
        obs, estimate, null, msgs, job = _refit_statistics(
            data,
            td,
            statistic,
            name,
            use,
            lmm_options or {},
            space,
            assignments,
            observed_x,
            executor=executor,
            n_jobs=n_jobs,
            **roles,
        )
        messages += msgs
        if job is not None:
            invert = ci.model_inverter(
                job,
                td.family,
                outcome,
                ci.treatment_matrices(space, assignments),
                observed_x,
                alternative,
                exact,
                obs,
                estimate,
                null,
                executor,
                n_jobs,
                ci_failures,
            )
    n_failed = int(np.count_nonzero(~np.isfinite(null)))
    if n_failed:
        messages.append(
            f"{n_failed} of {null.size} re-randomisation(s) gave no finite statistic and were "
            "left out (the allocation does not depend on the outcomes, so the test stays valid)."
        )
    pval = permutation_pvalue(obs, null, alternative, exact=exact)
    n_used = int(null.size - n_failed)
    min_p = 1.0 / alloc.n_admissible if exact else max(1.0 / (1 + n_used), 1.0 / alloc.n_admissible)
    if alpha is not None and min_p > alpha:
        warnings.warn(
            f"the randomisation test can never reach p <= {alpha:g}: the smallest attainable "
            f"p-value is {min_p:.3g} ({alloc.n_admissible} admissible allocations"
            + ("" if exact else f", {n_used} re-randomisations")
            + "); interpret p with that in mind or use model-based small-sample inference.",
            SmallSampleWarning,
            stacklevel=caller_stacklevel(),
        )
    if invert is not None:
        invert = _bounded_inverter(invert, min_p)
    interval = None
    if confidence_level is not None and invert is not None:
        interval = _interval(invert, float(confidence_level), min_p, alloc.n_admissible, exact)
        if not all(np.isfinite(interval)):
            messages.append(_unbounded_note(interval, float(confidence_level), min_p, alloc))
        if score_failures:
            messages.append(
                f"the GLMM without a treatment term could not be fitted at "
                f"{len(score_failures)} hypothesised effect(s) while the interval was "
                "searched; those were not rejected (the interval can only be wider)."
            )
        worst = int(np.max(ci_failures)) if ci_failures else 0
        if worst:
            messages.append(
                f"up to {worst} of the {null.size} refits failed at a hypothesised "
                "effect while the interval was searched (left out of that p-value)."
            )
    null = np.asarray(null, dtype=np.float64).copy()
    null.flags.writeable = False
    method = alloc.method + (" + constrained" if alloc.constrained else "")
    mc_se = 0.0 if exact else math.sqrt(pval * (1.0 - pval) / max(n_used, 1))
    return PermutationResult(
        statistic=obs,
        estimate=float(estimate),
        pvalue=float(pval),
        null_distribution=null,
        n_permutations=int(null.size),
        exact=exact,
        min_pvalue=float(min_p),
        statistic_name=name,
        alternative=alternative,
        n_admissible=int(alloc.n_admissible),
        allocation_method=method,
        confidence_level=None if confidence_level is None else float(confidence_level),
        interval=interval,
        family=td.family,
        link=lk if name not in ("lmm", "glmm-score") else _DEFAULT_LINK[td.family],
        weights=wts,
        outcome=outcome,
        n_clusters=td.n_clusters,
        n_periods=td.n_periods,
        n_failed=n_failed,
        pvalue_mc_se=mc_se,
        messages=tuple(messages),
        _invert=invert,
    )


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


def _score_test(
    td: TrialData,
    use: str,
    options: dict[str, Any],
    space: _Space,
    assignments: np.ndarray,
    observed_x: np.ndarray,
    alternative: str,
    exact: bool,
    failures: list[float],
) -> tuple[float, float, np.ndarray, Callable[[float], tuple[float, float]], list[str]]:
    """Observed statistic, estimate, null distribution and inverter of ``"glmm-score"``."""
    from . import _permutation_score as sc

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
    obs = float(sc.score_statistics(pieces, observed_x, use)[0])
    if not np.isfinite(obs):
        raise DataError(
            "the glmm-score statistic is not defined for the observed allocation (the "
            "treatment is collinear with the period effects)."
        )
    estimate = float(sc.score_statistics(pieces, observed_x, "estimate")[0])
    seq_of = np.asarray(assignments)[:, space.columns]  # each cluster's drawn sequence
    null = sc.score_by_sequence(pieces, space.seq_matrix, seq_of, use)
    invert = ci.score_inverter(
        model, pieces, space.seq_matrix, seq_of, observed_x, use, alternative, exact, estimate,
        failures,
    )  # fmt: skip
    return obs, estimate, null, invert, messages


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
    space: _Space,
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
    space = _Space(
        alloc=allocation,
        seq_matrix=np.asarray(d.sequence_matrix, dtype=np.float64),
        columns=columns,
        observed_assignment=allocation.sequence_of,
    )
    gen = normalise_rng(rng)
    assignments, exact = _assignments(allocation, b, gen)
    stat = _cell_statistic(name, wts, mask, wt)
    y0 = np.nan_to_num(yr)
    x_obs = treatment_batch(space.seq_matrix, space.observed_assignment, columns)
    obs = np.asarray(stat(y0, x_obs)).reshape(yr.shape[0])
    null = _batched(lambda x: np.asarray(stat(y0, x)).reshape(yr.shape[0], -1), space, assignments)
    return NullDistribution(observed=obs, null=null, exact=exact)
