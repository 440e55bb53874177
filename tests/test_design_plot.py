"""Tests for the design schematic (steppedwedge.plotting.design)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from steppedwedge.design import CELL_COLOURS, Design

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from _tolerances import EXACT_REL  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from steppedwedge.plotting import plot_design  # noqa: E402

nan = np.nan


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def expected_codes(matrix: np.ndarray) -> np.ndarray:
    """Restate the documented coding cell by cell: 0 control, 1 partial, 2 treated, 3 NaN."""
    out = np.empty(matrix.shape, dtype=int)
    for (i, j), v in np.ndenumerate(matrix):
        if np.isnan(v):
            out[i, j] = 3
        elif v == 0:
            out[i, j] = 0
        elif v == 1:
            out[i, j] = 2
        else:
            out[i, j] = 1
    return out


def mesh_of(ax: object) -> object:
    meshes = [c for c in ax.collections if c.get_gid() == "design-cells"]  # type: ignore[attr-defined]
    assert len(meshes) == 1
    return meshes[0]


def test_cells_equal_coded_matrix_in_sequence_order() -> None:
    # rows deliberately not in sequence order; one partial and one missing cell
    m = np.array([[0, 0, 1, 1], [0, 0.5, 1, 1], [0, 0, 0, 1], [0, 1, 1, 1], [0, nan, 0, 1]])
    d = Design.from_matrix(m, clusters=["c1", "c2", "c3", "c4", "c5"])
    ax = d.plot()
    arr = np.asarray(mesh_of(ax).get_array()).reshape(d.n_clusters, d.n_periods)
    # sequence order by hand: c4 (start 1, full), c2 (start 1, partial), c1 (start 2),
    # c3 (start 3), c5 (start 3, with a NaN) -> sequences 0, 1, 2, 3, 4
    order = [3, 1, 0, 2, 4]
    np.testing.assert_array_equal(arr, expected_codes(m[order]))
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["c4", "c2", "c1", "c3", "c5"]
    # colours: each code is drawn in its documented colour
    ax.figure.canvas.draw()  # maps the codes through the colormap
    facecolours = mesh_of(ax).get_facecolors()
    kinds = ["control", "partial", "treated", "not observed"]
    for code, colour in zip(arr.reshape(-1), facecolours, strict=True):
        np.testing.assert_allclose(colour, to_rgba(CELL_COLOURS[kinds[int(code)]]))
    # legend lists exactly the kinds present
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["Control", "Transition / partial", "Intervention", "Not observed"]
    # partial value printed in its cell
    assert ".50" in [t.get_text() for t in ax.texts]


def test_uses_given_axes_and_returns_it() -> None:
    fig, ax = plt.subplots()
    out = Design.stepped_wedge(3).plot(ax=ax)
    assert out is ax
    assert len(fig.axes) == 1
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["Control", "Intervention"]


def test_large_design_uses_sequence_brackets() -> None:
    d = Design.stepped_wedge(8, 20)  # 160 clusters
    ax = plot_design(d)
    arr = np.asarray(mesh_of(ax).get_array()).reshape(160, 9)
    np.testing.assert_array_equal(arr, expected_codes(d.matrix))
    assert list(ax.get_yticks()) == []  # no per-row labels
    seq_labels = [t.get_text() for t in ax.texts if t.get_text().startswith("S")]
    assert seq_labels == [f"S{q}  n=20" for q in range(1, 9)]
    assert "160" in ax.get_ylabel()
    ax.figure.canvas.draw()  # renders without error


def test_unequal_period_lengths_shown_and_proportional() -> None:
    starts = {"a": "2021-01-01", "b": "2021-07-01", "c": "2021-09-01"}
    d = Design.from_start_dates(starts, "starts", window=("2020-07-01", "2021-12-31"))
    ax = d.plot()
    # Jul-Dec 2020 = 184 d, Jan-Jun 2021 = 181 d, Jul-Aug 2021 = 62 d, Sep-Dec 2021 = 122 d
    lengths = np.array([184.0, 181.0, 62.0, 122.0])
    coords = mesh_of(ax).get_coordinates()  # (I+1, T+1, 2)
    widths = np.diff(coords[0, :, 0])
    np.testing.assert_allclose(widths / widths.sum(), lengths / lengths.sum(), rtol=EXACT_REL)
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert "62 d" in ticks[2] and "~2.0 mo" in ticks[2]
    # equal lengths: plain unit columns
    ax2 = plot_design(d, proportional_widths=False)
    np.testing.assert_array_equal(np.diff(mesh_of(ax2).get_coordinates()[0, :, 0]), 1.0)


def test_never_treated_sequence_marked() -> None:
    ax = Design.parallel(2, 2, 2, baseline_periods=1).plot()
    texts = [t.get_text() for t in ax.texts]
    assert "S2 (never)  n=2" in texts


def test_import_does_not_import_matplotlib() -> None:
    code = (
        "import sys, steppedwedge, steppedwedge.design, steppedwedge.plotting\n"
        "from steppedwedge.design import Design\n"
        "Design.stepped_wedge(3).summary()\n"
        "print('matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
