"""Search over candidate designs for the most efficient one under constraints."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._core import power_kernels as pk
from .._typing import RNGLike
from .._validation import check_option, check_positive_int, check_probability, normalise_rng
from ..design import Design
from ..exceptions import DesignError, OptionError, SolveError
from ..results import Summary
from ..variance import VarianceComponents
from ._batched import is_link_scale, iter_information
from ._link_assurance import resolve_draws
from .analytic import _covariance, _power_iv
from .analytic import power as _power
from .result import PlanningResultMixin, _number

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = ["DesignSearchResult", "search_designs"]


#: keywords of :func:`power` that the search honours
_SEARCH_OPTIONS = (
    "family",
    "link",
    "baseline",
    "alpha",
    "sampling",
    "churn",
    "individual_decay",
    "time",
    "analysis",
    "exposure",
    "dispersion",
    "binary_variance",
    "glmm_variance",
)
_COSTS = ("treated_cells", "measured_cells", "n_sequences", "n_clusters", "n_periods")


@dataclass(frozen=True)
class DesignSearchResult(PlanningResultMixin):
    """Candidate designs ranked by the variance of the treatment estimator (or power).

    Link-scale GLMMs with ``glmm_variance="null-alternative"`` are ranked by power, which
    depends on the variance under the null as well as under the alternative; every other
    model by the variance, which orders power the same way.

    Returned by :func:`steppedwedge.search_designs`.

    Attributes
    ----------
    patterns : ndarray, shape (K, T)
        The candidate sequences (treatment rows) clusters can be allocated to.
    allocations : ndarray, shape (n, K)
        Clusters allocated to each pattern, per candidate, best first.
    variance, power, power_one_tail : ndarray, shape (n,)
        Per candidate, best first.
    n_evaluated : int
        Number of candidates evaluated.
    exhaustive : bool
        True when every allocation satisfying the constraints was evaluated.
    assurance : ndarray, shape (n,) or None
        With ``variance=`` an estimate with draws (or a sequence of draws): the mean power
        over the draws of the ``n_assurance`` best candidates (NaN for the others).
    family : str
        Outcome family of the power calculation.
    n_periods : ndarray, shape (n,) or None
        Periods of each candidate when the search spanned several trial lengths (the
        patterns of shorter trials are unobserved after their last period), else None.
    """

    patterns: np.ndarray
    allocations: np.ndarray
    variance: np.ndarray
    power: np.ndarray
    power_one_tail: np.ndarray
    n_evaluated: int
    exhaustive: bool
    assurance: np.ndarray | None = None
    family: str = "gaussian"
    n_periods: np.ndarray | None = None
    _power_kwargs: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def design(self, rank: int = 0) -> Design:
        """Return the candidate of the given rank as a :class:`Design`.

        Parameters
        ----------
        rank : int, default 0
            Rank of the candidate (0 = the best).

        Returns
        -------
        Design
            One row per cluster, the patterns repeated as allocated.
        """
        rows = np.repeat(self.patterns, self.allocations[rank], axis=0)
        if self.n_periods is not None:
            rows = rows[:, : int(self.n_periods[rank])]
        return Design.from_matrix(rows)

    @property
    def best(self) -> Design:
        """The most efficient candidate."""
        return self.design(0)

    def costs(self) -> dict[str, np.ndarray]:
        """Return the resource counts of every candidate (ranked order).

        Returns
        -------
        dict of str to ndarray
            ``treated_cells``: cluster-periods under treatment (partial exposure counted
            by its fraction; the intervention-delivery cost); ``measured_cells``: observed
            cluster-periods (the data-collection cost); ``n_sequences``: distinct switch
            patterns used (rollout waves to organise); ``n_clusters``: clusters recruited;
            ``n_periods``: the trial's length in periods.
        """
        pat = np.asarray(self.patterns, dtype=float)
        alloc = self.allocations.astype(float)
        return {
            "treated_cells": alloc @ np.nansum(pat, axis=1),
            "measured_cells": alloc @ np.isfinite(pat).sum(axis=1).astype(float),
            "n_sequences": (self.allocations > 0).sum(axis=1).astype(float),
            "n_clusters": self.allocations.sum(axis=1).astype(float),
            "n_periods": (
                np.full(self.allocations.shape[0], float(self.patterns.shape[1]))
                if self.n_periods is None
                else self.n_periods.astype(float)
            ),
        }

    def tidy(self) -> pd.DataFrame:
        """Return every evaluated candidate, best first.

        Returns
        -------
        pandas.DataFrame
            Columns ``rank``, ``pattern_0 .. pattern_{K-1}`` (clusters allocated to each
            pattern), ``n_clusters``, ``n_periods``, ``n_sequences``, ``treated_cells``,
            ``measured_cells``, ``variance``, ``std_error``, ``power``, ``power_one_tail``,
            and ``assurance``
            when the search averaged power over draws of the variance components.
        """
        import pandas as pd

        n = self.allocations.shape[0]
        cols = {f"pattern_{j}": self.allocations[:, j] for j in range(self.patterns.shape[0])}
        cost = self.costs()
        out: pd.DataFrame = pd.DataFrame(
            {
                "rank": np.arange(n),
                **cols,
                "n_clusters": cost["n_clusters"].astype(np.int64),
                "n_periods": cost["n_periods"].astype(np.int64),
                "n_sequences": cost["n_sequences"].astype(np.int64),
                "treated_cells": cost["treated_cells"],
                "measured_cells": cost["measured_cells"].astype(np.int64),
                "variance": self.variance,
                "std_error": np.sqrt(self.variance),
                "power": self.power,
                "power_one_tail": self.power_one_tail,
            }
        )
        if self.assurance is not None:
            out["assurance"] = self.assurance
        return out

    def table(self, top: int = 10) -> pd.DataFrame:
        """Tabulate the ``top`` candidates.

        Parameters
        ----------
        top : int, default 10
            Number of candidates (best first).

        Returns
        -------
        pandas.DataFrame
            The first ``top`` rows of :meth:`tidy`.
        """
        out: pd.DataFrame = self.tidy().head(top).reset_index(drop=True)
        return out

    def cheapest(self, target: float = 0.8, *, cost: str = "n_clusters", by: str = "power") -> int:
        """Return the rank of the least costly candidate that reaches ``target``.

        Parameters
        ----------
        target : float, default 0.8
            Power (or assurance) to reach.
        cost : {"n_clusters", "n_periods", "measured_cells", "treated_cells", "n_sequences"}
            The cost to minimise (see :meth:`costs`); ties go to the higher ``by``.
        by : {"power", "assurance"}, default "power"
            What must reach ``target``; ``"assurance"`` considers only the candidates whose
            assurance was computed (the ``n_assurance`` best).

        Returns
        -------
        int
            The rank of the candidate (:meth:`design` builds it).

        Raises
        ------
        SolveError
            If no candidate reaches ``target`` (the message gives the best reached).
        """
        cost = check_option("cost", cost, _COSTS)
        by = check_option("by", by, ("power", "assurance"))
        check_probability("target", target)
        if by == "power":
            value = self.power
        elif self.assurance is None:
            raise OptionError(
                "by='assurance' needs a search with draws (variance= an estimate with draws)."
            )
        else:
            value = np.nan_to_num(self.assurance, nan=-1.0)
        ok = np.flatnonzero(value >= target)
        if ok.size == 0:
            raise SolveError(
                f"no candidate reaches {by} {target:g} (the best reaches "
                f"{float(np.max(value)):.4g}); search more clusters or periods."
            )
        c = self.costs()[cost][ok]
        return int(ok[np.lexsort((-value[ok], c))[0]])

    def best_per_size(self) -> pd.DataFrame:
        """Tabulate the best candidate for each size (clusters and periods) searched.

        Returns
        -------
        pandas.DataFrame
            The rows of :meth:`tidy` of the best (first-ranked) candidate of every
            (``n_clusters``, ``n_periods``), smallest first.
        """
        t = self.tidy()
        keys = ["n_clusters", "n_periods"]
        out: pd.DataFrame = (
            t.groupby(keys, sort=False).head(1).sort_values(keys).reset_index(drop=True)
        )
        return out

    def summary(self) -> Summary:
        """Return the summary: the search space and the ten best candidates.

        Returns
        -------
        steppedwedge.results.Summary
            Renders with ``as_text()``, ``as_html()``, ``as_markdown()``, ``as_latex()``.
        """
        n_pat, n_t = self.patterns.shape
        sizes = np.unique(self.allocations.sum(axis=1))
        header = [
            ("family", self.family),
            ("patterns", f"{n_pat} candidate sequences over up to {n_t} periods"),
            (
                "clusters",
                str(int(sizes[0])) if sizes.size == 1 else f"{sizes[0]} to {sizes[-1]}",
            ),
            (
                "candidates evaluated",
                f"{self.n_evaluated} " + ("(all)" if self.exhaustive else "(random sample)"),
            ),
            ("best allocation", ", ".join(str(int(a)) for a in self.allocations[0])),
            ("best power", _number(float(self.power[0]))),
            ("best std. error", _number(float(np.sqrt(self.variance[0])))),
        ]
        if self.assurance is not None:
            header.append(("best assurance", _number(float(np.nanmax(self.assurance)))))
        if sizes.size > 1 and np.any(self.power >= 0.8):
            r = self.cheapest(0.8)
            alloc = ", ".join(str(int(a)) for a in self.allocations[r])
            header.append(
                (
                    "fewest clusters for power 0.8",
                    f"{int(self.allocations[r].sum())} (rank {r}: {alloc})",
                )
            )
        tables = [("Best candidates", self.table(10))]
        lengths = np.unique(self.costs()["n_periods"])
        if sizes.size > 1 or lengths.size > 1:
            tables.append(("Best candidate per size", self.best_per_size()))
        return Summary(
            title="Design search",
            header=tuple(header),
            tables=tuple(tables),
            notes=(
                "Ranked by the GLS variance of the treatment estimator (by power for "
                "link-scale GLMMs, whose power also depends on the null variance) "
                "(Watson, Girling & Hemming 2023).",
            ),
        )

    def plot(
        self,
        ax: Axes | None = None,
        *,
        kind: str = "frontier",
        cost: str = "treated_cells",
        top: int = 5,
        effects: Any = None,
    ) -> Axes:
        """Draw power against cost with the efficient frontier, or power curves.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Axes to draw on (a new figure when None).
        kind : {"frontier", "curves"}, default "frontier"
            ``"frontier"``: every candidate's power against its ``cost``, with the frontier
            (the most powerful candidate at each cost or less) drawn as a step line and the
            best candidate marked.  ``"curves"``: power over the effect for the ``top``
            candidates, a Wald z-test with each candidate's variance at the planned effect
            (exact for Gaussian outcomes; for link-scale families, whose variance changes
            with the effect, an approximation away from it: use :func:`power_curve` on
            :meth:`design` for the exact curve).
        cost : str, default "treated_cells"
            The cost axis of the frontier: ``"treated_cells"``, ``"measured_cells"``,
            ``"n_sequences"``, ``"n_clusters"`` or ``"n_periods"`` (see :meth:`costs`).
        top : int, default 5
            Candidates drawn by ``kind="curves"``.
        effects : array_like, optional
            Effects of the curves (default 0 to twice the planned effect).

        Returns
        -------
        matplotlib.axes.Axes
            The Axes drawn on.
        """
        from ..plotting.power import _axes

        kind = check_option("kind", kind, ("frontier", "curves"))
        cost = check_option("cost", cost, _COSTS)
        ax = _axes(ax)
        if kind == "curves":
            return self._plot_curves(ax, top, effects)
        c = self.costs()[cost]
        ax.scatter(c, self.power, s=10, alpha=0.5, label="candidates")
        order = np.lexsort((-self.power, c))
        front = np.maximum.accumulate(self.power[order])
        ax.step(c[order], front, where="post", color="C1", label="frontier")
        ax.scatter([c[0]], [self.power[0]], color="C3", zorder=3, label="best (rank 0)")
        ax.set_xlabel(cost.replace("_", " "))
        ax.set_ylabel("power")
        ax.legend()
        return ax

    def _plot_curves(self, ax: Axes, top: int, effects: Any) -> Axes:
        from ..plotting.power import plot_power_curve

        eff0 = float(self._power_kwargs.get("effect", 1.0))
        xs = np.linspace(0, 2 * abs(eff0), 41) if effects is None else np.asarray(effects)
        alpha = float(self._power_kwargs.get("alpha", 0.05))
        for r in range(min(top, self.variance.size)):
            p2, _ = pk.normal_power(xs, math.sqrt(self.variance[r]), alpha)
            alloc = ",".join(str(int(a)) for a in self.allocations[r])
            plot_power_curve(
                xs,
                p2,
                xlabel="effect",
                label=f"#{r} ({alloc})",
                ax=ax,
                target=0.8 if r == 0 else None,
            )
        return ax

    def __repr__(self) -> str:
        return (
            f"DesignSearchResult(n_evaluated={self.n_evaluated}, best_power="
            f"{self.power[0]:.4f}, best_allocation={self.allocations[0].tolist()})"
        )


def _compositions(total: int, parts: int) -> np.ndarray:
    """All ways to write ``total`` as an ordered sum of ``parts`` non-negative integers."""
    out = []

    def rec(prefix: list[int], left: int, k: int) -> None:
        if k == 1:
            out.append([*prefix, left])
            return
        for v in range(left + 1):
            rec([*prefix, v], left - v, k - 1)

    rec([], total, parts)
    return np.array(out, dtype=np.int64)


def _random_compositions(total: int, parts: int, n: int, gen: np.random.Generator) -> np.ndarray:
    """``n`` compositions drawn uniformly (stars and bars, vectorised).

    The ``parts - 1`` bar positions are a uniform random subset of the ``total + parts - 1``
    slots: the first ``parts - 1`` of a random permutation of every slot (row by row).
    """
    slots = total + parts - 1
    bars = np.sort(np.argsort(gen.random((n, slots)), axis=1)[:, : parts - 1], axis=1)
    edges = np.concatenate(
        [np.full((n, 1), -1), bars, np.full((n, 1), slots)], axis=1, dtype=np.int64
    )
    out: np.ndarray = np.diff(edges, axis=1) - 1
    return out


def _counts(name: str, value: Any) -> list[int]:
    """Return the sizes to search: an int or a sequence of ints, each >= 2, sorted."""
    values = [value] if np.ndim(value) == 0 else list(np.asarray(value).ravel())
    if not values:
        raise OptionError(f"`{name}` must be an integer >= 2 or a non-empty sequence of them.")
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not float(v).is_integer():
            raise OptionError(f"`{name}` must be integers >= 2; got {v!r}.")
        out.append(check_positive_int(name, int(v), minimum=2))
    return sorted(set(out))


def _pattern_blocks(
    lengths: list[int], include_parallel: bool, k_tr: int
) -> tuple[np.ndarray, np.ndarray]:
    """Switch patterns of every trial length, NaN after a shorter trial's last period."""
    t_max = lengths[-1]
    blocks = [_switch_patterns(t, include_parallel, k_tr) for t in lengths]
    padded = [np.pad(b, ((0, 0), (0, t_max - b.shape[1])), constant_values=np.nan) for b in blocks]
    block_of = np.repeat(np.arange(len(lengths)), [b.shape[0] for b in blocks])
    return np.vstack(padded), block_of


