"""The standard stepped-wedge schematic: clusters (grouped by sequence) by periods.

``matplotlib`` is imported inside :func:`plot_design` only, so importing this module (or
:mod:`steppedwedge`) never imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..design import CELL_COLOURS, Design

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["CELL_CODES", "cell_codes", "plot_design"]

#: Integer code of each kind of cell in the plotted image (see :func:`cell_codes`).
CELL_CODES = {"control": 0, "partial": 1, "treated": 2, "not observed": 3}

#: Up to this many clusters each row is labelled; above it, only sequence brackets.
MAX_ROW_LABELS = 40


def cell_codes(matrix: np.ndarray) -> np.ndarray:
    """Code a design matrix by kind of cell: 0 control, 1 partial, 2 treated, 3 not observed.

    Parameters
    ----------
    matrix : numpy.ndarray, shape (I, T)
        A design matrix (0, 1, fractions, NaN).

    Returns
    -------
    numpy.ndarray of int, shape (I, T)

    Examples
    --------
    >>> import numpy as np
    >>> cell_codes(np.array([[0.0, 0.5, 1.0, np.nan]]))
    array([[0, 1, 2, 3]])
    """
    m = np.asarray(matrix, dtype=np.float64)
    out = np.full(m.shape, CELL_CODES["partial"], dtype=np.int64)
    out[m == 0] = CELL_CODES["control"]
    out[m == 1] = CELL_CODES["treated"]
    out[np.isnan(m)] = CELL_CODES["not observed"]
    return out


def _period_tick_labels(design: Design) -> list[str]:
    labels = [str(p) for p in design.periods]
    if design.period_lengths is not None:
        months = design.period_lengths_months
        assert months is not None
        out = []
        for lab, days, mo in zip(labels, design.period_lengths, months, strict=True):
            lab = lab.replace("/", "\nto ")
            out.append(f"{lab}\n{days:g} d\n~{mo:.1f} mo")
        return out
    return labels


def plot_design(
    design: Design,
    ax: Axes | None = None,
    *,
    row_labels: bool | None = None,
    show_values: bool | None = None,
    proportional_widths: bool | None = None,
    legend: bool = True,
) -> Axes:
    """Draw the design schematic: one row per cluster, one column per period.

    Rows are grouped by sequence (sequence 1 at the top) with a bracket and label per
    sequence on the right; control, treated, partial (transition) and unobserved cells have
    distinct colours explained by a legend (unobserved cells are white with a cross when
    the figure is small enough to draw one).

    Parameters
    ----------
    design : Design
        The design to draw.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; by default a new figure sized to the design.
    row_labels : bool, optional
        Label each row with its cluster; default True up to 40 clusters.  Larger designs
        show only the sequence brackets.
    show_values : bool, optional
        Print the exposure in partial cells; default True when the cells are large enough
        (at most 30 clusters and 24 periods).
    proportional_widths : bool, optional
        Make column widths proportional to :attr:`Design.period_lengths`; default True
        when the lengths differ.  Tick labels then show each length in days and months.
    legend : bool, default True
        Draw the legend above the axes.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on.  The cells are ``ax.collections[0]``, a QuadMesh whose array is
        :func:`cell_codes` of the matrix in plotted row order (sequence order, stable).

    Examples
    --------
    >>> from steppedwedge.design import Design
    >>> ax = plot_design(Design.stepped_wedge(4, 2, transition_periods=1,
    ...                                       extra_treated_periods=1))
    >>> ax.collections[0].get_array().shape
    (8, 6)
    """
    import matplotlib.pyplot as plt
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    n_c, n_p = design.n_clusters, design.n_periods
    order = np.argsort(design.sequences, kind="stable")
    matrix = design.matrix[order]
    codes = cell_codes(matrix)
    if row_labels is None:
        row_labels = n_c <= MAX_ROW_LABELS
    if show_values is None:
        show_values = n_c <= 30 and n_p <= 24
    lengths = design.period_lengths
    if proportional_widths is None:
        proportional_widths = lengths is not None and not np.allclose(lengths, lengths[0])
    if proportional_widths and lengths is not None:
        xedges = np.concatenate([[0.0], np.cumsum(lengths / lengths.mean())])
    else:
        xedges = np.arange(n_p + 1, dtype=np.float64)

    if ax is None:
        width = min(14.0, max(5.5, 2.2 + (1.3 if lengths is not None else 0.55) * n_p))
        height = min(11.0, max(3.2, 1.8 + (0.28 if row_labels else 0.05) * n_c))
        fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
        engine = fig.get_layout_engine()
        if isinstance(engine, ConstrainedLayoutEngine):
            engine.set(w_pad=0.2)  # room for the sequence labels

    _draw_cells(ax, codes, xedges)
    _mark_cells(ax, codes, matrix, xedges, show_values=bool(show_values))
    _draw_sequences(ax, design, order)
    _label_axes(ax, design, order, xedges, row_labels=bool(row_labels))
    if legend:
        _draw_legend(ax, codes)
    return ax


def _draw_cells(ax: Axes, codes: np.ndarray, xedges: np.ndarray) -> None:
    """Draw the coded cells as one QuadMesh (``ax.collections[0]``)."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    n_c = codes.shape[0]
    kinds = list(CELL_CODES)
    cmap = ListedColormap([CELL_COLOURS[k] for k in kinds])
    norm = BoundaryNorm(np.arange(len(kinds) + 1) - 0.5, cmap.N)
    edge = "#9a9a9a" if n_c <= 60 else "face"
    mesh = ax.pcolormesh(
        xedges,
        np.arange(n_c + 1, dtype=np.float64),
        codes,
        cmap=cmap,
        norm=norm,
        edgecolors=edge,
        linewidth=0.4 if n_c <= 60 else 0.0,
    )
    mesh.set_gid("design-cells")
    ax.set_xlim(xedges[0], xedges[-1])
    ax.set_ylim(n_c, 0)


