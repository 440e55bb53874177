"""Hypothesis strategies for steppedwedge designs (importable by any test module).

* :func:`stepped_wedge_designs` - standard staircase designs from the constructor, with
  unequal sequences, baseline periods, steps, transition periods and extra periods;
* :func:`incomplete_designs` - those designs with some further cells not observed;
* :func:`comparison_designs` - parallel (with baseline) and crossover designs;
* :func:`designs` - any of the above;
* :func:`cluster_labels` - ``n`` unique cluster labels (ints or strings).

Every strategy yields a validated :class:`~steppedwedge.design.Design`; draws that the
validator rejects (e.g. an incomplete design that lost its identifying contrast) are
filtered out with ``assume``.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from steppedwedge.design import Design
from steppedwedge.exceptions import DesignError

__all__ = [
    "cluster_labels",
    "comparison_designs",
    "designs",
    "incomplete_designs",
    "stepped_wedge_designs",
]


@st.composite
def stepped_wedge_designs(
    draw: st.DrawFn, *, max_sequences: int = 6, max_cluster_per_sequence: int = 4
) -> Design:
    """Standard stepped-wedge designs built by :meth:`Design.stepped_wedge`."""
    n_seq = draw(st.integers(2, max_sequences))
    sizes = draw(st.lists(st.integers(1, max_cluster_per_sequence), min_size=n_seq, max_size=n_seq))
    kwargs = dict(
        baseline_periods=draw(st.integers(1, 2)),
        periods_per_step=draw(st.integers(1, 2)),
        transition_periods=draw(st.integers(0, 2)),
        extra_treated_periods=draw(st.integers(0, 2)),
        transition=draw(st.sampled_from(["exclude", "partial", 0.5])),
    )
    try:
        return Design.stepped_wedge(n_seq, sizes, **kwargs)  # type: ignore[arg-type]
    except DesignError:
        assume(False)
        raise  # unreachable


@st.composite
def incomplete_designs(draw: st.DrawFn) -> Design:
    """Stepped-wedge designs with a few extra cells not observed."""
    base = draw(stepped_wedge_designs())
    matrix = base.matrix.copy()
    n_cells = matrix.size
    holes = draw(st.lists(st.integers(0, n_cells - 1), max_size=max(1, n_cells // 6), unique=True))
    matrix.reshape(-1)[holes] = np.nan
    try:
        return Design.from_matrix(matrix)
    except DesignError:
        assume(False)
        raise


@st.composite
def comparison_designs(draw: st.DrawFn) -> Design:
    """Parallel (optionally with baseline) and AB/BA crossover designs."""
    if draw(st.booleans()):
        n_periods = draw(st.integers(1, 4))
        return Design.parallel(
            draw(st.integers(1, 5)),
            draw(st.integers(1, 5)),
            n_periods,
            baseline_periods=draw(st.integers(0, n_periods - 1)),
        )
    return Design.crossover(
        draw(st.integers(1, 4)),
        periods_per_arm=draw(st.integers(1, 3)),
        washout_periods=draw(st.integers(0, 1)),
    )


def designs() -> st.SearchStrategy[Design]:
    """Any valid design: complete or incomplete stepped wedge, parallel, crossover."""
    return st.one_of(stepped_wedge_designs(), incomplete_designs(), comparison_designs())


def cluster_labels(n: int) -> st.SearchStrategy[list[Hashable]]:
    """``n`` unique cluster labels, all ints or all strings."""
    ints = st.lists(st.integers(-1000, 1000), min_size=n, max_size=n, unique=True)
    strs = st.lists(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz ABC-_0123456789", min_size=1, max_size=12),
        min_size=n,
        max_size=n,
        unique=True,
    )
    return st.one_of(ints, strs)  # type: ignore[return-value]
