"""Solve the power equation for one unknown by bracketing root finding."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize

from .._validation import check_option, check_probability
from ..design import Design
from ..exceptions import DesignError, OptionError, SolveError
from .analytic import _as_design
from .analytic import power as _power
from .result import PowerResult

__all__ = ["solve_power"]

SOLVE_FOR = ("clusters_per_sequence", "cluster_size", "effect", "n_sequences")


def _rebuild_stepped_wedge(design: Design) -> Callable[[int], Design] | None:
    """Return ``S -> Design.stepped_wedge(S, g, ...)`` if ``design`` is such a design.

    The layout (baseline ``b``, step length ``t``, transition periods ``k`` and rule, extra
    periods ``e``) is found by trying every layout with ``T = b + S t + e`` and comparing the
    rebuilt matrix with the design's (rows in any order).
    """
    sizes = np.asarray(design.sequence_sizes)
    n_seq, n_periods = design.sequence_matrix.shape
    if n_seq < 2 or not np.all(sizes == sizes[0]):
        return None
    g = int(sizes[0])
    target = np.nan_to_num(np.sort(np.asarray(design.matrix), axis=0), nan=-1.0)
    frac = np.nan_to_num(design.matrix, nan=0.0)
    rules: tuple[Any, ...] = (
        ("exclude", "partial") if np.any((frac > 0) & (frac < 1)) else ("exclude",)
    )
    for b in range(0, n_periods):
        for t in range(1, (n_periods - b) // n_seq + 1):
            e = n_periods - b - n_seq * t
            for k in range(0, n_periods - b + 1):
                for rule in rules if k else ("exclude",):

                    def build(
                        s: int, b: int = b, t: int = t, k: int = k, e: int = e, rule: Any = rule
                    ) -> Design:
                        return Design.stepped_wedge(
                            s,
                            g,
                            baseline_periods=b,
                            periods_per_step=t,
                            transition_periods=k,
                            extra_treated_periods=e,
                            transition=rule,
                        )

                    try:
                        again = build(n_seq)
                    except DesignError:
                        continue
                    if again.matrix.shape == design.matrix.shape and np.array_equal(
                        np.nan_to_num(np.sort(again.matrix, axis=0), nan=-1.0), target
                    ):
                        return build
    return None


def _smallest_integer(
    f: Callable[[int], PowerResult],
    target: float,
    lo: int,
    hi: int,
    value: Callable[[PowerResult], float],
    what: str,
    hint: str,
) -> tuple[int, PowerResult]:
    """Smallest integer ``n`` in ``[lo, hi]`` with ``value(f(n)) >= target`` (monotone f)."""
    res_lo = f(lo)
    if value(res_lo) >= target:
        return lo, res_lo
    n = lo
    prev = lo
    res = res_lo
    while True:
        n = min(max(2 * n, n + 1), hi)
        res = f(n)
        if value(res) >= target:
            break
        if n >= hi:
            raise SolveError(
                f"The target power {target:.4g} is not reached for any {what} up to {hi} "
                f"(power there is {value(res):.4g}). {hint}"
            )
        prev = n
    lo_n, hi_n, res_hi = prev, n, res
    while hi_n - lo_n > 1:
        mid = (lo_n + hi_n) // 2
        r = f(mid)
        if value(r) >= target:
            hi_n, res_hi = mid, r
        else:
            lo_n = mid
    return hi_n, res_hi


def solve_power(
    design: Design | Any,
    *,
    variance: Any,
    effect: float | None = None,
    cluster_size: Any = None,
    power: float = 0.8,
    solve_for: str = "clusters_per_sequence",
    one_tail: bool = False,
    max_value: float | None = None,
    **kwargs: Any,
) -> PowerResult:
    r"""Solve the power equation for clusters per sequence, cluster size, effect or steps.

    Parameters
    ----------
    design : Design or array_like
        The design (for ``solve_for="clusters_per_sequence"`` its sequences are the pattern
        that is replicated; for ``"n_sequences"`` it must be a design built by
        :meth:`Design.stepped_wedge`).
    variance : VarianceComponents or VarianceEstimate
        As in :func:`power` (an estimate contributes its point estimate ``.variance``).
    effect : float, optional
        Effect under the alternative; required unless ``solve_for="effect"`` (then its sign,
        if given, sets the direction searched; default positive).
    cluster_size : float or array_like, optional
        As in :func:`power`; required unless ``solve_for="cluster_size"``.
    power : float, default 0.8
        Target power.
    solve_for : {"clusters_per_sequence", "cluster_size", "effect", "n_sequences"}
        The unknown.  Integer unknowns return the smallest integer that reaches the target.
    one_tail : bool, default False
        Target ``power_one_tail`` (HH 2007 / clusterPower convention) instead of ``power``.
    max_value : float, optional
        Upper end of the search (default 10,000 clusters per sequence, 10^6 individuals
        per cluster-period, 50 sequences).
    **kwargs
        Passed to :func:`power` (``family``, ``baseline``, ``alpha``, ``dof``, ...).

    Returns
    -------
    PowerResult
        The power at the solution, with ``solved_for`` and ``solution`` set.

    Raises
    ------
    SolveError
        If no value in the searched range reaches the target (the message says what power
        is reachable and what to change); never returns NaN.
    ValueError
        For invalid inputs, e.g. ``effect=0`` when solving for a sample size.

    Notes
    -----
    ``clusters_per_sequence``: when ``cluster_size`` is a scalar and all sequences have the
    same number of clusters, the design is rebuilt with ``n`` clusters in every sequence of
    ``design.sequence_matrix``.  Otherwise (unequal sequences, or cluster sizes per cluster
    or per cell) every row of the design, with its cluster sizes, is replicated ``k`` times;
    ``solved_for`` is then ``"design_replicates"`` and ``solution = k``.

    ``cluster_size`` (scalar ``m`` per cluster-period) and ``n_sequences`` are searched over
    integers by doubling then bisection; ``effect`` by Brent's method on a bracket found by
    doubling.  Power is monotone in each unknown for the supported models; if the target
    exceeds the limit (e.g. power plateaus as ``m`` grows when the ICC is positive) a
    :class:`~steppedwedge.SolveError` says so.

    Examples
    --------
    >>> from steppedwedge.design import Design
    >>> from steppedwedge.variance import VarianceComponents
    >>> from steppedwedge.planning import solve_power
    >>> res = solve_power(Design.stepped_wedge(3, 3), effect=0.2,
    ...                   variance=VarianceComponents(sigma2=1.0), solve_for="cluster_size")
    >>> res.solution, round(res.power, 4)
    (50.0, 0.8074)
    """
    solve_for = check_option("solve_for", solve_for, SOLVE_FOR)
    target = check_probability("power", power)
    d = _as_design(design)
    alpha = float(kwargs.get("alpha", 0.05))
    if target <= alpha / (1 if not one_tail else 2) and solve_for == "effect":
        raise SolveError(
            f"The target power {target:.4g} is not above the test size; any effect reaches it."
        )
    if solve_for != "effect":
        if effect is None:
            raise OptionError(f"`effect` is required when solving for {solve_for!r}.")
        if float(effect) == 0.0:
            raise OptionError(
                f"`effect` must be non-zero when solving for {solve_for!r}: with no effect the "
                "power equals the test size whatever the sample size."
            )
    if solve_for != "cluster_size" and cluster_size is None:
        raise OptionError(f"`cluster_size` is required when solving for {solve_for!r}.")
    problem = _Problem(d, variance, effect, cluster_size, target, one_tail, max_value, kwargs)
    solver = {
        "cluster_size": _solve_cluster_size,
        "clusters_per_sequence": _solve_clusters_per_sequence,
        "n_sequences": _solve_n_sequences,
        "effect": _solve_effect,
    }[solve_for]
    res, name, solution = solver(problem)
    return dataclasses.replace(res, solved_for=name, solution=float(solution))


@dataclass(frozen=True)
class _Problem:
    """The power equation of :func:`solve_power`: everything but the unknown."""

    design: Design
    variance: Any
    effect: float | None
    cluster_size: Any
    target: float
    one_tail: bool
    max_value: float | None
    options: dict[str, Any]

    def value(self, res: PowerResult) -> float:
        """Return the power the target refers to (one- or two-tailed)."""
        return res.power_one_tail if self.one_tail else res.power

    def power(self, design: Design, cluster_size: Any, effect: float) -> PowerResult:
        """Return :func:`power` of ``design`` with the problem's other inputs."""
        return _power(
            design,
            effect=effect,
            variance=self.variance,
            cluster_size=cluster_size,
            **self.options,
        )

    def smallest(
        self, f: Callable[[int], PowerResult], lo: int, hi: int, what: str, hint: str
    ) -> tuple[int, PowerResult]:
        """Return the smallest integer in ``[lo, hi]`` whose power reaches the target."""
        return _smallest_integer(f, self.target, lo, hi, self.value, what, hint)

    def rebuild(self, matrix: np.ndarray) -> Design:
        """Return a design with ``matrix`` and the periods and checks of the problem's."""
        d = self.design
        return Design.from_matrix(
            matrix,
            periods=d.periods,
            period_lengths=d.period_lengths,
            check_identifiable=d.check_identifiable,
            allow_reversal=d.allow_reversal,
        )


