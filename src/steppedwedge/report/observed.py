"""What the observed data say before any model: cells, cluster flow, rates, lag correlations.

Every function is a direct computation on the cluster-period table (sums and means), so each
number in the report's descriptive sections can be checked by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..design import Design

__all__ = ["CellData", "cell_data", "cluster_flow", "lag_correlation", "rates_by"]

#: Counts per exposure are shown as rates per this many units of exposure.
RATE_PER = 10_000


@dataclass(frozen=True)
class CellData:
    """One row per observed cluster-period (``cells``) and what its columns mean.

    ``cells`` has ``cluster``, ``period`` (label), ``t`` (0-based period index in design
    order), ``wave`` (1-based allocated wave), ``treated`` (mean treatment of the cell),
    ``events`` (sum of the outcome), ``exposure`` (sum of the exposure column, or the number of
    rows when there is none), ``rows`` and ``value`` (rate per :data:`RATE_PER` of exposure, or
    the mean outcome).
    """

    cells: pd.DataFrame
    periods: tuple[str, ...]
    value_label: str
    exposure_label: str
    has_exposure: bool


def cell_data(
    frame: pd.DataFrame, roles: dict[str, Any], design: Design, outcome_label: str
) -> CellData:
    """Aggregate the data to cluster-period cells in the allocated design's period order."""
    cl, pe, tr, y = roles["cluster"], roles["period"], roles["treatment"], roles["outcome"]
    expo = roles.get("exposure")
    labels = [str(p) for p in design.periods]
    present = sorted(frame[pe].astype(str).unique(), key=_natural)
    order = labels if set(present) <= set(labels) else present
    index = {p: k for k, p in enumerate(order)}
    work = pd.DataFrame(
        {
            "cluster": frame[cl].astype(str).to_numpy(),
            "period": frame[pe].astype(str).to_numpy(),
            "treated": pd.to_numeric(frame[tr]).to_numpy(dtype=float),
            "events": pd.to_numeric(frame[y]).to_numpy(dtype=float),
            "exposure": (
                pd.to_numeric(frame[expo]).to_numpy(dtype=float)
                if expo is not None
                else np.ones(len(frame))
            ),
        }
    )
    cells = work.groupby(["cluster", "period"], sort=False).agg(
        treated=("treated", "mean"),
        events=("events", "sum"),
        exposure=("exposure", "sum"),
        rows=("events", "size"),
    )
    cells = cells.reset_index()
    cells["t"] = cells["period"].map(index).astype(int)
    wave = {str(c): int(s) + 1 for c, s in zip(design.clusters, design.sequences, strict=True)}
    cells["wave"] = cells["cluster"].map(wave).fillna(0).astype(int)
    scale = RATE_PER if expo is not None else 1.0
    cells["value"] = scale * cells["events"] / cells["exposure"]
    cells = cells.sort_values(["wave", "cluster", "t"], kind="stable").reset_index(drop=True)
    value_label = (
        f"{outcome_label} per {RATE_PER:,} {expo}" if expo is not None else f"mean {outcome_label}"
    )
    return CellData(
        cells, tuple(order), value_label, str(expo) if expo else "rows", expo is not None
    )


def _natural(label: str) -> tuple[int, float | str]:
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


def observed_start(cells: pd.DataFrame) -> dict[str, int]:
    """First period index in which each cluster's data show the intervention (-1: never)."""
    out: dict[str, int] = {}
    for cluster, g in cells.groupby("cluster", sort=True):
        on = g.loc[g["treated"] > 0, "t"]
        out[str(cluster)] = int(on.min()) if len(on) else -1
    return out


def cluster_flow(cells: pd.DataFrame, design: Design) -> pd.DataFrame:
    """One row per randomised cluster: allocated and observed start, status, cells analysed.

    ``status`` is ``"as allocated"``, ``"late by k periods"``, ``"early by k periods"``,
    ``"never started"`` or ``"no data"``.
    """
    started = observed_start(cells)
    n_cells = cells.groupby("cluster").size()
    rows = []
    for c, s, start in zip(design.clusters, design.sequences, design.start_period, strict=True):
        c = str(c)
        obs = started.get(c)
        if obs is None:
            status = "no data"
        elif obs == int(start):
            status = "as allocated"
        elif obs < 0:
            status = "never started"
        elif start < 0 or obs > start:
            status = (
                f"late by {obs - int(start)} periods" if start >= 0 else "started (planned never)"
            )
        else:
            status = f"early by {int(start) - obs} periods"
        rows.append(
            {
                "cluster": c,
                "wave": int(s) + 1,
                "allocated_start": int(start),
                "observed_start": -1 if obs is None else obs,
                "status": status,
                "cells": int(n_cells.get(c, 0)),
            }
        )
    out: pd.DataFrame = pd.DataFrame(rows)
    return out


def rates_by(cells: pd.DataFrame, by: str, per: float) -> pd.DataFrame:
    """Pooled outcome (sum of events / sum of exposure x ``per``) in each group of ``by``."""
    g = cells.groupby(by, sort=True)
    out = g.agg(
        clusters=("cluster", "nunique"),
        events=("events", "sum"),
        exposure=("exposure", "sum"),
    ).reset_index()
    out["value"] = per * out["events"] / out["exposure"]
    result: pd.DataFrame = out
    return result


def lag_correlation(
    cells: pd.DataFrame,
    *,
    log_scale: bool,
    effect: float,
    components: dict[str, float],
    noise: float,
    max_lag: int = 8,
) -> pd.DataFrame:
    """Correlation of residual cluster-period outcomes ``k`` periods apart, and the model's.

    Residuals are the cell outcome (the log rate with 0.5 added to each count when
    ``log_scale``) minus the period mean over clusters and the fitted treatment ``effect``.
    The implied correlation is ``(tau2 + gamma2 r^k) / (tau2 + gamma2 + noise)`` where
    ``noise`` is the mean sampling variance of a cell outcome (``gamma2`` carries no decay
    term, only lag 0, without ``decay``).
    """
    events = cells["events"].to_numpy(float)
    z = (
        np.log((events + 0.5) / cells["exposure"].to_numpy(float))
        if log_scale
        else cells["value"].to_numpy(float)
    )
    z = z - effect * cells["treated"].to_numpy(float)
    work = cells[["cluster", "t"]].assign(z=z)
    work["z"] = work["z"] - work.groupby("t")["z"].transform("mean")
    wide = work.pivot(index="cluster", columns="t", values="z").sort_index(axis=1)
    arr = wide.to_numpy(float)
    tau2 = float(components.get("tau2", 0.0))
    gamma2 = float(components.get("gamma2", 0.0))
    decay = components.get("decay")
    total = tau2 + gamma2 + noise
    rows = []
    for k in range(1, min(max_lag, arr.shape[1] - 1) + 1):
        a, b = arr[:, :-k].ravel(), arr[:, k:].ravel()
        ok = np.isfinite(a) & np.isfinite(b)
        obs = float(np.corrcoef(a[ok], b[ok])[0, 1]) if ok.sum() > 2 else float("nan")
        share = gamma2 * float(decay) ** k if decay is not None else 0.0
        rows.append(
            {"lag": k, "pairs": int(ok.sum()), "observed": obs, "implied": (tau2 + share) / total}
        )
    out: pd.DataFrame = pd.DataFrame(rows)
    return out