def _block_columns(spec: Any, n_t: int, n_params: int) -> np.ndarray:
    """Columns of the fixed effects that a trial of the first ``n_t`` periods uses."""
    if spec.time != "categorical":
        return np.arange(n_params)
    keep = spec.observed.any(axis=0)
    col = np.cumsum(keep) - 1
    periods = [int(col[j]) for j in range(n_t) if keep[j]]
    return np.array([*periods, n_params - 1])


def _switch_patterns(n_t: int, include_parallel: bool, k_tr: int) -> np.ndarray:
    """Rows "control up to period p, treated from p + 1" (``k_tr`` unobserved after)."""
    starts = list(range(1, n_t)) + ([0, n_t] if include_parallel else [])
    patterns = np.array([[1.0 if j >= p else 0.0 for j in range(n_t)] for p in starts])
    for row, p in zip(patterns, starts, strict=True):
        if 0 < p < n_t:
            row[p : min(p + k_tr, n_t)] = np.nan
    return patterns


def _candidates(
    n_i: int, n_pat: int, n_t: int, max_c: int, max_s: int, min_g: int, gen: np.random.Generator
) -> tuple[np.ndarray, bool]:
    """Allocations of ``n_i`` clusters to ``n_pat`` patterns meeting the constraints."""
    n_all = math.comb(n_i + n_pat - 1, n_pat - 1)
    exhaustive = n_all <= max_c
    cand = _compositions(n_i, n_pat) if exhaustive else _random_compositions(n_i, n_pat, max_c, gen)
    balanced = []
    for s in range(2, min(n_pat, max_s) + 1):
        idx = np.unique(np.round(np.linspace(0, min(n_t - 2, n_pat - 1), s)).astype(int))
        if idx.size != s:
            continue
        g = np.zeros(n_pat, dtype=np.int64)
        g[idx] = n_i // s
        g[idx[: n_i % s]] += 1
        balanced.append(g)
    if balanced:
        cand = np.unique(np.vstack([cand, np.array(balanced)]), axis=0)
    used = cand > 0
    ok = (used.sum(axis=1) >= 2) & (used.sum(axis=1) <= max_s)
    ok &= np.all(~used | (cand >= min_g), axis=1)
    return cand[ok], exhaustive