_Solution = tuple[PowerResult, str, float]


def _solve_cluster_size(p: _Problem) -> _Solution:
    if p.cluster_size is not None:
        raise OptionError("leave `cluster_size` unset when solving for it.")
    effect = float(p.effect)  # type: ignore[arg-type]
    n, res = p.smallest(
        lambda m: p.power(p.design, m, effect),
        1,
        int(p.max_value or 1_000_000),
        "cluster size",
        "With a positive ICC power plateaus as the cluster size grows: add clusters, "
        "sequences or periods instead.",
    )
    return res, "cluster_size", n


def _solve_clusters_per_sequence(p: _Problem) -> _Solution:
    d, effect = p.design, float(p.effect)  # type: ignore[arg-type]
    size = np.asarray(p.cluster_size, dtype=float)
    sizes = np.asarray(d.sequence_sizes)
    hi = int(p.max_value or 10_000)
    hint = "Check the effect and variance components, or raise `max_value`."
    if size.ndim == 0 and np.all(sizes == sizes[0]):
        seq = np.asarray(d.sequence_matrix)
        n, res = p.smallest(
            lambda n: p.power(p.rebuild(np.repeat(seq, n, axis=0)), float(size), effect),
            1,
            hi,
            "number of clusters per sequence",
            hint,
        )
        return res, "clusters_per_sequence", n
    mat = np.asarray(d.matrix)
    if size.ndim == 2:
        size_arr = size
    elif size.ndim == 1:
        size_arr = np.repeat(size[:, None], d.n_periods, axis=1)
    else:
        size_arr = np.full(mat.shape, float(size))
    k, res = p.smallest(
        lambda k: p.power(
            p.rebuild(np.repeat(mat, k, axis=0)), np.repeat(size_arr, k, axis=0), effect
        ),
        1,
        hi,
        "number of design replicates",
        hint,
    )
    return res, "design_replicates", k


