"""The allocation space of a randomisation test, matched to the trial's data.

:func:`space_of` turns the data's treatment pattern and an
:class:`~steppedwedge.randomise.Allocation` (or a :class:`~steppedwedge.design.Design`, or
the sequences seen in the data) into a :class:`Space`: the allocation, its sequence matrix
in the data's period order, the map from data rows to allocation columns and the observed
assignment.  :func:`draw_assignments` enumerates or draws the re-randomisations;
:func:`cell_arrays`, :func:`cell_statistic` and :func:`batched` evaluate the vectorised
cell statistics over them.  Shared by :func:`steppedwedge.permutation_test` and the
design-based estimators.

References
----------
Thompson JA et al. (2018) Stat Med 37:2487-2500 (the cluster-period statistic).
Ji X et al. (2017) Ann Appl Stat 11:1-20 (randomisation tests for stepped-wedge trials).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._core.permutation import treatment_batch, twfe_statistics, vertical_statistics
from ..data import TrialData
from ..design import Design
from ..exceptions import DataError, DesignError, OptionError
from ..randomise import Allocation, randomise

__all__ = [
    "CHUNK",
    "Space",
    "batched",
    "cell_arrays",
    "cell_statistic",
    "draw_assignments",
    "space_of",
]

CHUNK = 2048  # allocations per batch (bounds the (B, I, T) treatment arrays)


@dataclass(frozen=True)
class Space:
    """An allocation space matched to the data's clusters and periods."""

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


def _allocation_for(td: TrialData, treat: np.ndarray, allocation: Any, design: Any) -> Allocation:
    """Return the allocation given, else the simple randomisation of ``design`` (or the data's)."""
    clusters = list(td.clusters)
    if allocation is not None:
        if not isinstance(allocation, Allocation):
            raise TypeError(
                "`allocation` must be a steppedwedge Allocation (from sw.randomise); got "
                f"{type(allocation).__name__}."
            )
        if design is not None:
            raise OptionError("give `allocation` or `design`, not both (the allocation has one).")
        return allocation
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
    return randomise(design, clusters, rng=0, alpha=None)


def _cluster_columns(alloc: Allocation, clusters: list[Any]) -> np.ndarray:
    """Map data rows to allocation columns, matching clusters by label text."""
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
    return np.array([where[k] for k in dkeys], dtype=np.intp)


def _period_matrix(alloc: Allocation, td: TrialData) -> np.ndarray:
    """Return the sequence matrix in the data's period order (by label text, else in order)."""
    sm_all = np.asarray(alloc.design.sequence_matrix, dtype=np.float64)
    pk = [_label_key(p) for p in alloc.design.periods]
    tk = [_label_key(p) for p in td.periods]
    if sorted(pk) == sorted(tk):
        pos = {k: n for n, k in enumerate(pk)}
        return sm_all[:, [pos[k] for k in tk]]
    if len(pk) == len(tk):
        return sm_all
    raise DataError(
        f"the allocation's design has {len(pk)} periods but the data have {len(tk)}; "
        "the data must cover the design's periods."
    )


def _observed_assignment(
    alloc: Allocation, sm: np.ndarray, columns: np.ndarray, td: TrialData, treat: np.ndarray
) -> np.ndarray:
    """Each cluster's sequence (allocation order), from its observed treatment pattern."""
    mask = ~np.isnan(treat)
    obs = np.empty(len(alloc.clusters), dtype=np.int64)
    for r, lab in enumerate(td.clusters):
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
        akeys = [_label_key(c) for c in alloc.clusters]
        raise DataError(
            "the observed treatment pattern is not an admissible allocation of `allocation` "
            f"(observed sequences: {dict(zip(akeys, (obs + 1).tolist(), strict=True))}, as "
            "waves); a randomisation test must re-draw from the space the trial was actually "
            "randomised from."
        )
    return obs


def space_of(td: TrialData, treat: np.ndarray, allocation: Any, design: Any) -> Space:
    """Match the allocation space (given, from ``design`` or the data's) to the data.

    Parameters
    ----------
    td : TrialData
    treat : numpy.ndarray
        ``(I, T)`` observed treatment, NaN in unobserved cells.
    allocation : Allocation or None
    design : Design or None

    Returns
    -------
    Space

    Raises
    ------
    DataError
        Clusters, periods or the observed treatment pattern inconsistent with the space.
    """
    alloc = _allocation_for(td, treat, allocation, design)
    columns = _cluster_columns(alloc, list(td.clusters))
    sm = _period_matrix(alloc, td)
    obs = _observed_assignment(alloc, sm, columns, td, treat)
    return Space(alloc=alloc, seq_matrix=sm, columns=columns, observed_assignment=obs)


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


def draw_assignments(
    alloc: Allocation, n_permutations: int, gen: np.random.Generator
) -> tuple[np.ndarray, bool]:
    """All admissible allocations when at most ``n_permutations`` (exact), else a draw."""
    enumerable = alloc._admissible is not None or alloc.n_admissible <= int(
        alloc.options["max_enumerate"]
    )
    if enumerable and alloc.n_admissible <= n_permutations:
        return np.asarray(alloc.admissible), True
    return np.asarray(alloc.draw(n_permutations, gen)), False


def cell_arrays(
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


def batched(
    fun: Callable[[np.ndarray], np.ndarray], space: Space, assignments: np.ndarray
) -> np.ndarray:
    """``fun`` of the treatment matrices of ``assignments``, :data:`CHUNK` at a time."""
    out = []
    for start in range(0, assignments.shape[0], CHUNK):
        a = assignments[start : start + CHUNK]
        out.append(fun(treatment_batch(space.seq_matrix, a, space.columns)))
    return np.concatenate(out, axis=-1)


def cell_statistic(
    name: str,
    weights: str,
    mask: np.ndarray,
    wt: np.ndarray,
    cache: dict[bytes, np.ndarray] | None = None,
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Return the vectorised ``"twfe"`` or ``"cluster-period"`` statistic ``f(y, x)``."""
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