def _spec_for(
    patterns: np.ndarray, effect: float, vc: Any, cluster_size: Any, kw: dict[str, Any]
) -> Any:
    """Return the validated power specification of the patterns (one cluster each)."""
    probe = Design.from_matrix(patterns, check_identifiable=False)
    unknown = set(kw) - set(_SEARCH_OPTIONS)
    if unknown:
        raise OptionError(
            f"unknown option(s) {sorted(unknown)} for search_designs; it passes "
            f"{', '.join(_SEARCH_OPTIONS)} to sw.power (candidates are ranked with a normal "
            "reference: `dof` and ETI `weights` do not apply)."
        )
    for name, value in (("cluster_size", cluster_size), ("exposure", kw.get("exposure", 1.0))):
        if np.ndim(value) != 0:
            raise OptionError(
                f"search_designs needs one `{name}` for every cluster (a scalar, e.g. the mean "
                "population): the candidates allocate interchangeable clusters. Evaluate a "
                "chosen design with the actual clusters' values with sw.power, or over "
                "allocations with sw.expected_power."
            )
    return _power_iv(probe, effect, vc, cluster_size, **kw)


def _allocation_variances(cand: np.ndarray, info: np.ndarray) -> np.ndarray:
    """Variance of the treatment estimator of every candidate (``inf`` if singular)."""
    n_pat, p = info.shape[0], info.shape[-1]
    c = np.zeros(p)
    c[-1] = 1.0
    m = (cand.astype(float) @ info.reshape(n_pat, -1)).reshape(-1, p, p)
    with np.errstate(all="ignore"):
        try:
            v = np.linalg.solve(m, np.broadcast_to(c, (m.shape[0], p))[..., None])[:, -1, 0]
        except np.linalg.LinAlgError:
            v = np.array([_safe_var(mi, c) for mi in m])
    return np.where(np.isfinite(v) & (v > 0), v, np.inf)