def _solve_n_sequences(p: _Problem) -> _Solution:
    build_sw = _rebuild_stepped_wedge(p.design)
    if build_sw is None:
        raise DesignError(
            "solve_for='n_sequences' needs a standard stepped-wedge design built by "
            "Design.stepped_wedge (equal sequences, equally spaced steps)."
        )
    if np.asarray(p.cluster_size).ndim != 0:
        raise OptionError("solve_for='n_sequences' needs a scalar `cluster_size`.")
    hi = int(p.max_value or 50)
    lo = 2
    while lo < hi:
        try:
            build_sw(lo)
            break
        except DesignError:
            lo += 1
    effect = float(p.effect)  # type: ignore[arg-type]
    n, res = p.smallest(
        lambda s: p.power(build_sw(s), p.cluster_size, effect),
        lo,
        hi,
        "number of sequences (steps)",
        "Add clusters per sequence or raise `max_value`.",
    )
    return res, "n_sequences", n


def _solve_effect(p: _Problem) -> _Solution:
    """Minimum detectable effect: Brent's method on a bracket found by doubling."""
    sign = -1.0 if (p.effect is not None and float(p.effect) < 0) else 1.0

    def g(x: float) -> float:
        return p.value(p.power(p.design, p.cluster_size, sign * x)) - p.target

    probe = p.power(p.design, p.cluster_size, sign * 1e-8)
    lo_x, hi_x = _effect_bracket(p, g, sign, max(4.0 * probe.std_error, 1e-12))
    root = optimize.brentq(g, max(lo_x, 1e-12), hi_x, xtol=1e-14, rtol=1e-12)
    res = p.power(p.design, p.cluster_size, sign * root)
    return res, "effect", sign * root


def _effect_bracket(
    p: _Problem, g: Callable[[float], float], sign: float, hi_x: float
) -> tuple[float, float]:
    """Double ``hi_x`` until ``g`` changes sign (shrinking where an effect is inadmissible)."""
    limit = float(p.max_value) if p.max_value is not None else math.inf
    last_ok = 0.0
    while True:
        try:
            gh = g(hi_x)
        except ValueError:
            # outside the admissible range (e.g. a probability would leave (0, 1)):
            # shrink towards the last admissible value
            hi_x = (last_ok + hi_x) / 2
            if hi_x - last_ok < 1e-12 * max(1.0, hi_x):
                alpha = float(p.options.get("alpha", 0.05))
                reach = (
                    p.value(p.power(p.design, p.cluster_size, sign * last_ok))
                    if last_ok > 0
                    else alpha
                )
                raise SolveError(
                    f"The target power {p.target:.4g} is not reachable: the largest admissible "
                    f"effect ({sign * last_ok:.6g}) gives power {reach:.4g}."
                ) from None
            continue
        if gh >= 0:
            return last_ok, hi_x
        last_ok = hi_x
        if hi_x >= limit:
            raise SolveError(
                f"The target power {p.target:.4g} is not reached for effects up to {limit:.6g}."
            )
        hi_x = min(hi_x * 2, limit)
