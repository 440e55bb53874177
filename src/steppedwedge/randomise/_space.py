"""Exact counting, ranking, enumeration and uniform sampling of cluster allocations.

An *allocation* assigns each of ``I`` clusters to one of ``S`` sequences so that sequence
``s`` receives exactly ``g[s]`` clusters.  Clusters fall into ``H`` strata (one stratum when
there is no stratification); stratum ``h`` holds ``n[h]`` clusters and its per-sequence
counts ``m[h, s]`` must satisfy ``lo[h, s] <= m[h, s] <= hi[h, s]``.  That one description
covers simple randomisation (``lo = hi = g``, one stratum), balanced stratification
(``lo``/``hi`` = floor/ceil of the proportional share) and restricted stratification
(``hi = 0`` outside a stratum's allowed sequences).

The space is organised as a tree: stratum by stratum, choose the stratum's count vector
``m[h]`` (the *option*), then one of the ``n[h]! / prod_s m[h, s]!`` arrangements of its
clusters over those sequences.  A dynamic programme over the remaining sequence
capacities counts the leaves exactly with Python integers, which gives

* ``size``: the exact number of admissible allocations (may be astronomically large);
* ``unrank(k)``: the ``k``-th allocation, a bijection ``range(size) -> allocations``;
* ``enumerate()``: all allocations, with ``enumerate()[k] == unrank(k)``;
* ``sample(n, rng)``: independent uniform draws, vectorised over draws.

Randomness is consumed only as integers from :class:`numpy.random.Generator`
(``integers`` and ``permuted``) and every loop runs in a fixed, sorted order, so results
are identical on every platform for the same generator state.

This module imports only numpy and the standard library.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from ..exceptions import DesignError, OptionError

__all__ = ["AllocationSpace", "randbelow"]

#: Refuse to build the counting table beyond this many (stratum, capacity) states.
MAX_STATES = 2_000_000

_INT64_MAX = np.iinfo(np.int64).max


def randbelow(rng: np.random.Generator, n: int, size: int) -> list[int]:
    """Return ``size`` independent uniform integers in ``range(n)`` (exact for any ``n``).

    Uses ``rng.integers`` directly when ``n`` fits in int64 and otherwise assembles
    32-bit words with rejection, so that huge spaces are sampled exactly.
    """
    if n < 1:
        raise OptionError(f"`n` must be >= 1; got {n}.")
    if n <= _INT64_MAX:
        return [int(v) for v in rng.integers(0, n, size=size, dtype=np.int64)]
    bits = (n - 1).bit_length()
    n_words = -(-bits // 32)
    mask = (1 << bits) - 1
    out: list[int] = []
    while len(out) < size:
        need = size - len(out)
        words = rng.integers(0, 2**32, size=(need, n_words), dtype=np.uint64)
        for row in words.tolist():
            value = 0
            for w in row:
                value = (value << 32) | int(w)
            value &= mask
            if value < n:
                out.append(value)
    return out


def _multinomial(counts: Sequence[int]) -> int:
    total = 0
    out = 1
    for c in counts:
        total += c
        out *= math.comb(total, c)
    return out


def _first_nonzero(counts: tuple[int, ...]) -> int:
    for v, c in enumerate(counts):
        if c:
            return v
    return -1


def _unrank_combination(n: int, c: int, idx: int) -> list[int]:
    """Return the ``idx``-th ``c``-subset of ``range(n)`` in lexicographic (itertools) order."""
    out: list[int] = []
    x = 0
    while c > 0:
        block = math.comb(n - x - 1, c - 1)
        if idx < block:
            out.append(x)
            c -= 1
        else:
            idx -= block
        x += 1
    return out


@lru_cache(maxsize=32)
def _arrangements(counts: tuple[int, ...]) -> npt.NDArray[np.int16]:
    """All distinct arrangements of the multiset ``{v: counts[v]}`` in rank order.

    Rank order: choose the positions of the smallest value present (lexicographic
    combinations), then recurse on the remaining positions.  Row ``k`` equals
    ``_unrank_arrangement(counts, k)``.  Read-only (the result is cached).
    """
    n = sum(counts)
    v = _first_nonzero(counts)
    if v < 0:
        out = np.zeros((1, 0), dtype=np.int16)
        out.flags.writeable = False
        return out
    c = counts[v]
    rest = tuple(0 if i == v else k for i, k in enumerate(counts))
    sub = _arrangements(rest)
    r = sub.shape[0]
    combos = list(itertools.combinations(range(n), c))
    out = np.empty((len(combos) * r, n), dtype=np.int16)
    everything = np.arange(n)
    for ci, combo in enumerate(combos):
        block = out[ci * r : (ci + 1) * r]
        mask = np.ones(n, dtype=bool)
        mask[list(combo)] = False
        block[:, list(combo)] = v
        block[:, everything[mask]] = sub
    out.flags.writeable = False
    return out


def _unrank_arrangement(counts: tuple[int, ...], idx: int) -> list[int]:
    n = sum(counts)
    out = [0] * n
    positions = list(range(n))
    counts_l = list(counts)
    while True:
        v = _first_nonzero(tuple(counts_l))
        if v < 0:
            return out
        c = counts_l[v]
        counts_l[v] = 0
        sub_size = _multinomial(counts_l)
        ci, idx = divmod(idx, sub_size)
        chosen = _unrank_combination(len(positions), c, ci)
        chosen_set = set(chosen)
        for j in chosen:
            out[positions[j]] = v
        positions = [p for j, p in enumerate(positions) if j not in chosen_set]


@dataclass(frozen=True)
class _Option:
    counts: tuple[int, ...]  # per-sequence counts for this stratum
    arrangements: int  # n_h! / prod m_hs!
    sub: int  # number of completions for the later strata
    weight: int  # arrangements * sub


class AllocationSpace:
    """The set of allocations satisfying per-stratum count bounds (see module docstring).

    Parameters
    ----------
    sequence_sizes : sequence of int, length S
        Number of clusters each sequence must receive.
    members : sequence of int arrays, one per stratum
        Column positions (in the caller's canonical cluster order) of each stratum's
        clusters.  Together they must cover ``range(I)`` exactly once.
    lower, upper : (H, S) int arrays
        Bounds on each stratum's per-sequence counts.

    Notes
    -----
    Sequences with the same size and the same bounds in every stratum are interchangeable,
    so the number of completions from a capacity vector does not change when capacities
    are permuted within such a class.  Counts are therefore memoised on the *canonical*
    capacity vector (sorted within each class), and the options at any capacity vector
    are those of its canonical form mapped back through the sorting permutation.  This
    keeps the counting table small for many equal sequences.
    """

    def __init__(
        self,
        sequence_sizes: Sequence[int],
        members: Sequence[npt.NDArray[np.intp]],
        lower: npt.NDArray[np.int64],
        upper: npt.NDArray[np.int64],
    ) -> None:
        self.sequence_sizes = tuple(int(g) for g in sequence_sizes)
        self.members = [np.asarray(m, dtype=np.intp) for m in members]
        self.stratum_sizes = tuple(len(m) for m in self.members)
        self.n_clusters = sum(self.stratum_sizes)
        self.n_sequences = len(self.sequence_sizes)
        self.lower = np.asarray(lower, dtype=np.int64)
        self.upper = np.asarray(upper, dtype=np.int64)
        self.dtype = np.int8 if self.n_sequences <= 127 else np.int16
        # suffix sums of stratum sizes: clusters still to place from stratum h on
        self._remaining = [sum(self.stratum_sizes[h:]) for h in range(len(self.members) + 1)]
        # classes of interchangeable sequences (same size, same bounds in every stratum)
        keys: dict[tuple[object, ...], list[int]] = {}
        for s in range(self.n_sequences):
            key = (self.sequence_sizes[s], tuple(self.lower[:, s]), tuple(self.upper[:, s]))
            keys.setdefault(key, []).append(s)
        self._classes = [tuple(v) for _, v in sorted(keys.items(), key=lambda kv: kv[1][0])]
        self._options: dict[tuple[int, tuple[int, ...]], list[_Option]] = {}
        self._count: dict[tuple[int, tuple[int, ...]], int] = {}
        self.size = self.count(0, self.sequence_sizes)

    # ------------------------------------------------------------------ counting
    def _canon(self, cap: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Canonical capacities ``c`` and positions ``act`` with ``c[p] == cap[act[p]]``.

        Within each class of interchangeable sequences the capacities are sorted (ties by
        index); an option ``m`` in canonical coordinates is ``m_actual[act] = m``.
        """
        act = list(range(len(cap)))
        for cls in self._classes:
            if len(cls) > 1:
                ordered = sorted(cls, key=lambda s: (cap[s], s))
                for pos, s in zip(cls, ordered, strict=True):
                    act[pos] = s
        return tuple(cap[a] for a in act), tuple(act)

    def _bounded_vectors(self, h: int, cap: tuple[int, ...]) -> list[tuple[int, ...]]:
        """Count vectors for stratum ``h`` within its bounds and ``cap``, lexicographic."""
        lo = [int(x) for x in self.lower[h]]
        hi = [min(int(x), c) for x, c in zip(self.upper[h], cap, strict=True)]
        if any(a > b for a, b in zip(lo, hi, strict=True)):
            return []
        total = self.stratum_sizes[h]
        s_count = len(cap)
        lo_suffix = [sum(lo[s:]) for s in range(s_count + 1)]
        hi_suffix = [sum(hi[s:]) for s in range(s_count + 1)]
        out: list[tuple[int, ...]] = []
        current: list[int] = []

        def rec(s: int, left: int) -> None:
            if s == s_count:
                if left == 0:
                    out.append(tuple(current))
                return
            first = max(lo[s], left - hi_suffix[s + 1])
            last = min(hi[s], left - lo_suffix[s + 1])
            for x in range(first, last + 1):
                current.append(x)
                rec(s + 1, left - x)
                current.pop()

        rec(0, total)
        return out

    def _canonical_options(self, h: int, c: tuple[int, ...]) -> list[_Option]:
        """Options (in canonical coordinates) of stratum ``h`` at canonical capacities ``c``."""
        key = (h, c)
        cached = self._options.get(key)
        if cached is not None:
            return cached
        if len(self._options) >= MAX_STATES:
            raise OverflowError(
                "the allocation space is too complex to count exactly "
                f"(more than {MAX_STATES} intermediate states)."
            )
        options: list[_Option] = []
        total = 0
        for m in self._bounded_vectors(h, c):
            rest = tuple(a - x for a, x in zip(c, m, strict=True))
            sub = self.count(h + 1, rest)
            if sub:
                arr = _multinomial(m)
                options.append(_Option(m, arr, sub, arr * sub))
                total += arr * sub
        self._options[key] = options
        self._count[key] = total
        return options

    def count(self, h: int, cap: tuple[int, ...]) -> int:
        """Return the number of ways to place strata ``h, h+1, ...`` into capacities ``cap``."""
        if h == len(self.members):
            return 1 if not any(cap) else 0
        c, _ = self._canon(cap)
        cached = self._count.get((h, c))
        if cached is None:
            self._canonical_options(h, c)
            cached = self._count[(h, c)]
        return cached

    def options(self, h: int, cap: tuple[int, ...]) -> list[_Option]:
        """Return the non-empty count-vector options of stratum ``h`` given capacities ``cap``."""
        c, act = self._canon(cap)
        out = []
        for o in self._canonical_options(h, c):
            counts = [0] * len(cap)
            for p, a in enumerate(act):
                counts[a] = o.counts[p]
            out.append(_Option(tuple(counts), o.arrangements, o.sub, o.weight))
        return out

    def tables(self) -> list[tuple[npt.NDArray[np.int64], int]]:
        """Return all admissible (H, S) count tables with their numbers of allocations."""
        out: list[tuple[npt.NDArray[np.int64], int]] = []

        def rec(h: int, cap: tuple[int, ...], rows: list[tuple[int, ...]], w: int) -> None:
            if h == len(self.members):
                out.append((np.array(rows, dtype=np.int64).reshape(h, self.n_sequences), w))
                return
            for o in self.options(h, cap):
                rest = tuple(c - x for c, x in zip(cap, o.counts, strict=True))
                rec(h + 1, rest, [*rows, o.counts], w * o.arrangements)

        if self.size:
            rec(0, self.sequence_sizes, [], 1)
        return out

    # ------------------------------------------------------------------ ranking
    def unrank(self, k: int) -> npt.NDArray[np.int8]:
        """Return the ``k``-th allocation (0 <= k < size) as sequence indices in cluster order."""
        if not 0 <= k < self.size:
            raise IndexError(f"rank {k} outside range({self.size}).")
        out = np.empty(self.n_clusters, dtype=self.dtype)
        cap = self.sequence_sizes
        for h, cols in enumerate(self.members):
            opts = self.options(h, cap)
            for o in opts:
                if k < o.weight:
                    break
                k -= o.weight
            p_idx, k = divmod(k, o.sub)
            out[cols] = _unrank_arrangement(o.counts, p_idx)
            cap = tuple(c - x for c, x in zip(cap, o.counts, strict=True))
        return out

    def enumerate(self) -> npt.NDArray[np.int8]:
        """Return all allocations as an (size, I) array; row ``k`` equals ``unrank(k)``."""
        order = np.concatenate([*self.members, np.zeros(0, dtype=np.intp)])
        grouped = self._enum(0, self.sequence_sizes)
        out = np.empty((grouped.shape[0], self.n_clusters), dtype=self.dtype)
        out[:, order] = grouped
        return out

    def _enum(self, h: int, cap: tuple[int, ...]) -> npt.NDArray[np.int8]:
        width = self._remaining[h]
        if h == len(self.members):
            return np.zeros((1, 0), dtype=self.dtype)
        blocks = []
        n_h = self.stratum_sizes[h]
        for o in self.options(h, cap):
            arr = _arrangements(o.counts)
            rest = self._enum(h + 1, tuple(c - x for c, x in zip(cap, o.counts, strict=True)))
            block = np.empty((arr.shape[0] * rest.shape[0], width), dtype=self.dtype)
            block[:, :n_h] = np.repeat(arr, rest.shape[0], axis=0)
            block[:, n_h:] = np.tile(rest, (arr.shape[0], 1))
            blocks.append(block)
        if not blocks:
            return np.zeros((0, width), dtype=self.dtype)
        return np.concatenate(blocks, axis=0)

    # ------------------------------------------------------------------ sampling
    def _canon_rows(
        self, caps: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.intp]]:
        """Row-wise :meth:`_canon` of an (n, S) capacity array (same tie-breaking)."""
        canon = caps.copy()
        act = np.broadcast_to(np.arange(self.n_sequences), caps.shape).copy()
        for cls in self._classes:
            if len(cls) > 1:
                cols = np.array(cls)
                order = np.argsort(caps[:, cols], axis=1, kind="stable")
                act[:, cols] = cols[order]
                canon[:, cols] = np.take_along_axis(caps[:, cols], order, axis=1)
        return canon, act

    def sample(self, n: int, rng: np.random.Generator) -> npt.NDArray[np.int8]:
        """Return ``n`` independent uniform draws from the space, as an (n, I) array.

        Stratum by stratum, each draw picks its count vector with probability proportional
        to the number of completions (exact integer weights, in canonical coordinates, so
        draws in symmetric states are handled together), then a uniformly random
        arrangement of the stratum's clusters over those counts (``Generator.permuted``).
        """
        out = np.empty((n, self.n_clusters), dtype=self.dtype)
        chunk = 20_000
        for start in range(0, n, chunk):
            out[start : start + chunk] = self._sample_chunk(min(chunk, n - start), rng)
        return out

    def _sample_chunk(self, n: int, rng: np.random.Generator) -> npt.NDArray[np.int8]:
        out = np.empty((n, self.n_clusters), dtype=self.dtype)
        if n == 0:
            return out
        caps = np.tile(np.array(self.sequence_sizes, dtype=np.int64), (n, 1))
        for h, cols in enumerate(self.members):
            canon, act = self._canon_rows(caps)
            states, inverse = np.unique(canon, axis=0, return_inverse=True)
            inverse = inverse.reshape(-1)
            counts = np.empty_like(caps)
            for q, c_row in enumerate(states):
                sel = np.flatnonzero(inverse == q)
                opts = self._canonical_options(h, tuple(int(x) for x in c_row))
                cum = list(itertools.accumulate(o.weight for o in opts))
                u = randbelow(rng, cum[-1], sel.size)
                if cum[-1] <= _INT64_MAX:
                    pick = np.searchsorted(np.array(cum, dtype=np.int64), u, side="right")
                else:
                    pick = np.array([bisect.bisect_right(cum, x) for x in u], dtype=np.intp)
                table = np.array([o.counts for o in opts], dtype=np.int64)
                counts[sel[:, None], act[sel]] = table[pick]
            # sorted sequence labels of each draw's multiset, then a random arrangement
            bounds = counts.cumsum(axis=1)
            positions = np.arange(len(cols))
            base = (positions[None, :, None] >= bounds[:, None, :]).sum(axis=2)
            out[:, cols] = rng.permuted(base.astype(self.dtype), axis=1)
            caps = caps - counts
        return out

    def sample_distinct(self, n: int, rng: np.random.Generator) -> npt.NDArray[np.int8]:
        """Return ``n`` distinct allocations drawn uniformly without replacement (n <= size)."""
        if n > self.size:
            raise DesignError(f"cannot draw {n} distinct allocations from {self.size}.")
        seen: dict[bytes, None] = {}
        rows: list[npt.NDArray[np.int8]] = []
        while len(rows) < n:
            batch = self.sample(max(64, 2 * (n - len(rows))), rng)
            for row in batch:
                key = row.tobytes()
                if key not in seen:
                    seen[key] = None
                    rows.append(row)
                    if len(rows) == n:
                        break
        return np.stack(rows) if rows else np.empty((0, self.n_clusters), dtype=self.dtype)