def _draw_assurance(
    spec: Any,
    draws: Sequence[VarianceComponents],
    cand: np.ndarray,
    link_scale: bool,
    sub: np.ndarray,
) -> np.ndarray:
    """Mean power over the draws of each candidate (rows of ``cand``, fixed effects ``sub``)."""
    total = np.zeros(cand.shape[0])

    def variances(effect: float) -> Iterator[tuple[int, np.ndarray]]:
        jobs = [(vc, effect) for vc in draws]
        for start, info in iter_information(spec, jobs, per_cluster=True):
            info = info[:, :, sub][:, :, :, sub]
            p = sub.size
            m = np.einsum("kq,bqij->kbij", cand.astype(float), info)
            e = np.zeros((p, 1))
            e[-1, 0] = 1.0
            yield start, np.linalg.solve(m, np.broadcast_to(e, (*m.shape[:2], p, 1)))[..., -1, 0]

    alt = dict(variances(spec.effect))
    null = dict(variances(0.0)) if link_scale else alt
    for start, v1 in alt.items():
        v0 = null[start]
        p2, _ = pk.wald_power_null_alt(spec.effect, np.sqrt(v0), np.sqrt(v1), spec.alpha, None)
        total += np.asarray(p2).sum(axis=1)
    out: np.ndarray = total / len(draws)
    return out


