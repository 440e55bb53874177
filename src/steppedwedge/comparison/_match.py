"""Choosing comparison councils: nearest neighbours or synthetic-control weights."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from ..exceptions import DataError
from ._inputs import Prepared

__all__ = ["Selection", "features", "log_rates", "select", "simplex_weights"]


def log_rates(prep: Prepared, years: Sequence[int] | None = None) -> pd.DataFrame:
    """``log(10^4 (count + 0.5) / exposure)`` per council and year (as the DiD cells)."""
    ys = list(prep.years if years is None else years)
    out: pd.DataFrame = np.log(1e4 * (prep.counts[ys] + 0.5) / prep.exposure[ys])
    return out


def _slopes(rates: pd.DataFrame) -> pd.Series:
    """OLS slope of each row on the (centred) years."""
    t = np.asarray(rates.columns, dtype=float)
    t = t - t.mean()
    slope = rates.to_numpy(dtype=float) @ t / (t @ t)
    out: pd.Series = pd.Series(slope, index=rates.index)
    return out


def features(prep: Prepared, match_on: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """Raw matching features of every council and the weight of each feature.

    ``"rates"``: the log rate in each pre-trial year (weights ``1/k``, so the trajectory
    counts as one feature); ``"trend"``: the pre-trial OLS slope of the log rate;
    ``"population"``: the mean log exposure over the pre-trial years.
    """
    rates = log_rates(prep, prep.pre_years)
    parts, weights = [], []
    if "rates" in match_on:
        parts.append(rates.add_prefix("log rate "))
        weights += [1.0 / rates.shape[1]] * rates.shape[1]
    if "trend" in match_on:
        parts.append(_slopes(rates).rename("pre-trial slope").to_frame())
        weights.append(1.0)
    if "population" in match_on:
        pop = np.log(prep.exposure[prep.pre_years]).mean(axis=1)
        parts.append(pop.rename("log population").to_frame())
        weights.append(1.0)
    return pd.concat(parts, axis=1), np.asarray(weights)


def _standardised(feat: pd.DataFrame, weights: np.ndarray) -> pd.DataFrame:
    sd = feat.std(ddof=1).replace(0.0, 1.0)
    out: pd.DataFrame = (feat - feat.mean()) / sd * np.sqrt(weights)
    return out


@dataclass(frozen=True)
class Selection:
    """The chosen councils, their weights and (nearest neighbours) the matched pairs."""

    councils: list[str]
    weights: pd.Series
    matches: pd.DataFrame
    features: pd.DataFrame
    notes: tuple[str, ...] = ()


def _nearest(prep: Prepared, z: pd.DataFrame, n: int, region: str | None) -> Selection:
    """Greedy matching without replacement, trial councils in turn, until ``n`` are chosen."""
    trial, pool = list(prep.starts), list(prep.pool)
    zt, zp = z.loc[trial].to_numpy(), z.loc[pool].to_numpy()
    dist = np.sqrt(((zt[:, None, :] - zp[None, :, :]) ** 2).sum(axis=2))
    if region == "exact":
        same = (
            prep.regions.reindex(trial).to_numpy()[:, None]
            == (prep.regions.reindex(pool).to_numpy()[None, :])
        )
        dist = np.where(same, dist, np.inf)
    used: list[int] = []
    pairs = []
    while len(used) < n:
        progress = False
        for i, c in enumerate(trial):
            if len(used) == n:
                break
            d = dist[i].copy()
            d[used] = np.inf
            j = int(np.argmin(d))
            if np.isfinite(d[j]):
                used.append(j)
                pairs.append((c, pool[j], float(d[j])))
                progress = True
        if not progress:
            break
    if not used:
        raise DataError(
            "no candidate comparison council is available"
            + (" in the trial councils' regions (region='exact')." if region else ".")
        )
    notes = []
    if len(used) < n:
        notes.append(f"only {len(used)} candidate councils were available (n={n} asked).")
    chosen = [pool[j] for j in used]
    matches = pd.DataFrame(pairs, columns=["trial_council", "comparison_council", "distance"])
    weights = pd.Series(1.0 / len(chosen), index=chosen, name="weight")
    return Selection(chosen, weights, matches, pd.DataFrame(), tuple(notes))


def simplex_weights(donors: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to 1 minimising ``||donors' w - target||``.

    ``donors`` is (J, F), ``target`` (F,).  Solved as non-negative least squares with the
    constraint ``sum(w) = 1`` as a heavily weighted extra equation (exact to ~1e-10).
    """
    scale = 1e5 * max(1.0, float(np.abs(donors).max()))
    a = np.vstack([donors.T, np.full((1, donors.shape[0]), scale)])
    b = np.concatenate([target, [scale]])
    w, _ = nnls(a, b, maxiter=50 * a.shape[1])
    out: np.ndarray = w / w.sum()
    return out


def _synthetic(prep: Prepared, z: pd.DataFrame, n: int, region: str | None) -> Selection:
    """Synthetic-control weights for the trial's mean features; the ``n`` largest kept."""
    trial = list(prep.starts)
    pool = list(prep.pool)
    if region == "exact":
        allowed = set(prep.regions.reindex(trial))
        pool = [c for c in pool if prep.regions.get(c) in allowed]
    if not pool:
        raise DataError("no candidate comparison council is available for synthetic weights.")
    w = simplex_weights(z.loc[pool].to_numpy(), z.loc[trial].to_numpy().mean(axis=0))
    order = np.argsort(-w, kind="stable")
    keep = [int(k) for k in order[:n] if w[k] > 1e-8]
    notes = []
    if len(keep) < n:
        notes.append(f"only {len(keep)} councils have positive synthetic weight (n={n} asked).")
    chosen = [pool[k] for k in keep]
    weights = pd.Series(w[keep] / w[keep].sum(), index=chosen, name="weight")
    matches = pd.DataFrame({"comparison_council": chosen, "synthetic_weight": w[keep]})
    return Selection(chosen, weights, matches, pd.DataFrame(), tuple(notes))


def select(
    prep: Prepared, method: str, n: int, region: str | None, match_on: Sequence[str]
) -> Selection:
    """Choose the comparison councils (see :func:`comparison_councils`)."""
    feat, weights = features(prep, match_on)
    z = _standardised(feat, weights)
    pick = _nearest if method == "nearest" else _synthetic
    sel = pick(prep, z, n, region)
    return Selection(sel.councils, sel.weights, sel.matches, feat, sel.notes)