def _mark_cells(
    ax: Axes, codes: np.ndarray, matrix: np.ndarray, xedges: np.ndarray, *, show_values: bool
) -> None:
    """Cross unobserved cells (when rows are tall enough) and print partial exposures."""
    n_c = codes.shape[0]
    if n_c <= 60 and (codes == CELL_CODES["not observed"]).any():
        rr, cc = np.nonzero(codes == CELL_CODES["not observed"])
        for r, c in zip(rr, cc, strict=True):
            x0, x1 = xedges[c], xedges[c + 1]
            ax.plot([x0, x1], [r, r + 1], color="#b0b0b0", lw=0.7, zorder=2)
            ax.plot([x0, x1], [r + 1, r], color="#b0b0b0", lw=0.7, zorder=2)
    if show_values:
        rr, cc = np.nonzero(codes == CELL_CODES["partial"])
        for r, c in zip(rr, cc, strict=True):
            ax.text(
                (xedges[c] + xedges[c + 1]) / 2,
                r + 0.5,
                f"{matrix[r, c]:.2f}".lstrip("0"),
                ha="center",
                va="center",
                fontsize=7,
                color="#1a1a1a",
            )


def _draw_sequences(ax: Axes, design: Design, order: np.ndarray) -> None:
    """Draw the sequence boundaries and a labelled bracket per sequence on the right."""
    from matplotlib.transforms import blended_transform_factory

    n_c = design.n_clusters
    seqs = design.sequences[order]
    bounds = np.flatnonzero(np.diff(seqs)) + 1
    for b in bounds:
        ax.axhline(float(b), color="#202020", lw=1.2 if n_c <= 60 else 0.8)
    starts = np.concatenate([[0], bounds])
    stops = np.concatenate([bounds, [n_c]])
    trans = blended_transform_factory(ax.transAxes, ax.transData)
    label_every = max(1, int(np.ceil(len(starts) / 30)))
    for q, (a, z) in enumerate(zip(starts, stops, strict=True)):
        pad = min(0.15, 0.1 * (z - a))
        ax.plot(
            [1.01, 1.02, 1.02, 1.01],
            [a + pad, a + pad, z - pad, z - pad],
            transform=trans,
            color="#202020",
            lw=0.9,
            clip_on=False,
        )
        if q % label_every == 0:
            never = design.start_period[order][a] < 0
            name = f"S{q + 1}" + (" (never)" if never else "")
            ax.text(
                1.03,
                (a + z) / 2,
                f"{name}  n={z - a}",
                transform=trans,
                va="center",
                ha="left",
                fontsize=8,
            )


def _label_axes(
    ax: Axes, design: Design, order: np.ndarray, xedges: np.ndarray, *, row_labels: bool
) -> None:
    """Label the rows (clusters) and columns (periods, with lengths when known)."""
    n_c, n_p = design.n_clusters, design.n_periods
    lengths = design.period_lengths
    if row_labels:
        ax.set_yticks(np.arange(n_c) + 0.5)
        ax.set_yticklabels([str(design.clusters[i]) for i in order], fontsize=8)
        ax.set_ylabel("Cluster")
    else:
        ax.set_yticks([])
        ax.set_ylabel(f"Clusters ({n_c}), grouped by sequence")
    xcentres = (xedges[:-1] + xedges[1:]) / 2
    tick_labels = _period_tick_labels(design)
    step = max(1, int(np.ceil(n_p / 24)))
    ax.set_xticks(xcentres[::step])
    ax.set_xticklabels(tick_labels[::step], fontsize=8 if lengths is None else 7)
    if lengths is None and max(len(t) for t in tick_labels) > 4 and n_p > 8:
        for t in ax.get_xticklabels():
            t.set_rotation(90)
    ax.set_xlabel("Period")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)


def _draw_legend(ax: Axes, codes: np.ndarray) -> None:
    """Draw a legend of the kinds of cell present (control and treated always) above."""
    from matplotlib.patches import Patch

    present = set(np.unique(codes).tolist()) | {CELL_CODES["control"], CELL_CODES["treated"]}
    names = {
        "control": "Control",
        "partial": "Transition / partial",
        "treated": "Intervention",
        "not observed": "Not observed",
    }
    handles = [
        Patch(
            facecolor=CELL_COLOURS[k],
            edgecolor="#9a9a9a",
            label=names[k],
            hatch="xx" if k == "not observed" else None,
        )
        for k in CELL_CODES
        if CELL_CODES[k] in present
    ]
    ax.legend(
        handles=handles,
        loc="lower left",
        bbox_to_anchor=(0.0, 1.01),
        ncol=len(handles),
        frameon=False,
        fontsize=8,
        handlelength=1.4,
        borderaxespad=0.0,
    )