def _ranked_candidates(
    spec: Any,
    block_of: np.ndarray,
    lengths: list[int],
    sizes: list[int],
    infos: tuple[np.ndarray, np.ndarray | None],
    limits: tuple[int, int, int],
    gen: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """Evaluate every candidate of every (trial length, number of clusters), best first.

    Returns the allocations, their variances at the alternative and the null, their trial
    lengths and whether every allocation meeting the constraints was evaluated.
    """
    info1, info0 = infos
    max_c, max_s, min_g = limits
    parts, exhaustive = [], True
    for b, t_b in enumerate(lengths):
        cols = np.flatnonzero(block_of == b)
        sub = _block_columns(spec, t_b, info1.shape[-1])
        i1 = info1[cols][:, sub][:, :, sub]
        i0 = None if info0 is None else info0[cols][:, sub][:, :, sub]
        for n_i in sizes:
            c, ex = _candidates(n_i, cols.size, t_b, max_c, max_s, min_g, gen)
            exhaustive &= ex
            full = np.zeros((c.shape[0], block_of.size), dtype=np.int64)
            full[:, cols] = c
            v1_b = _allocation_variances(c, i1)
            v0_b = v1_b if i0 is None else _allocation_variances(c, i0)
            parts.append((full, v1_b, v0_b, np.full(c.shape[0], t_b)))
    cand = np.vstack([q[0] for q in parts])
    if cand.shape[0] == 0:
        raise DesignError("no candidate design satisfies the constraints; relax them.")
    v1, v0, t_of = (np.concatenate([q[k] for q in parts]) for k in (1, 2, 3))
    keep = np.flatnonzero(np.isfinite(v1))
    if info0 is None:
        order = keep[np.argsort(v1[keep], kind="stable")]
    else:  # power depends on both variances: rank by it (ties by the variance)
        p2, _ = pk.wald_power_null_alt(
            spec.effect, np.sqrt(v0[keep]), np.sqrt(v1[keep]), spec.alpha, None
        )
        order = keep[np.lexsort((v1[keep], -np.asarray(p2)))]
    return cand[order], v1[order], v0[order], t_of[order], bool(exhaustive)


def search_designs(
    *,
    n_clusters: int | Sequence[int],
    n_periods: int | Sequence[int],
    effect: float,
    variance: Any,
    cluster_size: float,
    include_parallel: bool = False,
    transition_periods: int = 0,
    patterns: Any = None,
    min_per_sequence: int = 1,
    max_sequences: int | None = None,
    max_candidates: int = 10_000,
    n_assurance: int = 10,
    rng: RNGLike = None,
    **kwargs: Any,
) -> DesignSearchResult:
    r"""Find the most efficient allocation of clusters to switch times.

    Every candidate allocates ``n_clusters`` clusters to the patterns "control up to period
    ``p``, treated from ``p + 1``" (``p = 1 .. T-1``; with ``include_parallel`` also
    all-control and all-treated), subject to the constraints, and is scored by the GLS
    variance of the treatment estimator (any covariance structure :func:`power` supports,
    counts and binary outcomes on the link scale included).  The used patterns are the
    rollout waves and the gaps between their switch periods the steps, so the search
    covers how many waves, how long each step and, with a range of ``n_clusters``, how
    many clusters.

    Parameters
    ----------
    n_clusters : int or sequence of int
        Clusters ``I`` (each >= 2); a sequence (e.g. ``range(10, 31)``) searches every
        number of clusters in it (``max_candidates`` applies to each).
    n_periods : int or sequence of int
        Periods ``T``; a sequence searches every trial length in it (the switch patterns
        of each length, the candidates of a shorter trial unobserved after its last
        period; a per-period ``baseline`` then has one value per period of the longest).
    effect : float
        Effect for the power column, on the link scale of ``family``.
    variance : VarianceComponents or VarianceEstimate
        Variance components, or an estimate of them (with ``.variance`` and ``.draws``, e.g.
        :func:`steppedwedge.estimate_variance`): the candidates are ranked at its point
        estimate, and the ``n_assurance`` best get their assurance (power over ``.draws``).
    cluster_size : float
        Individuals per cluster-period (the same everywhere; for counts, the
        ``exposure`` keyword is the person-time of each unit, also one value).
    include_parallel : bool, default False
        Also allow never-treated and always-treated sequences (hybrid designs,
        Girling & Hemming 2016).
    transition_periods : int, default 0
        Generated patterns leave this many cells from the switch unobserved (NaN), as
        ``Design.stepped_wedge(..., transition_periods=k)``.
    patterns : array_like, shape (K, T), optional
        Your own candidate sequences (0/1, fractions, NaN for unobserved) instead of the
        generated switch-time patterns; ``n_periods`` must equal ``T`` (candidates whose
        information is singular, e.g. a period never observed, are dropped).
    min_per_sequence : int, default 1
        Minimum clusters in a used sequence.
    max_sequences : int, optional
        Maximum number of sequences used.
    max_candidates : int, default 10000
        If the constrained space (for one number of clusters) is larger, this many
        allocations are sampled uniformly (``rng``), plus the equally spaced balanced ones.
    n_assurance : int, default 10
        With draws in ``variance``: how many of the best candidates get an assurance.
    rng : int, Generator or None
        Seed for sampling allocations when the space exceeds ``max_candidates``.
    **kwargs
        Passed to :func:`power` (``family``, ``baseline``, ``exposure``, ``dispersion``,
        ``sampling``, ``alpha``, ...).

    Returns
    -------
    DesignSearchResult
        The candidates best first: by the variance of the treatment estimator, or by power
        for link-scale GLMMs with ``glmm_variance="null-alternative"`` (see
        :class:`DesignSearchResult`).

    Raises
    ------
    OptionError
        A per-cluster ``cluster_size`` or ``exposure`` (the candidates need
        interchangeable clusters), or invalid ``n_clusters``.

    Notes
    -----
    A candidate's information is a weighted sum of per-pattern informations, so all
    candidates are scored in one batched solve (:doc:`/explanation/power_methods`).
    Watson, Girling & Hemming (2023) review such c-optimal designs.

    References
    ----------
    .. [1] Watson SI, Girling A, Hemming K (2023). Optimal study designs for cluster
       randomised trials: an overview of methods and results. Stat Methods Med Res
       32:2135-2157.
    .. [2] Girling AJ, Hemming K (2016). Statistical efficiency and optimal design for
       stepped cluster studies under linear mixed effects models. Stat Med 35:2149-2166.

    Examples
    --------
    >>> from steppedwedge.variance import VarianceComponents
    >>> from steppedwedge.planning import search_designs
    >>> res = search_designs(n_clusters=8, n_periods=5, effect=0.3,
    ...                      variance=VarianceComponents.from_correlations(0.05),
    ...                      cluster_size=20)
    >>> res.exhaustive, res.allocations[0].tolist()
    (True, [3, 1, 1, 3])

    Counts (a Poisson GLMM with populations as exposure), 10 to 14 councils:

    >>> import numpy as np
    >>> res = search_designs(n_clusters=range(10, 15), n_periods=8, effect=np.log(0.85),
    ...                      variance=VarianceComponents(tau2=0.1, gamma2=0.02, decay=0.8),
    ...                      cluster_size=1, family="poisson", baseline=6.6e-4,
    ...                      exposure=55_000, max_sequences=4, max_candidates=2000, rng=1)
    >>> int(res.allocations[0].sum()), res.best_per_size()["n_clusters"].tolist()
    (14, [10, 11, 12, 13, 14])
    """
    sizes = _counts("n_clusters", n_clusters)
    lengths = _counts("n_periods", n_periods)
    min_g = check_positive_int("min_per_sequence", min_per_sequence)
    max_c = check_positive_int("max_candidates", max_candidates)
    n_top = check_positive_int("n_assurance", n_assurance)
    gen = normalise_rng(rng)
    k_tr = check_positive_int("transition_periods", transition_periods, minimum=0)
    patterns, block_of = _patterns_iv(patterns, lengths, include_parallel, k_tr)
    max_s = patterns.shape[0] if max_sequences is None else max_sequences
    max_s = check_positive_int("max_sequences", max_s)
    point, draws = _point_and_draws(variance)
    spec = _spec_for(patterns, effect, point, cluster_size, kwargs)
    info1, info0, link_scale = _pattern_information(spec, draws)
    infos = (info1, info0 if link_scale else None)
    cand, v1, v0, t_of, exhaustive = _ranked_candidates(
        spec, block_of, lengths, sizes, infos, (max_c, max_s, min_g), gen
    )
    p2, p1 = pk.wald_power_null_alt(spec.effect, np.sqrt(v0), np.sqrt(v1), spec.alpha, None)
    assured = _top_assurance(spec, draws, cand, t_of, n_top, info1.shape[-1], link_scale)
    return DesignSearchResult(
        patterns=patterns,
        allocations=cand,
        variance=v1,
        power=np.asarray(p2),
        power_one_tail=np.asarray(p1),
        n_evaluated=int(cand.shape[0]),
        exhaustive=exhaustive,
        n_periods=t_of if len(lengths) > 1 else None,
        assurance=assured,
        family=spec.family,
        _power_kwargs=dict(effect=effect, alpha=spec.alpha),
    )


def _patterns_iv(
    patterns: Any, lengths: list[int], include_parallel: bool, k_tr: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return the candidate sequences and the period-length block of each."""
    if patterns is None:
        built: tuple[np.ndarray, np.ndarray] = _pattern_blocks(lengths, include_parallel, k_tr)
        return built
    n_t = lengths[-1]
    if len(lengths) > 1:
        raise OptionError("with your own `patterns`, `n_periods` must be one number.")
    patterns = np.asarray(patterns, dtype=float)
    block_of = np.zeros(patterns.shape[0], dtype=np.int64)
    if patterns.ndim != 2 or patterns.shape[1] != n_t or patterns.shape[0] < 2:
        raise OptionError(
            f"`patterns` must be a (K, {n_t}) array with K >= 2 candidate sequences; got "
            f"shape {patterns.shape}."
        )
    return patterns, block_of


def _point_and_draws(variance: Any) -> tuple[Any, Any]:
    """Return the point estimate the candidates are ranked at, and the draws (if any)."""
    point, draws = resolve_draws(variance)
    if point is None:
        raise OptionError(
            "search_designs ranks candidates at a point estimate: pass VarianceComponents or "
            "an estimate with `.variance` and `.draws` (not a bare sequence of draws)."
        )
    return point, draws


def _pattern_information(spec: Any, draws: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    """Per-pattern information at the alternative and the null (via the power code path)."""
    if spec.variance.eta2 > 0 or any(vc.eta2 > 0 for vc in draws):
        raise OptionError("search_designs does not support a random treatment effect (eta2 > 0).")
    link_scale = bool(is_link_scale(spec) and spec.glmm_variance == "null-alternative")
    z1, cov1, _ = _covariance(spec, spec.effect)
    info1 = pk.per_cluster_information(z1, cov1)
    info0 = info1
    if link_scale:
        z0, cov0, _ = _covariance(spec, 0.0)
        info0 = pk.per_cluster_information(z0, cov0)
    return info1, info0, link_scale


def _top_assurance(
    spec: Any,
    draws: Any,
    cand: np.ndarray,
    t_of: np.ndarray,
    n_top: int,
    n_params: int,
    link_scale: bool,
) -> np.ndarray | None:
    """Assurance of the ``n_top`` best candidates over the variance draws (None without)."""
    if not draws:
        return None
    assured = np.full(cand.shape[0], np.nan)
    k = min(n_top, cand.shape[0])
    for t_b in np.unique(t_of[:k]):
        top = np.flatnonzero(t_of[:k] == t_b)
        sub = _block_columns(spec, int(t_b), n_params)
        assured[top] = _draw_assurance(spec, draws, cand[top], link_scale, sub)
    return assured


def _safe_var(info: np.ndarray, c: np.ndarray) -> float:
    try:
        return pk.variance_from_information(info, c)
    except (pk.NotEstimableError, np.linalg.LinAlgError):
        return math.inf


def _check_candidate(result: DesignSearchResult, rank: int, **kwargs: Any) -> float:
    """Variance of a ranked candidate recomputed with :func:`power` (used by tests)."""
    return _power(result.design(rank), **kwargs).variance
