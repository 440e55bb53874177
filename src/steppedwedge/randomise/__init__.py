"""Allocation of clusters to the sequences of a design: :func:`randomise` and :class:`Allocation`.

The rows of a :class:`~steppedwedge.design.Design` are *slots*: the design fixes the
sequences and how many clusters each receives.  Randomisation decides which cluster fills
which slot.  Clusters within a sequence are exchangeable, so the allocation space is the set
of partitions of the clusters into sequences of the given sizes, of size
``I! / prod_s g_s!``.  Stratification, restriction of strata to permitted sequences and
covariate-constrained randomisation each select an *admissible* subset of that space, and
:func:`randomise` draws one member of it uniformly.  The same admissible set is what a
randomisation (permutation) test re-draws from: see :meth:`Allocation.draw`.  Exact
counting, ranking and uniform sampling of that space are in ``_space``.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import math
import warnings
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from .._typing import RNGLike
from .._validation import check_positive_int, check_probability, normalise_rng
from .._version import __version__
from .._warnings import caller_stacklevel
from ..design import Design
from ..design._summary import TextSummary
from ..exceptions import DesignError, OptionError, SmallSampleWarning
from ..results import Summary
from ._space import AllocationSpace, randbelow

__all__ = ["Allocation", "randomise"]

#: Scores are rounded to this many decimals before they are compared with a cutoff, so
#: that allocations whose scores are mathematically equal tie exactly on every platform.
SCORE_DECIMALS = 10

#: Rows scored at a time (bounds memory for large candidate sets).
_SCORE_CHUNK = 16_384


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def _fmt(label: Any) -> str:
    return repr(label) if isinstance(label, str) else str(label)


def _fmt_list(labels: Iterable[Any], limit: int = 8) -> str:
    items = [_fmt(x) for x in labels]
    if len(items) > limit:
        return ", ".join(items[:limit]) + f", ... ({len(items)} in all)"
    return ", ".join(items)


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _waves(seqs: Iterable[int]) -> str:
    return ", ".join(str(int(s) + 1) for s in seqs)


def _jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays and labels to plain JSON types (labels via str)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return None if math.isnan(v) else v
    if value is None or isinstance(value, str):
        return value
    return str(value)


class _FrozenMap(Mapping[Any, Any]):
    """A read-only, picklable mapping (``types.MappingProxyType`` cannot be pickled)."""

    __slots__ = ("_data",)
    _data: dict[Any, Any]

    def __init__(self, data: Mapping[Any, Any]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return repr(self._data)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_FrozenMap, (self._data,))


# --------------------------------------------------------------------------------------
# validated inputs
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Inputs:
    design: Design
    labels: tuple[Hashable, ...]  # canonical order: sorted by str(label)
    covariates: pd.DataFrame  # index = labels (canonical), strata/balance columns only
    strata: str | None
    stratum_of: tuple[str, ...] | None  # str form of each cluster's stratum (canonical order)
    allowed: dict[str, tuple[int, ...]] | None
    balance: tuple[str, ...]
    cutoff: float | None
    max_score: float | None
    alpha: float | None
    max_enumerate: int
    n_candidates: int
    rng: np.random.Generator
    seed: Any


def _labels_iv(clusters: Any, cluster: Any = None) -> tuple[list[Hashable], pd.DataFrame | None]:
    if isinstance(clusters, pd.DataFrame):
        if cluster is not None:
            if not isinstance(cluster, str) or cluster not in clusters.columns:
                raise OptionError(
                    f"`cluster` names column {_fmt(cluster)}, which is not in `clusters`; "
                    f"available columns: {_fmt_list([str(c) for c in clusters.columns]) or 'none'}."
                )
            return list(clusters[cluster].tolist()), clusters
        if "cluster" in clusters.columns:
            return list(clusters["cluster"].tolist()), clusters
        if isinstance(clusters.index, pd.RangeIndex):
            raise OptionError(
                "`clusters` has no 'cluster' column and its index is the default 0, 1, 2, ... "
                "(a RangeIndex), so it does not say which column holds the cluster ids; pass "
                "`cluster=` naming it (columns: "
                f"{_fmt_list([str(c) for c in clusters.columns]) or 'none'}), or set it as the "
                "index."
            )
        return list(clusters.index.tolist()), clusters
    if cluster is not None:
        raise OptionError(
            "`cluster` names the id column of a `clusters` DataFrame; `clusters` is a plain "
            f"sequence of labels ({type(clusters).__name__}), so drop `cluster=`."
        )
    if isinstance(clusters, (str, bytes)) or not isinstance(clusters, Iterable):
        raise DesignError(
            "`clusters` must be a DataFrame (one row per cluster, labels in a 'cluster' column "
            f"or the index) or a sequence of labels; got {type(clusters).__name__}."
        )
    if isinstance(clusters, pd.Series):
        return list(clusters.tolist()), None
    return list(clusters), None


def _canonical_labels(labels: list[Hashable], design: Design) -> tuple[Hashable, ...]:
    for k, lab in enumerate(labels):
        if _is_missing(lab):
            raise DesignError(
                f"`clusters` labels must not be missing; got {lab!r} at position {k}."
            )
        try:
            hash(lab)
        except TypeError:
            raise DesignError(
                f"`clusters` labels must be hashable; got {lab!r} at position {k}."
            ) from None
    counts: dict[Hashable, int] = {}
    for lab in labels:
        counts[lab] = counts.get(lab, 0) + 1
    dups = [lab for lab, c in counts.items() if c > 1]
    if dups:
        raise DesignError(f"`clusters` labels must be unique; repeated: {_fmt_list(dups)}.")
    n, n_design = len(labels), design.n_clusters
    if n != n_design:
        given, slots = set(labels), set(design.clusters)
        detail = ""
        if given & slots:
            surplus = sorted((lab for lab in labels if lab not in slots), key=str)
            missing = sorted((lab for lab in design.clusters if lab not in given), key=str)
            parts = []
            if surplus:
                parts.append(f"not in the design: {_fmt_list(surplus)}")
            if missing:
                parts.append(f"in the design but not in `clusters`: {_fmt_list(missing)}")
            detail = " (" + "; ".join(parts) + ")"
        elif n > n_design:
            detail = f" ({n - n_design} surplus)"
        else:
            detail = f" ({n_design - n} missing)"
        raise DesignError(
            f"`clusters` has {n} labels but the design has {n_design} cluster rows{detail}; "
            "give exactly one label per row of the design."
        )
    ordered = sorted(labels, key=lambda lab: (str(lab), type(lab).__name__))
    for a, b in zip(ordered, ordered[1:], strict=False):
        if str(a) == str(b):
            raise DesignError(
                f"`clusters` labels {a!r} and {b!r} have the same text form; the allocation record "
                "identifies clusters by text, so make the labels distinct as strings."
            )
    return tuple(ordered)


def _column(
    frame: pd.DataFrame | None, name: Any, arg: str, labels: list[Hashable]
) -> dict[Hashable, Any]:
    """Return ``{label: value}`` for column ``name``, rejecting missing values."""
    if frame is None:
        raise DesignError(
            f"`{arg}` names column {_fmt(name)}, so `clusters` must be a DataFrame with that "
            "column; got a plain sequence of labels."
        )
    if not isinstance(name, str) or name not in frame.columns:
        available = [str(c) for c in frame.columns if c != "cluster"]
        raise DesignError(
            f"`{arg}` column {_fmt(name)} is not in `clusters`; available columns: "
            f"{_fmt_list(available) or 'none'}."
        )
    values = dict(zip(labels, frame[name].tolist(), strict=True))
    bad = [lab for lab, v in values.items() if _is_missing(v)]
    if bad:
        raise DesignError(
            f"`{arg}` column {_fmt(name)} has missing values for cluster(s) {_fmt_list(bad)}; "
            "every cluster needs a value."
        )
    return values


def _allowed_iv(
    allowed_sequences: Any, stratum_values: list[str], n_sequences: int
) -> dict[str, tuple[int, ...]]:
    if not isinstance(allowed_sequences, Mapping):
        raise DesignError(
            "`allowed_sequences` must map each stratum value to a list of 0-based sequence "
            "indices, e.g. {'high': [0, 1], 'low': [2, 3, 4]}; "
            f"got {type(allowed_sequences).__name__}."
        )
    out: dict[str, tuple[int, ...]] = {}
    for key, seqs in allowed_sequences.items():
        skey = str(key)
        if skey in out:
            raise DesignError(f"`allowed_sequences` has stratum {skey!r} more than once.")
        if isinstance(seqs, (str, bytes)) or not isinstance(seqs, Iterable):
            raise DesignError(
                f"`allowed_sequences[{key!r}]` must be a list of 0-based sequence indices; got "
                f"{seqs!r}."
            )
        items = list(seqs)
        ints: list[int] = []
        for s in items:
            if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)):
                raise DesignError(
                    f"`allowed_sequences[{key!r}]` must hold integer sequence indices; got {s!r}."
                )
            if not 0 <= int(s) < n_sequences:
                raise DesignError(
                    f"`allowed_sequences[{key!r}]` has sequence index {int(s)}, but sequence "
                    f"indices are 0-based and the design has {n_sequences} sequences "
                    f"(0..{n_sequences - 1}); wave w is sequence w - 1."
                )
            ints.append(int(s))
        if not ints:
            raise DesignError(f"`allowed_sequences[{key!r}]` is empty; give at least one sequence.")
        if len(set(ints)) != len(ints):
            raise DesignError(f"`allowed_sequences[{key!r}]` repeats a sequence: {ints}.")
        out[skey] = tuple(sorted(ints))
    missing = [v for v in stratum_values if v not in out]
    unknown = [k for k in out if k not in stratum_values]
    if missing:
        raise DesignError(
            f"`allowed_sequences` gives no sequences for stratum value(s) {_fmt_list(missing)}; "
            "every stratum needs an entry."
        )
    if unknown:
        raise DesignError(
            f"`allowed_sequences` has stratum value(s) {_fmt_list(unknown)} that no cluster has; "
            f"the strata are {_fmt_list(stratum_values)}."
        )
    return {k: out[k] for k in stratum_values}


def _randomise_iv(
    *,
    design: Any,
    clusters: Any,
    cluster: Any,
    strata: Any,
    balance: Any,
    cutoff: Any,
    max_score: Any,
    allowed_sequences: Any,
    rng: RNGLike,
    alpha: Any,
    max_enumerate: Any,
    n_candidates: Any,
) -> _Inputs:
    if not isinstance(design, Design):
        raise DesignError(f"`design` must be a steppedwedge Design; got {type(design).__name__}.")
    raw_labels, frame = _labels_iv(clusters, cluster)
    labels = _canonical_labels(raw_labels, design)
    columns: dict[str, dict[Hashable, Any]] = {}
    stratum_of: tuple[str, ...] | None = None
    if strata is not None:
        columns[strata], stratum_of = _strata_iv(frame, strata, raw_labels, labels)
    allowed = None
    if allowed_sequences is not None:
        if stratum_of is None:
            raise DesignError(
                "`allowed_sequences` restricts strata to sequences, so it needs `strata=` "
                "(the column holding each cluster's stratum)."
            )
        allowed = _allowed_iv(allowed_sequences, sorted(set(stratum_of)), design.n_sequences)
    bal = _balance_names(balance)
    for name in bal:
        columns[name] = _balance_column(frame, name, raw_labels)
    cutoff, max_score = _constraint_iv(bal, cutoff, max_score)
    if alpha is not None:
        alpha = check_probability("alpha", alpha)
    max_enumerate = check_positive_int("max_enumerate", max_enumerate)
    n_candidates = check_positive_int("n_candidates", n_candidates)
    if n_candidates > max_enumerate:
        raise DesignError(
            f"`n_candidates` ({n_candidates}) must not exceed `max_enumerate` ({max_enumerate}): "
            "spaces up to `max_enumerate` are enumerated in full, larger ones are sampled."
        )
    gen, seed = _seed_iv(rng)
    cov = pd.DataFrame(
        {name: [col[lab] for lab in labels] for name, col in columns.items()},
        index=pd.Index(list(labels), dtype=object, name="cluster", tupleize_cols=False),
    )
    return _Inputs(
        design=design,
        labels=labels,
        covariates=cov,
        strata=strata,
        stratum_of=stratum_of,
        allowed=allowed,
        balance=bal,
        cutoff=cutoff,
        max_score=max_score,
        alpha=alpha,
        max_enumerate=max_enumerate,
        n_candidates=n_candidates,
        rng=gen,
        seed=seed,
    )


def _strata_iv(
    frame: Any, strata: str, raw_labels: list[Hashable], labels: tuple[Hashable, ...]
) -> tuple[dict[Hashable, Any], tuple[str, ...]]:
    """Return the strata column and the printed stratum of each cluster (canonical order)."""
    col = _column(frame, strata, "strata", raw_labels)
    text = {str(v) for v in col.values()}
    if len(text) != len(set(col.values())):
        raise DesignError(f"`strata` column {strata!r} has values that differ but print the same.")
    return col, tuple(str(col[lab]) for lab in labels)


def _balance_names(balance: Any) -> tuple[str, ...]:
    if balance is None:
        return ()
    if isinstance(balance, str):
        bal: tuple[str, ...] = (balance,)
    elif isinstance(balance, Iterable):
        bal = tuple(balance)
        if not bal:
            raise DesignError(
                "`balance` must name at least one covariate column; got an empty list."
            )
    else:
        raise DesignError(f"`balance` must be a column name or a list of them; got {balance!r}.")
    if len(set(bal)) != len(bal):
        raise DesignError(f"`balance` repeats a column: {list(bal)}.")
    return bal


def _balance_column(frame: Any, name: str, raw_labels: list[Hashable]) -> dict[Hashable, float]:
    """Return a numeric, finite, non-constant covariate to balance, by cluster."""
    col = _column(frame, name, "balance", raw_labels)
    odd = [v for v in col.values() if not isinstance(v, (int, float, np.number))]
    if odd:
        raise DesignError(
            f"`balance` column {name!r} must be numeric; got values such as {odd[0]!r}."
        )
    values = {lab: float(v) for lab, v in col.items()}
    finite = np.isfinite(np.array(list(values.values())))
    if not finite.all():
        raise DesignError(f"`balance` column {name!r} must be finite.")
    if len(set(values.values())) == 1:
        raise DesignError(
            f"`balance` column {name!r} is the same for every cluster, so it cannot be "
            "balanced; drop it."
        )
    return values


def _constraint_iv(
    bal: tuple[str, ...], cutoff: Any, max_score: Any
) -> tuple[float | None, float | None]:
    """Check the balance constraint: exactly one of ``cutoff``/``max_score`` with ``balance``."""
    if bal:
        if cutoff is None and max_score is None:
            raise DesignError(
                "covariate-constrained randomisation needs `cutoff=` (keep the best fraction of "
                "allocations, e.g. 0.1) or `max_score=` (an absolute bound on the balance score)."
            )
        if cutoff is not None and max_score is not None:
            raise DesignError(
                "give only one of `cutoff=` (a fraction) and `max_score=` (an absolute bound)."
            )
    elif cutoff is not None or max_score is not None:
        raise DesignError(
            "`cutoff`/`max_score` constrain covariate balance, so they need `balance=` columns."
        )
    if cutoff is not None:
        try:
            c = float(cutoff)
        except (TypeError, ValueError):
            c = math.nan
        if not 0.0 < c <= 1.0:
            raise DesignError(
                f"`cutoff` must lie in (0, 1] (the fraction of allocations kept); got {cutoff!r}."
            )
        cutoff = c
    if max_score is not None:
        try:
            m = float(max_score)
        except (TypeError, ValueError):
            m = math.nan
        if not (math.isfinite(m) and m >= 0):
            raise DesignError(f"`max_score` must be a finite number >= 0; got {max_score!r}.")
        max_score = m
    return cutoff, max_score


def _seed_iv(rng: RNGLike) -> tuple[np.random.Generator, Any]:
    """Return the generator and the seed record: an int seed as given, else its state."""
    if rng is None:
        seed: Any = int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
        return normalise_rng(seed), seed
    gen = normalise_rng(rng)
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return gen, int(rng)
    return gen, _jsonable(gen.bit_generator.state)


# --------------------------------------------------------------------------------------
# the space
# --------------------------------------------------------------------------------------
def _build_space(inp: _Inputs) -> tuple[AllocationSpace, str]:
    design = inp.design
    g = np.asarray(design.sequence_sizes, dtype=np.int64)
    n_clusters, n_seq = design.n_clusters, design.n_sequences
    if inp.stratum_of is None:
        members = [np.arange(n_clusters)]
        lower = upper = g[None, :]
        method = "simple"
    else:
        values = sorted(set(inp.stratum_of))
        members = [np.array([i for i, v in enumerate(inp.stratum_of) if v == h]) for h in values]
        sizes = np.array([len(m) for m in members], dtype=np.int64)
        if inp.allowed is None:
            # proportional share of each stratum in each sequence, rounded down/up
            lower = (sizes[:, None] * g[None, :]) // n_clusters
            upper = -((-sizes[:, None] * g[None, :]) // n_clusters)
            method = "stratified"
        else:
            mask = np.zeros((len(values), n_seq), dtype=bool)
            for h, v in enumerate(values):
                mask[h, list(inp.allowed[v])] = True
            lower = np.zeros((len(values), n_seq), dtype=np.int64)
            upper = np.where(mask, sizes[:, None], 0)
            method = "restricted"
            _check_stratum_capacity(values, sizes, inp.allowed, g)
    try:
        space = AllocationSpace([int(x) for x in g], members, lower, upper)
    except OverflowError as exc:
        raise DesignError(f"cannot build the allocation space: {exc}") from None
    if space.size == 0:
        if method == "restricted":
            assert inp.allowed is not None
            _diagnose_restriction(values, sizes, inp.allowed, g)
        raise DesignError(  # pragma: no cover - balanced tables always exist; Hall covers the rest
            "no allocation lets every stratum take only its allowed sequences while filling every "
            "sequence; check `allowed_sequences` against the sequence sizes "
            f"{[int(x) for x in g]}."
        )
    return space, method


@dataclass(frozen=True)
class _Pick:
    """The drawn allocation and, for a constrained design, its admissible set and balance."""

    chosen: npt.NDArray[np.int8]
    n_admissible: int
    held: npt.NDArray[np.int8] | None = None  # None: enumerated lazily by Allocation
    n_candidates: int = 0
    balance: dict[str, float] = field(default_factory=dict)
    score: float | None = None
    reference: dict[str, float] = field(default_factory=dict)


def _constrained_pick(inp: _Inputs, space: AllocationSpace) -> _Pick:
    """Score the candidates, keep the admissible ones, draw one uniformly (Moulton 2004)."""
    gen = inp.rng
    enumerated_all = space.size <= inp.max_enumerate
    candidates = (
        space.enumerate() if enumerated_all else space.sample_distinct(inp.n_candidates, gen)
    )
    n_cand = candidates.shape[0]
    z_raw = inp.covariates[list(inp.balance)].to_numpy(dtype=np.float64)
    z = (z_raw - z_raw.mean(axis=0)) / z_raw.std(axis=0, ddof=1)
    contrast, denom = _sequence_contrasts(inp.design)
    diffs, scores = _balance_scores(candidates, contrast, denom, z)
    if inp.cutoff is not None:
        # exact decimal arithmetic: cutoff=0.1 of 2520 keeps the 252 best, not 253
        k = max(1, math.ceil(Fraction(repr(inp.cutoff)) * n_cand))
        threshold = np.partition(scores, k - 1)[k - 1]
    else:
        assert inp.max_score is not None
        threshold = inp.max_score
    keep = scores <= threshold
    if not keep.any():
        raise DesignError(
            f"no allocation has a balance score <= `max_score`={inp.max_score:g}; "
            f"the best of the {n_cand} {'eligible' if enumerated_all else 'sampled'} "
            "allocations scores "
            f"{scores.min():.4g}."
        )
    admissible = candidates[keep]
    adm_diffs = diffs[keep]
    if not enumerated_all:  # canonical (lexicographic) order for the sampled set
        order = np.lexsort(admissible.T[::-1])
        admissible, adm_diffs = admissible[order], adm_diffs[order]
    pick = randbelow(gen, admissible.shape[0], 1)[0]
    return _Pick(
        chosen=admissible[pick],
        n_admissible=admissible.shape[0],
        held=admissible,
        n_candidates=n_cand,
        balance={name: float(adm_diffs[pick, k]) for k, name in enumerate(inp.balance)},
        score=float(np.round((adm_diffs[pick] ** 2).sum(), SCORE_DECIMALS)),
        reference={name: float(np.abs(diffs[:, k]).mean()) for k, name in enumerate(inp.balance)},
    )


def _allocated(inp: _Inputs, chosen: npt.NDArray[np.int8]) -> tuple[Design, _FrozenMap]:
    """Return the design relabelled with the allocated clusters, and their sequences.

    Within a sequence, clusters in canonical order take its rows in order.
    """
    seq_rows = inp.design.sequences
    slot_labels: list[Hashable] = [None] * inp.design.n_clusters
    for s in range(inp.design.n_sequences):
        rows = np.flatnonzero(seq_rows == s)
        members = [lab for lab, q in zip(inp.labels, chosen.tolist(), strict=False) if q == s]
        for r, lab in zip(rows.tolist(), members, strict=False):
            slot_labels[r] = lab
    assignment = _FrozenMap(
        {lab: int(q) for lab, q in zip(inp.labels, chosen.tolist(), strict=True)}
    )
    return inp.design.relabel(slot_labels), assignment


def _check_stratum_capacity(
    values: list[str],
    sizes: npt.NDArray[np.int64],
    allowed: dict[str, tuple[int, ...]],
    g: npt.NDArray[np.int64],
) -> None:
    """Each stratum must fit in its permitted sequences (cheap; checked up front)."""
    for v, n_h in zip(values, sizes, strict=False):
        cap = int(g[list(allowed[v])].sum())
        if n_h > cap:
            raise DesignError(
                f"stratum {v!r} has {int(n_h)} clusters but its allowed sequences "
                f"{list(allowed[v])} "
                f"(waves {_waves(allowed[v])}) hold only {cap} "
                f"(sizes {', '.join(str(int(g[s])) for s in allowed[v])})."
            )


def _diagnose_restriction(
    values: list[str],
    sizes: npt.NDArray[np.int64],
    allowed: dict[str, tuple[int, ...]],
    g: npt.NDArray[np.int64],
) -> None:
    """Explain an empty restricted space (Hall's condition), naming what is at fault."""
    covered = set().union(*(set(allowed[v]) for v in values))
    empty = [s for s in range(len(g)) if s not in covered and g[s] > 0]
    if empty:
        raise DesignError(
            f"sequence(s) {empty} (waves {_waves(empty)}) are allowed for no stratum, so their "
            f"{int(g[empty].sum())} slot(s) cannot be filled; add them to `allowed_sequences`."
        )
    # Hall's condition over sets of strata (sufficient, as the totals are equal)
    for r in range(2, min(len(values), 12) + 1):
        for group in itertools.combinations(range(len(values)), r):
            seqs = sorted(set().union(*(set(allowed[values[h]]) for h in group)))
            need = int(sizes[list(group)].sum())
            cap = int(g[seqs].sum())
            if need > cap:
                names = ", ".join(repr(values[h]) for h in group)
                raise DesignError(
                    f"strata {names} have {need} clusters together but their allowed sequences "
                    f"{seqs} hold only {cap}."
                )


# --------------------------------------------------------------------------------------
# balance
# --------------------------------------------------------------------------------------
def _sequence_contrasts(design: Design) -> tuple[npt.NDArray[np.float64], float]:
    """Per-sequence sum over periods of (X_ij - mean_j X) over observed cells, and its scale.

    The balance of covariate ``z`` under an allocation is
    ``d = sum_i c[seq(i)] * z_i / D``: the coefficient of treatment when ``z`` is regressed
    on treatment and period fixed effects over the observed cells.
    """
    x = design.matrix
    obs = ~np.isnan(x)
    xz = np.where(obs, x, 0.0)
    n_obs = obs.sum(axis=0)
    mean = np.divide(xz.sum(axis=0), n_obs, out=np.zeros(x.shape[1]), where=n_obs > 0)
    centred = np.where(obs, x - mean[None, :], 0.0)
    denom = float((centred * xz).sum())
    if not denom > 0:
        raise DesignError(
            "covariate balance needs a design with treated and control clusters in the same "
            "period; this design has none."
        )
    per_row = centred.sum(axis=1)
    first = np.array([np.flatnonzero(design.sequences == s)[0] for s in range(design.n_sequences)])
    return per_row[first], denom


def _balance_scores(
    allocations: npt.NDArray[np.integer[Any]],
    contrast: npt.NDArray[np.float64],
    denom: float,
    z: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per-covariate standardised differences (n, K) and scores (n,), rounded."""
    n = allocations.shape[0]
    diffs = np.empty((n, z.shape[1]))
    for start in range(0, n, _SCORE_CHUNK):
        block = contrast[allocations[start : start + _SCORE_CHUNK]]
        diffs[start : start + _SCORE_CHUNK] = (block @ z) / denom
    scores = np.round((diffs**2).sum(axis=1), SCORE_DECIMALS)
    return diffs, scores


# --------------------------------------------------------------------------------------
# the result
# --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, eq=False)
class Allocation:
    r"""A randomised allocation of clusters to the sequences of a design, with its audit record.

    Built by :func:`randomise`; not meant to be constructed directly.

    Attributes
    ----------
    design : Design
        The design with the real cluster labels in its rows.
    clusters : tuple
        Cluster labels in canonical order (sorted by their text); the columns of
        :attr:`admissible` and of :meth:`draw` follow this order.
    assignment : Mapping
        Cluster label -> 0-based sequence index (wave = sequence + 1).
    method : str
        ``"simple"``, ``"stratified"`` or ``"restricted"`` (stratified with permitted
        sequences per stratum).
    constrained : bool
        Whether covariate-constrained randomisation was applied.
    strata : str or None
        The stratification column.
    allowed_sequences : Mapping or None
        Stratum -> permitted 0-based sequence indices.
    balance_columns : tuple of str
        Covariates balanced.
    cutoff, max_score : float or None
        The balance constraint (fraction kept, or absolute bound on the score).
    covariates : pandas.DataFrame
        Strata and balance covariates, indexed by cluster (canonical order).
    n_possible : int
        Size of the full space ``I! / prod_s g_s!`` (exact; may be huge).
    n_eligible : int
        Allocations meeting the stratification rules (``== n_possible`` for simple).
    n_candidates : int
        Allocations scored for balance: all eligible ones when enumerated, else a uniform
        sample of distinct ones (0 when unconstrained).
    n_admissible : int
        Size of the set the allocation was drawn from (and a permutation test re-draws from).
    enumerated : bool
        Whether the eligible space was enumerated in full (``n_eligible <= max_enumerate``);
        otherwise it was sampled (constrained) or is drawn from without being held.
    balance : Mapping
        Covariate -> standardised within-period treated - control difference achieved
        (empty when unconstrained); ``balance_score`` is the sum of their squares.
    balance_score : float or None
        Sum of the squared standardised differences in :attr:`balance` (None when
        unconstrained).
    balance_reference : Mapping
        Covariate -> mean absolute difference over the candidate (unconstrained) allocations.
    seed : int or dict
        The int seed given, the fresh entropy drawn when ``rng=None``, or the generator's
        ``bit_generator.state`` before the draw when a Generator was given.
    version : str
        steppedwedge version.
    input_hash : str
        SHA-256 of a canonical JSON of the design matrix, labels, covariates and options.
    options : Mapping
        The remaining settings that shape the draw: ``alpha``, ``max_enumerate`` and the
        requested ``n_candidates``.

    Examples
    --------
    >>> from steppedwedge.design import Design
    >>> from steppedwedge.randomise import randomise
    >>> alloc = randomise(Design.stepped_wedge(3, 2), list("abcdef"), rng=7)
    >>> alloc.n_possible, alloc.n_admissible, round(alloc.min_pvalue, 4)
    (90, 90, 0.0111)
    >>> sorted(alloc.assignment.values())
    [0, 0, 1, 1, 2, 2]
    >>> alloc.draw(3, rng=1).shape
    (3, 6)
    """

    design: Design
    clusters: tuple[Hashable, ...]
    assignment: Mapping[Hashable, int]
    method: str
    constrained: bool
    strata: str | None
    allowed_sequences: Mapping[str, tuple[int, ...]] | None
    balance_columns: tuple[str, ...]
    cutoff: float | None
    max_score: float | None
    covariates: pd.DataFrame = field(repr=False)
    n_possible: int
    n_eligible: int
    n_candidates: int
    n_admissible: int
    enumerated: bool
    balance: Mapping[str, float]
    balance_score: float | None
    balance_reference: Mapping[str, float]
    seed: Any
    version: str
    input_hash: str
    options: Mapping[str, Any]
    _admissible: npt.NDArray[np.int8] | None = field(repr=False)
    _space: AllocationSpace = field(repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    # ---------------------------------------------------------------- derived
    @property
    def admissible(self) -> npt.NDArray[np.int8]:
        """Admissible allocations, (n_admissible, I) of 0-based sequence indices (read-only).

        Columns follow :attr:`clusters`.  Always available after covariate-constrained
        randomisation (the kept allocations).  Without constraints the space is enumerated
        on first access, in a fixed order, when it has at most ``max_enumerate`` members; for
        a larger space use :meth:`draw`.

        Raises
        ------
        DesignError
            If the admissible set is too large to hold.
        """
        if self._admissible is not None:
            return self._admissible
        cached = self._cache.get("admissible")
        if cached is None:
            if self.n_admissible > int(self.options["max_enumerate"]):
                raise DesignError(
                    f"the admissible set has {self.n_admissible} members, more than "
                    "`max_enumerate`; it is not held in memory: use `draw(n, rng)` to sample "
                    "from it."
                )
            cached = self._space.enumerate()
            cached.flags.writeable = False
            self._cache["admissible"] = cached
        return cached

    @property
    def min_pvalue(self) -> float:
        """Smallest attainable randomisation-test p-value, ``1 / n_admissible``.

        It is larger when distinct allocations give identical test statistics.
        """
        return 1.0 / self.n_admissible

    @property
    def sequence_of(self) -> npt.NDArray[np.int64]:
        """0-based sequence of each cluster in :attr:`clusters` order."""
        return np.array([self.assignment[c] for c in self.clusters], dtype=np.int64)

    def draw(self, n: int, rng: RNGLike = None) -> npt.NDArray[np.int8]:
        """Draw ``n`` allocations uniformly (with replacement) from the admissible set.

        The stream of draws depends only on ``rng`` and the allocation, not on whether
        :attr:`admissible` has been accessed: a constrained set is indexed with uniform
        integers; an unconstrained space is sampled exactly without enumerating it.

        Parameters
        ----------
        n : int
            Number of allocations.
        rng : int, numpy.random.Generator or None
            Source of randomness.

        Returns
        -------
        numpy.ndarray
            (n, I) 0-based sequence indices; columns follow :attr:`clusters`.

        Examples
        --------
        >>> from steppedwedge.design import Design
        >>> from steppedwedge.randomise import randomise
        >>> alloc = randomise(Design.stepped_wedge(3, 2), list("abcdef"), rng=1)
        >>> alloc.draw(4, rng=2).shape
        (4, 6)
        """
        n = check_positive_int("n", n, minimum=0)
        gen = normalise_rng(rng)
        if self._admissible is not None:
            idx = (
                np.array(randbelow(gen, self.n_admissible, n), dtype=np.intp)
                if n
                else np.zeros(0, np.intp)
            )
            return self._admissible[idx]
        return self._space.sample(n, gen)

    # ---------------------------------------------------------------- presentation
    def _start_label(self, seq: int) -> str:
        start = int(self.design.start_period[np.flatnonzero(self.design.sequences == seq)[0]])
        return "never" if start < 0 else str(self.design.periods[start])

    def _start_value(self, seq: int) -> Any:
        start = int(self.design.start_period[np.flatnonzero(self.design.sequences == seq)[0]])
        return None if start < 0 else self.design.periods[start]

    def _start_text(self, seq: int) -> str:
        label = self._start_label(seq)
        return "never treated" if label == "never" else f"starts in period {label}"

    def to_frame(self) -> pd.DataFrame:
        """Return one row per cluster: cluster, sequence, wave, start period and covariates.

        ``sequence`` is 0-based and ``wave`` 1-based; ``start_period`` is the label of the
        sequence's first treated period (None if never treated).

        Rows follow the rows of :attr:`design`.

        Returns
        -------
        pandas.DataFrame

        Examples
        --------
        >>> from steppedwedge.design import Design
        >>> from steppedwedge.randomise import randomise
        >>> alloc = randomise(Design.stepped_wedge(2), ["x", "y"], rng=3, alpha=None)
        >>> list(alloc.to_frame().columns)
        ['cluster', 'sequence', 'wave', 'start_period']
        """
        labels = list(self.design.clusters)
        position = {c: k for k, c in enumerate(self.clusters)}
        seqs = [int(self.assignment[c]) for c in labels]
        frame = pd.DataFrame(
            {
                "cluster": labels,
                "sequence": seqs,
                "wave": [s + 1 for s in seqs],
                "start_period": pd.Series([self._start_value(s) for s in seqs], dtype=object),
            }
        )
        for name in self.covariates.columns:
            values = self.covariates[name].to_numpy()
            frame[name] = values[[position[c] for c in labels]]
        out: pd.DataFrame = frame
        return out

    def _method_text(self) -> str:
        if self.method == "simple":
            text = "simple (uniform over all allocations)"
        elif self.method == "stratified":
            text = f"stratified by {self.strata!r} (each stratum spread evenly over sequences)"
        else:
            assert self.allowed_sequences is not None
            rules = "; ".join(
                f"{k} -> waves {_waves(v)}" for k, v in self.allowed_sequences.items()
            )
            text = f"restricted stratified by {self.strata!r} ({rules})"
        if self.constrained:
            rule = (
                f"best {self.cutoff:g} fraction kept"
                if self.cutoff is not None
                else f"score <= {self.max_score:g}"
            )
            text += f", covariate-constrained on {', '.join(self.balance_columns)} ({rule})"
        return text

    def summary(self) -> Summary:
        """Return the record: method, seed, space sizes, p-value floor, balance, allocation.

        Returns
        -------
        steppedwedge.results.Summary
            ``print`` / ``str()`` / ``as_text()`` give the text record; ``as_html()`` and
            ``as_markdown()`` render the assignment (and balance) as tables.

        Examples
        --------
        >>> import pandas as pd
        >>> from steppedwedge.design import Design
        >>> from steppedwedge.randomise import randomise
        >>> councils = pd.DataFrame({"cluster": ["A", "B", "C", "D"],
        ...                          "readiness": ["high", "high", "low", "low"]})
        >>> alloc = randomise(Design.stepped_wedge(4), councils, strata="readiness",
        ...                   allowed_sequences={"high": [0, 1], "low": [2, 3]},
        ...                   rng=2024, alpha=None)
        >>> print(alloc.summary().as_text().splitlines()[3])
        Allocations: 24 possible, 4 meeting the strata rules, 4 admissible
        """
        seed = self.seed if isinstance(self.seed, int) else "generator state (see to_dict())"
        lines = [
            f"Allocation of {len(self.clusters)} clusters to {self.design.n_sequences} sequences "
            f"(waves 1-{self.design.n_sequences})",
            f"Method: {self._method_text()}",
            f"Seed: {seed}; steppedwedge {self.version}; input sha256 {self.input_hash[:16]}",
            f"Allocations: {self.n_possible} possible, "
            + ("" if self.method == "simple" else f"{self.n_eligible} meeting the strata rules, ")
            + f"{self.n_admissible} admissible",
        ]
        if self.constrained and not self.enumerated:
            lines.append(
                f"  (space too large to enumerate: the admissible set is drawn from "
                f"{self.n_candidates} distinct random candidates)"
            )
        lines.append(
            f"Smallest attainable randomisation p-value: 1/{self.n_admissible} = "
            f"{self.min_pvalue:.4g}"
            " (larger if distinct allocations give equal statistics)"
        )
        if self.constrained:
            lines.append(
                "Balance: within-period treated - control difference, in SDs "
                f"(score = sum of squares = {self.balance_score:.4g})"
            )
            lines.append(f"  {'covariate':<20} {'achieved':>9} {'mean |d| unconstrained':>23}")
            for name in self.balance_columns:
                lines.append(
                    f"  {name:<20} {self.balance[name]:>9.3f} {self.balance_reference[name]:>23.3f}"
                )
        lines.append("Assignment:")
        waves = []
        for s in range(self.design.n_sequences):
            members = ", ".join(str(c) for c in self.clusters if self.assignment[c] == s)
            lines.append(f"  wave {s + 1} (sequence {s}, {self._start_text(s)}): " + members)
            waves.append((s + 1, s, self._start_text(s), members))
        return TextSummary(
            title=lines[0],
            header=tuple(_key_value(ln) for ln in lines[1:] if ": " in ln and ln[0] != " "),
            tables=self._summary_tables(waves),
            text="\n".join(lines),
        )

    def _summary_tables(
        self, waves: list[tuple[int, int, str, str]]
    ) -> tuple[tuple[str, pd.DataFrame], ...]:
        """Return the assignment table and, when constrained, the balance table."""
        columns = ["wave", "sequence", "start", "clusters"]
        tables = [("Assignment", pd.DataFrame(waves, columns=columns))]
        if self.constrained:
            balance = pd.DataFrame(
                {
                    "covariate": list(self.balance_columns),
                    "achieved": [self.balance[c] for c in self.balance_columns],
                    "unconstrained mean abs(d)": [
                        self.balance_reference[c] for c in self.balance_columns
                    ],
                }
            )
            tables.append(("Balance (treated - control difference, in SDs)", balance))
        return tuple(tables)

    def __str__(self) -> str:
        return self.summary().as_text()

    def __repr__(self) -> str:
        return (
            f"Allocation(method={self.method!r}, n_clusters={len(self.clusters)}, "
            f"n_admissible={self.n_admissible}, "
            f"seed={self.seed if isinstance(self.seed, int) else '<state>'})"
        )

    def _repr_html_(self) -> str:
        text = self.summary().as_text().splitlines()
        head = "".join(f"<li>{html.escape(line)}</li>" for line in text[1:5])
        frame = self.to_frame().to_html(index=False, escape=True)
        title = html.escape(text[0])
        return f"<div><p><b>{title}</b></p><ul>{head}</ul>{frame}</div>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Allocation):
            return NotImplemented
        return (
            self.input_hash == other.input_hash
            and dict(self.assignment) == dict(other.assignment)
            and self.n_admissible == other.n_admissible
        )

    def __hash__(self) -> int:
        return hash(
            (self.input_hash, tuple(sorted((str(k), v) for k, v in self.assignment.items())))
        )

    def to_dict(self, *, include_admissible: bool = False) -> dict[str, Any]:
        """Return the audit record as plain JSON-compatible types (labels as text).

        Parameters
        ----------
        include_admissible : bool, default False
            Also list the admissible allocations (if at most ``max_enumerate``; can be
            large).

        Returns
        -------
        dict

        Examples
        --------
        >>> from steppedwedge.design import Design
        >>> from steppedwedge.randomise import randomise
        >>> record = randomise(Design.stepped_wedge(3, 2), list("abcdef"), rng=7).to_dict()
        >>> record["seed"], record["n_admissible"], sorted(record["waves"].values())
        (7, 90, [1, 1, 2, 2, 3, 3])
        """
        out: dict[str, Any] = {
            "method": self.method,
            "constrained": self.constrained,
            "seed": self.seed,
            "version": self.version,
            "input_hash": self.input_hash,
            "clusters": [str(c) for c in self.clusters],
            "assignment": {str(c): int(self.assignment[c]) for c in self.clusters},
            "waves": {str(c): int(self.assignment[c]) + 1 for c in self.clusters},
            "design_matrix": _jsonable(self.design.matrix),
            "design_clusters": [str(c) for c in self.design.clusters],
            "periods": [str(p) for p in self.design.periods],
            "strata": self.strata,
            "allowed_sequences": None
            if self.allowed_sequences is None
            else {k: list(v) for k, v in self.allowed_sequences.items()},
            "balance_columns": list(self.balance_columns),
            "cutoff": self.cutoff,
            "max_score": self.max_score,
            "covariates": {
                name: _jsonable(self.covariates[name].tolist()) for name in self.covariates.columns
            },
            "options": dict(self.options),
            "n_possible": self.n_possible,
            "n_eligible": self.n_eligible,
            "n_candidates": self.n_candidates,
            "n_admissible": self.n_admissible,
            "min_pvalue": self.min_pvalue,
            "balance": dict(self.balance),
            "balance_score": self.balance_score,
            "balance_reference": dict(self.balance_reference),
        }
        if include_admissible and self.n_admissible <= int(self.options["max_enumerate"]):
            out["admissible"] = self.admissible.tolist()
        return out

    def to_json(self, *, include_admissible: bool = False, indent: int | None = 2) -> str:
        """Return the audit record (:meth:`to_dict`) as a JSON string.

        Parameters
        ----------
        include_admissible : bool, default False
            Also list the admissible allocations (see :meth:`to_dict`).
        indent : int or None, default 2
            Indentation of the JSON text (None: one line).

        Returns
        -------
        str
            The JSON text.

        Examples
        --------
        >>> import json
        >>> from steppedwedge.design import Design
        >>> from steppedwedge.randomise import randomise
        >>> text = randomise(Design.stepped_wedge(3, 2), list("abcdef"), rng=7).to_json()
        >>> json.loads(text)["method"]
        'simple'
        """
        return json.dumps(self.to_dict(include_admissible=include_admissible), indent=indent)


# --------------------------------------------------------------------------------------
# the public function
# --------------------------------------------------------------------------------------
def _key_value(line: str) -> tuple[str, str]:
    """Split a ``"Key: value"`` line of the text record into a summary header item."""
    key, value = line.split(": ", 1)
    return key, value


def _input_hash(inp: _Inputs) -> str:
    d = inp.design
    record = {
        "matrix": _jsonable(d.matrix),
        "periods": [str(p) for p in d.periods],
        "sequences": _jsonable(d.sequences),
        "clusters": [str(c) for c in inp.labels],
        "covariates": {
            name: _jsonable(inp.covariates[name].tolist()) for name in inp.covariates.columns
        },
        "strata": inp.strata,
        "allowed_sequences": None
        if inp.allowed is None
        else {k: list(v) for k, v in inp.allowed.items()},
        "balance": list(inp.balance),
        "cutoff": inp.cutoff,
        "max_score": inp.max_score,
        "max_enumerate": inp.max_enumerate,
        "n_candidates": inp.n_candidates,
    }
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def randomise(
    design: Design,
    clusters: pd.DataFrame | Sequence[Hashable],
    *,
    strata: str | None = None,
    balance: str | Sequence[str] | None = None,
    cutoff: float | None = None,
    max_score: float | None = None,
    allowed_sequences: Mapping[Any, Sequence[int]] | None = None,
    rng: RNGLike = None,
    alpha: float | None = 0.05,
    max_enumerate: int = 200_000,
    n_candidates: int = 10_000,
    cluster: str | None = None,
) -> Allocation:
    r"""Randomly allocate clusters to the sequences of a design.

    Parameters
    ----------
    design : Design
        Its rows are slots; its sequences and their sizes are kept.
    clusters : pandas.DataFrame or sequence of hashable
        One row per cluster, with any strata/balance columns, labelled by the ``cluster=``
        column, else a column named ``cluster``, else a non-default index; or just the
        labels.  Exactly ``design.n_clusters`` of them.  A frame with none of these (no
        ``cluster`` column and a default 0, 1, 2, ... index) is refused rather than numbered.
    strata : str, optional
        Column of the stratum of each cluster.  Without ``allowed_sequences`` each stratum is
        spread over the sequences as evenly as possible (see Notes).
    balance : str or list of str, optional
        Numeric covariate columns for covariate-constrained randomisation; needs ``cutoff``
        or ``max_score``.
    cutoff : float in (0, 1], optional
        Keep the best (lowest-score) fraction of allocations, ties at the boundary included.
        ``cutoff=1`` only reports the balance.
    max_score : float, optional
        Keep allocations whose balance score is at most this value instead.
    allowed_sequences : mapping, optional
        Stratum value -> **0-based** sequence indices its clusters may take (wave ``w`` is
        sequence ``w - 1``), e.g. ``{"high": [0, 1], "low": [2, 3, 4]}``.  Needs ``strata``.
    rng : int, numpy.random.Generator or None
        Source of randomness; recorded in :attr:`Allocation.seed`.  With ``None`` fresh
        entropy is drawn and recorded, so the allocation can still be reproduced.
    alpha : float or None, default 0.05
        Warn (:class:`~steppedwedge.SmallSampleWarning`) when a randomisation test on the
        admissible set can never reach ``p <= alpha``; ``None`` disables the check.
    max_enumerate : int, default 200000
        Covariate constraints: enumerate and score the whole eligible space when it has at
        most this many members; also the largest admissible set held in memory.
    n_candidates : int, default 10000
        Covariate constraints on a larger space: score this many distinct allocations drawn
        uniformly at random; the admissible set is then the kept part of that sample.
    cluster : str, optional
        The column of ``clusters`` holding the cluster ids (e.g. ``"council"``); required
        when the frame has no ``cluster`` column and a default RangeIndex.  The allocation
        and its audit record carry these ids.

    Returns
    -------
    Allocation

    Raises
    ------
    DesignError
        Wrong number of or duplicated labels; missing columns or missing values in the
        strata/balance columns; strata that their permitted sequences cannot hold; no
        allocation within ``max_score``.
    OptionError
        ``cluster=`` naming a missing column, or a frame that does not say which column
        holds the ids.

    Warns
    -----
    SmallSampleWarning
        When ``1 / n_admissible > alpha``.

    Notes
    -----
    Every admissible allocation is equally likely, and the same inputs and seed give the
    same allocation on any platform, whatever the order of the rows of ``clusters``.  The
    allocation space, the stratification and restriction rules, the balance score and the
    uniform, reproducible draw are set out in :doc:`/explanation/randomisation`.

    References
    ----------
    Moulton LH (2004). Covariate-based constrained randomization of group-randomized trials.
    *Clinical Trials* 1:297-305.

    Examples
    --------
    Family Safeguarding: two "high readiness" councils may only take waves 1-2 and three
    "low readiness" councils waves 3-5, so 2! x 3! = 12 allocations are admissible.

    >>> import pandas as pd
    >>> from steppedwedge.design import Design
    >>> from steppedwedge.randomise import randomise
    >>> councils = pd.DataFrame({
    ...     "cluster": ["Walsall", "Lancashire", "Telford", "Wandsworth", "Swindon"],
    ...     "readiness": ["high", "high", "low", "low", "low"]})
    >>> alloc = randomise(Design.stepped_wedge(5), councils, strata="readiness",
    ...                   allowed_sequences={"high": [0, 1], "low": [2, 3, 4]},
    ...                   rng=20190401, alpha=None)
    >>> alloc.n_possible, alloc.n_admissible, round(alloc.min_pvalue, 3)
    (120, 12, 0.083)
    >>> sorted(alloc.assignment[c] for c in ["Walsall", "Lancashire"])
    [0, 1]
    """
    inp = _randomise_iv(**locals())
    space, method = _build_space(inp)
    if inp.balance:
        pick = _constrained_pick(inp, space)
    else:
        index = randbelow(inp.rng, space.size, 1)[0]
        pick = _Pick(chosen=space.unrank(index), n_admissible=space.size)
    if pick.held is not None:
        pick.held.flags.writeable = False
    result = _allocation(inp, space, method, pick)
    n_admissible = pick.n_admissible
    if inp.alpha is not None and result.min_pvalue > inp.alpha:
        warnings.warn(
            f"a randomisation test can never reach p <= {inp.alpha:g} "
            f"with {n_admissible} admissible "
            f"allocations (smallest attainable p = 1/{n_admissible} = {result.min_pvalue:.3g}); "
            "use model-based small-sample inference or more clusters/allocations.",
            SmallSampleWarning,
            stacklevel=caller_stacklevel(),
        )
    return result


def _allocation(inp: _Inputs, space: AllocationSpace, method: str, pick: _Pick) -> Allocation:
    """Assemble the :class:`Allocation` of the drawn ``pick`` with its audit record."""
    g = [int(x) for x in inp.design.sequence_sizes]
    n_possible = math.factorial(sum(g))
    for x in g:
        n_possible //= math.factorial(x)
    allocated, assignment = _allocated(inp, pick.chosen)
    return Allocation(
        design=allocated,
        clusters=inp.labels,
        assignment=assignment,
        method=method,
        constrained=bool(inp.balance),
        strata=inp.strata,
        allowed_sequences=None if inp.allowed is None else _FrozenMap(dict(inp.allowed)),
        balance_columns=inp.balance,
        cutoff=inp.cutoff,
        max_score=inp.max_score,
        covariates=inp.covariates,
        n_possible=n_possible,
        n_eligible=space.size,
        n_candidates=pick.n_candidates,
        n_admissible=pick.n_admissible,
        enumerated=space.size <= inp.max_enumerate,
        balance=_FrozenMap(pick.balance),
        balance_score=pick.score,
        balance_reference=_FrozenMap(pick.reference),
        seed=inp.seed,
        version=__version__,
        input_hash=_input_hash(inp),
        options=_FrozenMap(
            {
                "alpha": inp.alpha,
                "max_enumerate": inp.max_enumerate,
                "n_candidates": inp.n_candidates,
            }
        ),
        _admissible=pick.held,
        _space=space,
    )
