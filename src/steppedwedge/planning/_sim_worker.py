"""The replicates of :func:`~steppedwedge.planning.simulation.simulate_power`, run in workers.

A :class:`_Job` (sent once per batch) says how to draw a dataset (the arrays of the
validated :class:`~steppedwedge.simulate._spec.SimulationSpec`, or a user's ``dgp``) and how
to analyse it (GLS with known variance, the cell-statistics fast path, :func:`sw.fit
<steppedwedge.fit>` or a user's callable); :func:`_replicate` runs one replicate from its
own seed and classifies it (ok, singular or a failure), never raising.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .._core.gls import cell_weights, gls_information
from ..exceptions import ConvergenceWarning, DataError, OptionError
from ..simulate import arrays_to_frame
from ..simulate._draw import DrawArrays, draw_arrays, draw_cells
from ..simulate._spec import SimulationSpec
from ..variance import VarianceComponents
from ._fast_lmm import fast_lmm_analyse, fast_lmm_plan

#: Replicate statuses. "ok" and "singular" replicates are usable; the rest are failures,
#: except "not-run" (the executor failed before the replicate finished).
STATUSES = ("ok", "singular", "non-convergence", "non-finite", "error", "not-run")
FAILURES = ("non-convergence", "non-finite", "error")
USABLE = ("ok", "singular")

_COLUMNS = (
    "estimate",
    "std_error",
    "df",
    "p_value",
    "conf_low",
    "conf_high",
)


# ======================================================================================
# analyses run inside the workers
# ======================================================================================


@dataclass(frozen=True, eq=False)
class _KnownVarianceGLS:
    """GLS of the cell means with the true variance components; Wald z-test.

    The estimator is a fixed linear combination of the cell means (weights computed once),
    so a replicate costs one dot product.
    """

    weights: np.ndarray  # (I, T), 0 where unobserved
    std_error: float
    critical_value: float  # z quantile 1 - alpha/2


@dataclass(frozen=True, eq=False)
class _Job:
    """Everything a worker needs (sent once per batch)."""

    spec: DrawArrays | None  # the arrays replicates are drawn from
    dgp: Callable[[np.random.Generator], pd.DataFrame] | None
    kind: str  # "known-variance" | "callable" | "fit" | "fast-lmm"
    analysis: Any
    alpha: float
    fit_roles: Mapping[str, Any] = field(default_factory=dict)
    redraw: _Redraw | None = None  # re-randomise every replicate (``allocation=``)
    cache: dict[bytes, _Job] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, eq=False)
class _Redraw:
    """How a replicate re-randomises: draw an allocation, rebuild the spec and analysis."""

    allocation: Any  # steppedwedge.randomise.Allocation (draw(1, rng))
    column_of_row: np.ndarray  # (I,) column of allocation.draw() for each design row
    sequence_matrix: np.ndarray  # (S, T) rows of the treatment matrix by sequence index
    clusters: tuple[Any, ...]  # design row labels
    periods: Any
    model: SimulationSpec  # the data-generating model, callables evaluated (picklable)
    fit_options: Mapping[str, Any] | None  # sw.fit options (to rebuild a fast-path plan)


#: Re-randomised replicates cache the spec and analysis of at most this many allocations
#: per task (a restricted space has few; a large one is rarely drawn twice anyway).
_CACHE_SIZE = 512


def _job_for_allocation(job: _Job, sequences: np.ndarray) -> _Job:
    """Return the job of one drawn allocation (the design's rows in their drawn sequences)."""
    redraw = job.redraw
    assert redraw is not None
    key = sequences.tobytes()
    hit = job.cache.get(key)
    if hit is not None:
        return hit
    x = redraw.sequence_matrix[sequences[redraw.column_of_row]]
    rows = SimpleNamespace(matrix=x, clusters=redraw.clusters, periods=redraw.periods)
    times = None if job.spec is None else job.spec.times
    if times is not None:  # continuous-time decay: the drawn allocation keeps the calendar
        rows.period_midpoints = lambda: times
    spec = redraw.model.arrays(rows)
    kind, payload = job.kind, job.analysis
    if kind == "known-variance":
        payload = _known_variance_analysis(spec, job.alpha)
    elif kind == "fast-lmm":
        payload = fast_lmm_plan(spec, redraw.fit_options or {}, job.alpha)
        if payload is None:  # pragma: no cover - the same options qualified for the design
            kind, payload = "fit", dict(redraw.fit_options or {})
    out = replace(job, spec=spec, kind=kind, analysis=payload, redraw=None, cache={})
    if len(job.cache) < _CACHE_SIZE:
        job.cache[key] = out
    return out


def _prepare(job: _Job, rng: np.random.Generator) -> tuple[_Job, np.ndarray | None]:
    """Draw the replicate's allocation first (when re-randomising), from its own stream."""
    if job.redraw is None:
        return job, None
    sequences = np.asarray(job.redraw.allocation.draw(1, rng)[0], dtype=np.int64)
    return _job_for_allocation(job, sequences), sequences


def _known_variance_analysis(spec: DrawArrays, alpha: float) -> _KnownVarianceGLS:
    n_clusters, n_periods = spec.shape
    x = np.where(spec.observed, np.nan_to_num(spec.treatment), 0.0)
    z = np.zeros((n_clusters, n_periods, n_periods + 1))
    idx = np.arange(n_periods)
    z[:, idx, idx] = 1.0
    z[:, :, -1] = x
    z = np.where(spec.observed[:, :, None], z, 0.0)
    vc = VarianceComponents(
        sigma2=spec.sigma2,
        tau2=spec.tau2,
        gamma2=spec.gamma2,
        eta2=spec.eta2,
        rho=spec.rho,
        psi2=spec.psi2,
        decay=spec.decay,
    )
    cov = vc.covariance(spec.size, treatment=spec.xc, churn=spec.churn, times=spec.times)
    info = gls_information(z, cov)
    contrast = np.zeros(n_periods + 1)
    contrast[-1] = 1.0
    w = cell_weights(z, cov, contrast)
    se = math.sqrt(float(np.linalg.solve(info, contrast)[-1]))
    return _KnownVarianceGLS(
        weights=np.where(spec.observed, w, 0.0),
        std_error=se,
        critical_value=float(stats.norm.ppf(1 - alpha / 2)),
    )


def _generate(job: _Job, rng: np.random.Generator) -> Any:
    if job.dgp is not None:
        return job.dgp(rng)
    assert job.spec is not None
    if job.kind == "fast-lmm":
        return draw_cells(job.spec, rng)
    arrays = draw_arrays(job.spec, rng)
    if job.kind == "known-variance":
        return arrays
    return arrays_to_frame(job.spec, arrays)


def _analyse(job: _Job, data: Any) -> Any:
    if job.kind == "known-variance":
        gls: _KnownVarianceGLS = job.analysis
        means = np.nan_to_num(data["outcome"])
        est = float(np.sum(gls.weights * means))
        z = est / gls.std_error
        half = gls.critical_value * gls.std_error
        return {
            "estimate": est,
            "std_error": gls.std_error,
            "df": math.inf,
            "p_value": math.erfc(abs(z) / math.sqrt(2.0)),
            "conf_low": est - half,
            "conf_high": est + half,
        }
    if job.kind == "fast-lmm":
        return fast_lmm_analyse(job.analysis, *data)
    if job.kind == "fit":
        from ..models.fit import fit  # noqa: PLC0415 - needed only when rows are refitted

        return fit(data, **job.fit_roles, **job.analysis)
    return job.analysis(data)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _extract(result: Any, alpha: float) -> tuple[dict[str, float], bool | None, bool | None]:
    """Estimate, SE, df, p-value and CI of an analysis result; plus converged/singular flags."""
    out = dict.fromkeys(_COLUMNS, math.nan)
    converged: bool | None = None
    singular: bool | None = None
    if isinstance(result, Mapping):
        for key in _COLUMNS:
            if key in result:
                out[key] = _number(result[key])
        if "pvalue" in result:
            out["p_value"] = _number(result["pvalue"])
        if "conf_int" in result:
            ci = np.asarray(result["conf_int"], dtype=float).ravel()
            if ci.size == 2:
                out["conf_low"], out["conf_high"] = float(ci[0]), float(ci[1])
        converged = result.get("converged")
        singular = result.get("singular")
    elif isinstance(result, (tuple, list)):
        vals = [_number(v) for v in result]
        if len(vals) not in (3, 5):
            raise TypeError(
                "an analysis returning a tuple must give (estimate, std_error, p_value) or "
                f"(estimate, std_error, p_value, conf_low, conf_high); got {len(vals)} values."
            )
        out["estimate"], out["std_error"], out["p_value"] = vals[:3]
        if len(vals) == 5:
            out["conf_low"], out["conf_high"] = vals[3:]
    else:
        for key, attr in (("estimate", "estimate"), ("std_error", "std_error"), ("df", "df")):
            out[key] = _number(getattr(result, attr, math.nan))
        p = getattr(result, "pvalue", getattr(result, "p_value", math.nan))
        out["p_value"] = _number(p() if callable(p) else p)
        conf = getattr(result, "conf_int", None)
        if callable(conf):
            ci = np.asarray(conf(confidence_level=1.0 - alpha), dtype=float).ravel()
            if ci.size == 2:
                out["conf_low"], out["conf_high"] = float(ci[0]), float(ci[1])
        converged = getattr(result, "converged", None)
        singular = getattr(result, "singular", None)
    if (
        math.isnan(out["conf_low"])
        and math.isfinite(out["estimate"])
        and math.isfinite(out["std_error"])
    ):
        df = out["df"]
        crit = (
            stats.t.ppf(1 - alpha / 2, df)
            if math.isfinite(df) and df > 0
            else stats.norm.ppf(1 - alpha / 2)
        )
        out["conf_low"] = out["estimate"] - crit * out["std_error"]
        out["conf_high"] = out["estimate"] + crit * out["std_error"]
    return (
        out,
        (None if converged is None else bool(converged)),
        (None if singular is None else bool(singular)),
    )


def _replicate(job: _Job, seed: np.random.SeedSequence) -> tuple[Any, ...]:
    """Run one replicate.

    Returns ``(estimate, std_error, df, p_value, conf_low, conf_high, status, message,
    sequences)``; ``sequences`` is the drawn allocation (None without re-randomisation).
    """
    rng = np.random.default_rng(seed)
    nan6 = (math.nan,) * 6
    sequences: np.ndarray | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            work, sequences = _prepare(job, rng)
            data = _generate(work, rng)
            values, converged, singular = _extract(_analyse(work, data), job.alpha)
        except Exception as exc:  # classified, never raised: one bad replicate is data
            drawn = None if sequences is None else tuple(int(v) for v in sequences)
            return (*nan6, "error", f"{type(exc).__name__}: {exc}", drawn)
    messages = "; ".join(sorted({str(w.message) for w in caught}))[:300]
    conv_warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    row = tuple(values[c] for c in _COLUMNS)
    if converged is False or (converged is None and conv_warned):
        status = "non-convergence"
    elif not all(math.isfinite(values[c]) for c in ("estimate", "std_error", "p_value")):
        status = "non-finite"
    elif singular:
        status = "singular"
    else:
        status = "ok"
    drawn = None if sequences is None else tuple(int(v) for v in sequences)
    return (*row, status, messages, drawn)


def _check_first(job: _Job, seed: np.random.SeedSequence) -> None:
    """Run replicate 0 in this process and raise on input errors before the whole run."""
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        job, _ = _prepare(job, rng)
        try:
            data = _generate(job, rng)
        except Exception as exc:
            raise DataError(
                f"the data-generating function failed on the first replicate: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if job.dgp is not None:
            _check_dgp_frame(job, data)
        try:
            result = _analyse(job, data)
            _extract(result, job.alpha)
        except (ValueError, TypeError, KeyError, AttributeError, ImportError) as exc:
            raise OptionError(
                f"the analysis rejected the first simulated dataset, so the run was not "
                f"started: {type(exc).__name__}: {exc}"
            ) from exc
        except Exception:  # numerical trouble on one dataset is a replicate failure
            return


def _check_dgp_frame(job: _Job, data: Any) -> None:
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"`dgp` must return a pandas DataFrame; got {type(data).__name__}.")
    if job.kind == "fit":
        needed = [v for k, v in job.fit_roles.items() if k in _FRAME_ROLES and isinstance(v, str)]
        missing = [c for c in needed if c not in data.columns]
        if missing:
            raise DataError(
                f"`dgp` returned a DataFrame without the column(s) {missing} that the "
                f"analysis needs; it has {list(data.columns)}."
            )


_FRAME_ROLES = ("outcome", "cluster", "period", "treatment", "individual", "trials", "exposure")


def _fit_roles(spec: DrawArrays | None, family: str, sampling: str) -> dict[str, Any]:
    roles: dict[str, Any] = {
        "outcome": "outcome",
        "cluster": "cluster",
        "period": "period",
        "treatment": "treatment",
        "family": family,
    }
    if family == "binomial" and spec is not None and spec.level == "cluster-period":
        roles["trials"] = "trials"
    if family in ("poisson", "negative_binomial"):
        roles["exposure"] = "population"
    if spec is not None and family == "binomial" and spec.link != "logit":
        roles["link"] = spec.link  # analyse on the scale the effect was simulated on
    if sampling == "cohort":
        roles["individual"] = "individual"
    return roles
