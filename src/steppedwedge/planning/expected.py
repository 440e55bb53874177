"""Assurance (expected power over uncertain inputs) and expected power over randomisation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._core import power_kernels as pk
from .._typing import RNGLike
from .._validation import check_option, check_positive_int, check_probability, normalise_rng
from ..design import Design
from ..exceptions import OptionError
from ..results import Summary
from ..variance import VarianceComponents
from ._link_assurance import components_assurance
from .analytic import _as_design
from .analytic import power as _power
from .grid import power_grid
from .result import PlanningResultMixin, PowerResult, _number

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = ["AssuranceResult", "ExpectedPowerResult", "assurance", "expected_power"]

_PARAMS = ("effect", "icc", "cac", "decay")


def _multiset_permutations(counts: list[int]) -> Any:
    """Every distinct arrangement of ``counts[s]`` copies of each label ``s``."""
    total = sum(counts)
    out = [0] * total

    def rec(pos: int) -> Any:
        if pos == total:
            yield tuple(out)
            return
        for s, c in enumerate(counts):
            if c:
                counts[s] -= 1
                out[pos] = s
                yield from rec(pos + 1)
                counts[s] += 1

    yield from rec(0)


def _is_distribution(value: Any) -> bool:
    return hasattr(value, "rvs") and callable(value.rvs)


@dataclass(frozen=True)
class AssuranceResult(PlanningResultMixin):
    """Expected power over a grid and/or distribution of uncertain inputs.

    Returned by :func:`steppedwedge.assurance`.

    Attributes
    ----------
    assurance : float
        Probability-weighted mean power (Monte-Carlo mean over drawn values).
    power : ndarray
        Power at every grid point: one axis per grid parameter (in ``grid`` order), plus a
        last axis over Monte-Carlo draws when any input is a distribution.
    grid : dict
        Grid parameter name -> values (the axes of ``power``).
    probabilities : ndarray
        Weight of each grid point (sums to 1 over the grid axes).
    draws : dict
        Distribution parameter name -> drawn values.  With ``variance=`` draws, the drawn
        value of every component that varies (``tau2``, ``gamma2``, ``decay``, ...) per
        draw, and ``effect`` when the effect has a prior distribution.
    mc_std_error : float or None
        Monte-Carlo standard error of ``assurance`` when draws were used.
    point_power : float or None
        Power at the point estimate (``variance=`` an estimate, a fixed effect), else None.
    family : str
        Outcome family of the power calculation (``"gaussian"`` on the ICC path).
    """

    assurance: float
    power: np.ndarray
    grid: dict[str, np.ndarray]
    probabilities: np.ndarray
    draws: dict[str, np.ndarray] = field(default_factory=dict)
    mc_std_error: float | None = None
    point_power: float | None = None
    family: str = "gaussian"

    def _weights(self) -> np.ndarray:
        """Prior weight of every entry of :attr:`power` (sums to 1)."""
        n_draws = next(iter(self.draws.values())).size if self.draws else 0
        w = np.asarray(self.probabilities, dtype=float)
        if n_draws:
            w = np.multiply.outer(w, np.full(n_draws, 1.0 / n_draws))
        return np.broadcast_to(w, self.power.shape)

    def tidy(self) -> pd.DataFrame:
        """Return the distribution of power under the design prior, one row per scenario.

        Returns
        -------
        pandas.DataFrame
            One column per grid parameter and per sampled parameter (the scenario's
            values), then ``probability`` (its prior weight; the column sums to 1) and
            ``power``; ``(probability * power).sum()`` equals :attr:`assurance`.  Rows run
            over the grid in C order, draws innermost.
        """
        import pandas as pd

        shape = self.power.shape
        n_grid = len(self.grid)
        cols: dict[str, np.ndarray] = {}
        for k, (name, vals) in enumerate(self.grid.items()):
            idx = [1] * len(shape)
            idx[k] = -1
            cols[name] = np.broadcast_to(vals.reshape(idx), shape).ravel()
        for name, vals in self.draws.items():
            idx = [1] * n_grid + [-1]
            cols[name] = np.broadcast_to(vals.reshape(idx), shape).ravel()
        cols["probability"] = self._weights().ravel()
        cols["power"] = self.power.ravel()
        out: pd.DataFrame = pd.DataFrame(cols)
        return out

    def prob_power_at_least(self, target: float = 0.8) -> float:
        """Return the prior probability that the power reaches ``target``.

        Parameters
        ----------
        target : float, default 0.8
            Power to reach.

        Returns
        -------
        float
            Sum of the prior weights of the scenarios whose power is at least ``target``.
        """
        return float(self._weights()[self.power >= target].sum())

    def quantile(self, q: Any) -> Any:
        """Return quantiles of power under the prior (the weights of :meth:`tidy`).

        Parameters
        ----------
        q : float or array_like
            Probabilities in [0, 1].

        Returns
        -------
        float or ndarray
            The smallest power whose cumulative prior weight reaches ``q`` (the inverse of
            the prior distribution function of power; with equal weights,
            ``numpy.quantile(power, q, method="inverted_cdf")``).
        """
        q_arr = np.asarray(q, dtype=float)
        if np.any((q_arr < 0) | (q_arr > 1)):
            raise OptionError(f"`q` must lie in [0, 1]; got {q!r}.")
        order = np.argsort(self.power, axis=None, kind="stable")
        values = self.power.ravel()[order]
        cum = np.cumsum(self._weights().ravel()[order])
        pos = np.searchsorted(cum, q_arr * cum[-1] * (1 - 1e-12), side="left")
        out = values[np.minimum(pos, values.size - 1)]
        return float(out) if out.ndim == 0 else out

    def summary(self) -> Summary:
        """Return the summary: assurance, the spread of power and the uncertain inputs.

        Returns
        -------
        steppedwedge.results.Summary
            Renders with ``as_text()``, ``as_html()``, ``as_markdown()``, ``as_latex()``.
        """
        header = [("family", self.family), ("assurance", _number(self.assurance))]
        if self.point_power is not None:
            header.append(("power at the point estimate", _number(self.point_power)))
        header += [
            (
                "Monte-Carlo s.e.",
                "exact over the grid"
                if self.mc_std_error is None
                else _number(self.mc_std_error, 3),
            ),
        ]
        header += [
            (f"grid: {k}", ", ".join(_number(v) for v in vals)) for k, vals in self.grid.items()
        ]
        header += [
            (f"draws: {k}", f"{vals.size} values, mean {_number(vals.mean())}")
            for k, vals in self.draws.items()
        ]
        header += [
            ("power over scenarios", f"{_number(self.power.min())} to {_number(self.power.max())}"),
            (
                "power, 5% to 95% of prior",
                f"{_number(self.quantile(0.05))} to {_number(self.quantile(0.95))}",
            ),
            ("P(power >= 0.8)", _number(self.prob_power_at_least(0.8))),
        ]
        tables = (("Scenarios", self.tidy()),) if not self.draws else ()
        return Summary(
            title="Assurance",
            header=tuple(header),
            tables=tables,
            notes=("Assurance = prior-weighted mean power (O'Hagan, Stevens & Campbell 2005).",),
        )

    def plot(self, ax: Axes | None = None, *, kind: str = "auto", **kwargs: Any) -> Axes:
        """Draw the sensitivity of power to the uncertain inputs, or its distribution.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Axes to draw on (a new figure when None).
        kind : {"auto", "sensitivity", "distribution"}, default "auto"
            ``"sensitivity"``: heat map over the first two grid parameters (averaged over
            the others and the draws), or the power curve over a single grid parameter.
            ``"distribution"``: prior-weighted histogram of power with the assurance
            marked.  ``"auto"``: sensitivity when there is a grid, else distribution.
        **kwargs
            Passed to the plotting function (``Axes.hist`` for the distribution).

        Returns
        -------
        matplotlib.axes.Axes
            The Axes drawn on.
        """
        from ..plotting.power import _axes, plot_power_curve, plot_sensitivity

        kind = check_option("kind", kind, ("auto", "sensitivity", "distribution"))
        names = list(self.grid)
        if kind == "auto":
            kind = "sensitivity" if names else "distribution"
        if kind == "sensitivity" and not names:
            raise OptionError("kind='sensitivity' needs at least one grid parameter.")
        if kind == "distribution":
            ax = _axes(ax)
            ax.hist(
                np.ravel(self.power),
                bins=kwargs.pop("bins", 30),
                range=(0, 1),
                weights=np.ravel(self._weights()),
                **kwargs,
            )
            ax.axvline(self.assurance, color="k", ls="--", lw=1, label="assurance")
            ax.set_xlabel("power")
            ax.set_ylabel("prior probability")
            ax.legend()
            return ax
        pw = self.power if not self.draws else self.power.mean(axis=-1)
        if len(names) >= 2:
            extra = tuple(range(2, pw.ndim))
            vals = pw.mean(axis=extra) if extra else pw
            return plot_sensitivity(
                vals.T,
                x=self.grid[names[0]],
                y=self.grid[names[1]],
                xlabel=names[0],
                ylabel=names[1],
                ax=ax,
                **kwargs,
            )
        return plot_power_curve(self.grid[names[0]], pw, xlabel=names[0], ax=ax, **kwargs)

    def __repr__(self) -> str:
        return f"AssuranceResult(assurance={self.assurance:.4f}, grid={list(self.grid)})"


def assurance(
    design: Design | Any,
    *,
    effect: Any,
    cluster_size: Any,
    icc: Any = None,
    cac: Any = 1.0,
    decay: Any = None,
    variance: Any = None,
    family: str = "gaussian",
    baseline: Any = None,
    exposure: Any = 1.0,
    dispersion: float | None = None,
    probabilities: Any = None,
    n_draws: int = 2000,
    rng: RNGLike = None,
    alpha: float = 0.05,
    **kwargs: Any,
) -> AssuranceResult:
    r"""Assurance: power averaged over uncertainty in the variance components and the effect.

    Two ways to describe the uncertain variance:

    * ``variance=``: an estimate of the components (any :class:`VarianceEstimate`, e.g.
      :func:`steppedwedge.estimate_variance`; power is averaged over its ``.draws``), an
      explicit sequence of :class:`VarianceComponents` draws, or one
      :class:`VarianceComponents` (then only the effect is uncertain).  Every family and
      option of :func:`power` works: counts (Poisson, negative binomial, with ``exposure``)
      and binary outcomes on the link scale, and Gaussian outcomes.
    * ``icc=``, ``cac=``, ``decay=``: Gaussian outcomes on the ICC scale, each a value, a
      grid or a distribution (the vectorised closed forms of :func:`power_grid`).

    Parameters
    ----------
    design : Design or array_like
        The design, or an ``I x T`` treatment matrix (0/1, fractions, NaN unobserved).
    effect : float, array_like or scipy.stats frozen distribution
        On the link scale of ``family`` (e.g. the log rate ratio for counts).  A scalar is
        fixed; a 1-D array is a grid of plausible values (weighted by
        ``probabilities["effect"]``); a frozen distribution (anything with ``.rvs``) is a
        prior: one effect is drawn per draw of ``variance`` (independently of it), or
        ``n_draws`` effects when the components are fixed or on the ICC path.
    cluster_size : float or array_like
        Individuals per cluster-period (``variance=``: any shape of :func:`power`; ICC: one).
    icc, cac, decay : float, array_like or scipy.stats frozen distribution, optional
        The ICC path (Gaussian only): a scalar is fixed; a 1-D array is a grid of plausible
        values (all combinations are evaluated); a distribution is sampled ``n_draws``
        times (independently of the other inputs).
    variance : VarianceEstimate, sequence of VarianceComponents or VarianceComponents
        The components path (instead of ``icc``): see above; draws have equal weights.
    family : {"gaussian", "binomial", "poisson", "negative_binomial"}, default "gaussian"
        Outcome family, as in :func:`power` (needs ``variance=`` unless Gaussian).
    baseline, exposure, dispersion
        As in :func:`power`: the control rate or probability, the person-time (population)
        of each unit, the negative-binomial size ``theta``.
    probabilities : dict, optional
        Grid name -> prior weights of its values (normalised); default equal weights.
    n_draws : int, default 2000
        Monte-Carlo draws of the distributions (not used for the draws of ``variance``).
    rng : int, Generator or None
        Seed for the draws.
    alpha : float, default 0.05
        Two-sided size of the test.
    **kwargs
        ICC path: ``iac``, ``churn``, ``total_variance`` for :func:`power_grid`.
        Components path: ``link``, ``dof``, ``weights``, ``sampling``, ``churn``,
        ``individual_decay``, ``time``, ``analysis``, ``binary_variance``,
        ``glmm_variance``, ``treatment_correlation`` for :func:`power`.

    Returns
    -------
    AssuranceResult
        The assurance, the power of every scenario and the prior weights; ``tidy()`` is
        the prior distribution of power.

    Raises
    ------
    OptionError
        Both or neither of ``icc`` and ``variance``; a non-Gaussian family without
        ``variance``; an estimate without draws; unknown options.

    Notes
    -----
    Assurance (O'Hagan, Stevens & Campbell 2005) is the unconditional probability of a
    significant result, ``E[power(theta, components)]`` under the design prior.  With
    ``variance=`` draws ``V_1..V_B`` it is ``(1/B) sum_b power(theta, V_b)``, exactly the
    mean of :func:`power` over the draws: every draw's covariance is built by the code
    :func:`power` uses, and the GLS information of all draws is one batched solve (for
    link-scale GLMMs at the null and the alternative means, as :func:`power`).  Draws from
    the sampling distribution of an estimate (a parametric bootstrap) make this the
    expected power given the data the components were estimated from; as the draws
    concentrate on the point estimate it converges to the power at the estimate
    (:attr:`AssuranceResult.point_power`).

    References
    ----------
    .. [1] O'Hagan A, Stevens JW, Campbell MJ (2005). Assurance in clinical trial design.
       Pharm Stat 4:187-201.
    .. [2] Xia F, Hughes JP, Voldal EC, Heagerty PJ (2021). Power and sample size
       calculation for stepped-wedge designs with discrete outcomes. Trials 22:598.

    Examples
    --------
    >>> import numpy as np
    >>> from steppedwedge.design import Design
    >>> from steppedwedge.planning import assurance
    >>> res = assurance(Design.stepped_wedge(4, 3), effect=0.3, icc=[0.01, 0.05, 0.1],
    ...                 cac=[0.5, 0.8, 1.0], cluster_size=20)
    >>> res.power.shape, round(res.assurance, 4)
    ((3, 3), 0.82)

    Counts on the link scale, averaged over draws of the components:

    >>> import steppedwedge as sw
    >>> gen = np.random.default_rng(1)
    >>> draws = [sw.VarianceComponents(tau2=0.1, gamma2=g, decay=0.9)
    ...          for g in gen.uniform(0.005, 0.03, size=200)]
    >>> res = assurance(Design.stepped_wedge(5, 3, baseline_periods=2), effect=np.log(0.85),
    ...                 variance=draws, family="poisson", baseline=6e-4,
    ...                 cluster_size=50_000)
    >>> res.power.shape, round(res.assurance, 2)
    ((200,), 0.65)
    """
    d = _as_design(design)
    gen = normalise_rng(rng)
    check_probability("alpha", alpha)
    if variance is not None:
        if icc is not None or decay is not None or np.any(np.asarray(cac, dtype=object) != 1.0):
            raise OptionError(
                "give either `variance=` (components, their draws or an estimate) or "
                "`icc=`/`cac=`/`decay=` (the Gaussian ICC scale), not both."
            )
        fields = components_assurance(
            d,
            effect=effect,
            variance=variance,
            cluster_size=cluster_size,
            probabilities=probabilities,
            n_draws=n_draws,
            gen=gen,
            alpha=alpha,
            options=dict(
                kwargs, family=family, baseline=baseline, exposure=exposure, dispersion=dispersion
            ),
        )
        return AssuranceResult(**fields)
    _check_icc_path(icc, family, baseline, exposure, dispersion)
    return _icc_assurance(
        d, effect, icc, cac, decay, cluster_size, probabilities, n_draws, gen, alpha, kwargs
    )


def _check_icc_path(icc: Any, family: str, baseline: Any, exposure: Any, dispersion: Any) -> None:
    """Check the inputs of :func:`assurance` on the Gaussian ICC scale (no ``variance=``)."""
    if icc is None:
        raise OptionError(
            "give `variance=` (variance components, their draws or an estimate such as "
            "steppedwedge.estimate_variance) or `icc=` (Gaussian ICC scale)."
        )
    if family != "gaussian" or baseline is not None or dispersion is not None:
        raise OptionError(
            f"the `icc=` path is Gaussian only (family={family!r} given): for counts and "
            "binary outcomes on the link scale pass `variance=` (VarianceComponents on the "
            "link scale, their draws or an estimate) with `family` and `baseline`."
        )
    if np.any(np.asarray(exposure, dtype=float) != 1.0):
        raise OptionError("`exposure` applies to count families; pass `variance=` and `family`.")


def _icc_assurance(
    d: Design,
    effect: Any,
    icc: Any,
    cac: Any,
    decay: Any,
    cluster_size: Any,
    probabilities: Any,
    n_draws: int,
    gen: np.random.Generator,
    alpha: float,
    kwargs: dict[str, Any],
) -> AssuranceResult:
    """Compute the Gaussian ICC-scale path of :func:`assurance` (power_grid closed forms)."""
    n_draws = check_positive_int("n_draws", n_draws)
    values = {"effect": effect, "icc": icc, "cac": cac, "decay": decay}
    grid: dict[str, np.ndarray] = {}
    draws: dict[str, np.ndarray] = {}
    fixed: dict[str, Any] = {}
    for name in _PARAMS:
        v = values[name]
        if v is None:
            fixed[name] = None
        elif _is_distribution(v):
            draws[name] = np.asarray(v.rvs(size=n_draws, random_state=gen), dtype=float)
        else:
            arr = np.asarray(v, dtype=float)
            if arr.ndim == 0:
                fixed[name] = float(arr)
            elif arr.ndim == 1 and arr.size >= 1:
                grid[name] = arr
            else:
                raise OptionError(f"`{name}` must be a scalar, a 1-D grid or a distribution.")
    probabilities = probabilities or {}
    unknown = set(probabilities) - set(grid)
    if unknown:
        raise OptionError(f"`probabilities` given for non-grid inputs: {sorted(unknown)}.")
    weights = []
    for name, vals in grid.items():
        w = np.asarray(probabilities.get(name, np.ones(vals.size)), dtype=float)
        if w.shape != vals.shape or np.any(w < 0) or w.sum() <= 0:
            raise OptionError(f"`probabilities[{name!r}]` must be {vals.size} weights >= 0.")
        weights.append(w / w.sum())
    n_grid = len(grid)
    args: dict[str, Any] = {}
    for k, name in enumerate(grid):
        shape = [1] * (n_grid + (1 if draws else 0))
        shape[k] = -1
        args[name] = grid[name].reshape(shape)
    for name, vals in draws.items():
        args[name] = vals.reshape([1] * n_grid + [-1])
    for name, v in fixed.items():
        args[name] = v
    pw = power_grid(
        d,
        effect=args["effect"],
        icc=args["icc"],
        cac=args["cac"],
        decay=args["decay"],
        cluster_size=cluster_size,
        alpha=alpha,
        **kwargs,
    )
    full_shape = tuple(g.size for g in grid.values()) + ((n_draws,) if draws else ())
    pw = np.broadcast_to(pw, full_shape).copy()
    prob = np.ones(())
    for w in weights:
        prob = np.multiply.outer(prob, w)
    prob = np.asarray(prob)
    over_draws = pw.mean(axis=-1) if draws else pw
    value = float((over_draws * prob).sum())
    mc_se = None
    if draws:
        per_draw = (pw * prob[..., None]).reshape(-1, n_draws).sum(axis=0)
        mc_se = float(per_draw.std(ddof=1) / np.sqrt(n_draws))
    return AssuranceResult(
        assurance=value, power=pw, grid=grid, probabilities=prob, draws=draws, mc_std_error=mc_se
    )


@dataclass(frozen=True)
class ExpectedPowerResult(PlanningResultMixin):
    """Power over random allocations of clusters of unequal size to sequences.

    Returned by :func:`steppedwedge.expected_power`.

    Attributes
    ----------
    power : float
        Mean power over allocations (the expected power before randomisation).
    powers : ndarray
        Power of each evaluated allocation.
    allocations : ndarray
        ``(n, I)``: the sequence (0-based, as ``design.sequences``) given to each cluster
        (in ``cluster_sizes`` order), per allocation.
    exhaustive : bool
        True when every distinct allocation was enumerated.
    mc_std_error : float or None
        Monte-Carlo standard error of ``power`` (None when exhaustive).
    """

    power: float
    powers: np.ndarray
    allocations: np.ndarray
    exhaustive: bool
    mc_std_error: float | None

    def quantile(self, q: Any) -> Any:
        """Return quantiles of power over the allocations.

        Parameters
        ----------
        q : float or array_like
            Probabilities in [0, 1].

        Returns
        -------
        float or ndarray
            :func:`numpy.quantile` of :attr:`powers`.
        """
        return np.quantile(self.powers, q)

    def tidy(self) -> pd.DataFrame:
        """Return one row per evaluated allocation.

        Returns
        -------
        pandas.DataFrame
            Columns ``allocation`` (0-based, evaluation order), ``power``, then
            ``cluster_0 .. cluster_{I-1}``: the sequence (0-based) each cluster (in
            ``cluster_sizes`` order) gets in that allocation.
        """
        import pandas as pd

        out: pd.DataFrame = pd.DataFrame(
            {"allocation": np.arange(self.powers.size), "power": self.powers}
        )
        for j in range(self.allocations.shape[1]):
            out[f"cluster_{j}"] = self.allocations[:, j]
        return out

    def summary(self) -> Summary:
        """Return the summary: expected power and its spread over allocations.

        Returns
        -------
        steppedwedge.results.Summary
            Renders with ``as_text()``, ``as_html()``, ``as_markdown()``, ``as_latex()``.
        """
        q05, q50, q95 = self.quantile([0.05, 0.5, 0.95])
        header = (
            ("expected power", _number(self.power)),
            (
                "allocations",
                f"{self.powers.size} "
                + ("(all, enumerated)" if self.exhaustive else "(random sample)"),
            ),
            (
                "Monte-Carlo s.e.",
                "exact" if self.mc_std_error is None else _number(self.mc_std_error, 3),
            ),
            ("median power", _number(q50)),
            ("90% of allocations", f"{_number(q05)} to {_number(q95)}"),
            (
                "worst, best allocation",
                f"{_number(self.powers.min())}, {_number(self.powers.max())}",
            ),
        )
        return Summary(
            title="Expected power over the randomisation",
            header=header,
            notes=(
                "Unequal cluster sizes make power depend on which cluster gets "
                "which sequence (Kristunas et al. 2019).",
            ),
        )

    def plot(self, ax: Axes | None = None, **kwargs: Any) -> Axes:
        """Draw the histogram of power over allocations with the mean marked.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Axes to draw on (a new figure when None).
        **kwargs
            Passed to ``Axes.hist`` (``bins`` defaults to 30).

        Returns
        -------
        matplotlib.axes.Axes
            The Axes drawn on.
        """
        from ..plotting.power import _axes

        ax = _axes(ax)
        ax.hist(self.powers, bins=kwargs.pop("bins", 30), **kwargs)
        ax.axvline(self.power, color="k", ls="--", lw=1)
        ax.set_xlabel("power")
        ax.set_ylabel("allocations")
        return ax

    def __repr__(self) -> str:
        lo, hi = np.quantile(self.powers, [0.05, 0.95])
        return (
            f"ExpectedPowerResult(power={self.power:.4f}, 90% of allocations in "
            f"[{lo:.4f}, {hi:.4f}])"
        )


def expected_power(
    design: Design | Any,
    *,
    effect: float,
    variance: VarianceComponents,
    cluster_sizes: Any,
    n_allocations: int = 2000,
    rng: RNGLike = None,
    alpha: float = 0.05,
    **kwargs: Any,
) -> ExpectedPowerResult:
    r"""Compute the expected power over the randomisation when cluster sizes differ.

    Parameters
    ----------
    design : Design or array_like
        The design; its rows are the slots clusters are randomised to.
    effect : float
        Treatment effect on the link scale.
    variance : VarianceComponents or VarianceEstimate
        Variance components of the outcome model (of an estimate, its point estimate).
    cluster_sizes : array_like, shape (I,) or (I, T), or a scipy.stats frozen distribution
        Cluster-period sizes of the ``I`` actual clusters (per cluster, or per cluster and
        period), before randomisation: allocations permute the clusters over the rows.
        A distribution (anything with ``.rvs``, e.g. a gamma with the planned mean and
        coefficient of variation) gives sizes not yet known: each of ``n_allocations``
        replicates draws a size for every cluster (rounded, at least 1), constant over
        periods.
    n_allocations : int, default 2000
        Random allocations to evaluate; if the number of distinct allocations
        ``I! / prod(g_s!)`` is at most this, all are enumerated.
    rng : int, Generator or None
        Seed for the random allocations (and sizes drawn from a distribution).
    alpha : float, default 0.05
        Two-sided size of the test.
    **kwargs
        Passed to :func:`power` (``family``, ``baseline``, ``sampling``, ``dof``, ...).

    Returns
    -------
    ExpectedPowerResult
        The mean power and the power of every evaluated allocation.

    Notes
    -----
    Each cluster's information ``Z_s' Sigma^{-1} Z_s`` depends only on its sequence ``s``
    and its own sizes, so the information of every (sequence, cluster) pair is computed once
    with the shared GLS kernel and each allocation's information is a sum of ``I`` of them
    (Kristunas et al. 2019; Harrison, Chen & Wang 2020 bound and average this spread).

    Examples
    --------
    >>> from steppedwedge.design import Design
    >>> from steppedwedge.variance import VarianceComponents
    >>> from steppedwedge.planning import expected_power
    >>> res = expected_power(Design.stepped_wedge(2, 2), effect=0.5,
    ...                      variance=VarianceComponents.from_correlations(0.1),
    ...                      cluster_sizes=[5, 10, 20, 40])
    >>> res.exhaustive, res.powers.size
    (True, 6)
    """
    d = _as_design(design)
    gen = normalise_rng(rng)
    n_alloc = check_positive_int("n_allocations", n_allocations)
    if _is_distribution(cluster_sizes):
        return _expected_power_random_sizes(
            d, effect, variance, cluster_sizes, n_alloc, gen, alpha, kwargs
        )
    sizes = _fixed_sizes(cluster_sizes, d)
    seq_of_row = np.asarray(d.sequences)
    n_clusters = d.n_clusters
    counts = np.bincount(seq_of_row, minlength=d.n_sequences)
    # total number of distinct allocations I! / prod g_s!
    n_distinct = math.factorial(n_clusters) // math.prod(math.factorial(int(c)) for c in counts)
    info, res = _pair_information(d, effect, variance, sizes, alpha, kwargs)
    exhaustive = n_distinct <= n_alloc
    if exhaustive:
        seq_of_cluster = np.array(list(_multiset_permutations(list(counts))))
    else:
        seq_of_cluster = np.array([gen.permutation(seq_of_row) for _ in range(n_alloc)])
    total = info[seq_of_cluster, np.arange(n_clusters)[None, :]].sum(axis=1)
    c = res._contrast
    assert c is not None
    sol = np.linalg.solve(total, np.broadcast_to(c, (total.shape[0], c.size))[..., None])[..., 0]
    var = sol @ c
    p2, _ = (
        pk.normal_power(effect, np.sqrt(var), alpha)
        if res.df is None
        else pk.t_power(effect, np.sqrt(var), alpha, res.df)
    )
    mean = float(np.mean(p2))
    se = None if exhaustive else float(np.std(p2, ddof=1) / np.sqrt(p2.size))
    return ExpectedPowerResult(
        power=mean,
        powers=np.asarray(p2),
        allocations=seq_of_cluster,
        exhaustive=exhaustive,
        mc_std_error=se,
    )


def _fixed_sizes(cluster_sizes: Any, d: Design) -> np.ndarray:
    """Return the known cluster sizes as an ``(I, T)`` array (one value per cluster repeated)."""
    sizes = np.asarray(cluster_sizes, dtype=float)
    if sizes.ndim == 1 and sizes.shape[0] == d.n_clusters:
        sizes = np.repeat(sizes[:, None], d.n_periods, axis=1)
    if sizes.shape != (d.n_clusters, d.n_periods):
        raise OptionError(
            f"`cluster_sizes` must have one value per cluster ({d.n_clusters}) or shape "
            f"({d.n_clusters}, {d.n_periods}); got shape {np.shape(cluster_sizes)}."
        )
    if np.any(~np.isfinite(sizes) | (sizes <= 0)):
        raise OptionError("`cluster_sizes` must be finite and > 0 for every cluster and period.")
    return sizes


def _pair_information(
    d: Design,
    effect: float,
    variance: Any,
    sizes: np.ndarray,
    alpha: float,
    kwargs: dict[str, Any],
) -> tuple[np.ndarray, PowerResult]:
    """Information of every (sequence, cluster) pair, through the public power path.

    Returns the ``(S, I, p, p)`` information and the power result of the pair design
    (its contrast and reference distribution).
    """
    seq_of_row = np.asarray(d.sequences)
    n_seq, n_clusters = d.n_sequences, d.n_clusters
    seq_rows = np.array([np.flatnonzero(seq_of_row == s)[0] for s in range(n_seq)])
    pair_design = Design.from_matrix(
        np.repeat(d.matrix[seq_rows], n_clusters, axis=0),
        allow_reversal=True,
        check_identifiable=False,
    )
    res = _power(
        pair_design,
        effect=effect,
        variance=variance,
        cluster_size=np.tile(sizes, (n_seq, 1)),
        alpha=alpha,
        **kwargs,
    )
    assert res._fixed is not None and res._cov is not None and res._contrast is not None
    if res.variance_null != res.variance:
        raise OptionError(
            "expected_power supports models whose variance does not depend on the "
            "means (Gaussian, identity-scale binary, GEE)."
        )
    info = pk.per_cluster_information(res._fixed, res._cov).reshape(
        n_seq, n_clusters, *res._fixed.shape[2:], res._fixed.shape[2]
    )
    return info, res


def _expected_power_random_sizes(
    d: Design,
    effect: float,
    variance: VarianceComponents,
    dist: Any,
    n_rep: int,
    gen: np.random.Generator,
    alpha: float,
    kwargs: dict[str, Any],
) -> ExpectedPowerResult:
    """Compute expected power when each cluster's size is drawn from ``dist``."""
    n_i, n_t = d.n_clusters, d.n_periods
    draws = np.asarray(dist.rvs(size=(n_rep, n_i), random_state=gen), dtype=float)
    draws = np.maximum(np.round(draws), 1.0)
    stacked = Design.from_matrix(
        np.tile(d.matrix, (n_rep, 1)), allow_reversal=True, check_identifiable=False
    )
    sizes = np.repeat(draws.reshape(-1, 1), n_t, axis=1)
    res = _power(
        stacked, effect=effect, variance=variance, cluster_size=sizes, alpha=alpha, **kwargs
    )
    assert res._fixed is not None and res._cov is not None and res._contrast is not None
    if res.variance_null != res.variance:
        raise OptionError(
            "expected_power supports models whose variance does not depend on the "
            "means (Gaussian, identity-scale binary, GEE)."
        )
    p = res._fixed.shape[2]
    info = pk.per_cluster_information(res._fixed, res._cov).reshape(n_rep, n_i, p, p).sum(axis=1)
    c = res._contrast
    sol = np.linalg.solve(info, np.broadcast_to(c, (n_rep, p))[..., None])[..., 0]
    var = sol @ c
    if res.df is None:
        p2, _ = pk.normal_power(effect, np.sqrt(var), alpha)
    else:
        p2, _ = pk.t_power(effect, np.sqrt(var), alpha, res.df)
    p2 = np.asarray(p2)
    return ExpectedPowerResult(
        power=float(p2.mean()),
        powers=p2,
        allocations=np.broadcast_to(np.asarray(d.sequences), (n_rep, n_i)).copy(),
        exhaustive=False,
        mc_std_error=float(p2.std(ddof=1) / np.sqrt(n_rep)),
    )
