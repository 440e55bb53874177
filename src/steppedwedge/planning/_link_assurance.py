"""Assurance from variance components: power averaged over draws of the components.

The engine of :func:`steppedwedge.assurance` when ``variance=`` is given: every family and
option of :func:`steppedwedge.power` (counts and binary outcomes on the link scale,
Gaussian), averaged over the draws of a :class:`~steppedwedge.VarianceEstimate` (or an
explicit sequence of :class:`~steppedwedge.VarianceComponents`) and over a grid or prior of
the effect.  Power of every draw comes from :func:`~steppedwedge.planning._batched.batched_power`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._validation import check_positive_int
from ..design import Design
from ..exceptions import OptionError
from ..variance import VarianceComponents, VarianceEstimate
from ._batched import batched_power
from .analytic import _check_means, _check_sigma2, _compute, _power_iv, _Spec

__all__ = ["components_assurance", "resolve_draws"]

#: keywords of :func:`steppedwedge.power` that assurance passes through
_POWER_OPTIONS = (
    "link",
    "dof",
    "weights",
    "sampling",
    "churn",
    "individual_decay",
    "time",
    "analysis",
    "binary_variance",
    "glmm_variance",
    "treatment_correlation",
)
_COMPONENTS = ("sigma2", "tau2", "gamma2", "eta2", "rho", "psi2", "decay")


def resolve_draws(
    variance: Any,
) -> tuple[VarianceComponents | None, tuple[VarianceComponents, ...]]:
    """Split ``variance`` into (point estimate or None, draws).

    A :class:`VarianceComponents` is a point without draws; a :class:`VarianceEstimate`
    gives both; a sequence of components gives draws without a point.
    """
    if isinstance(variance, VarianceComponents):
        return variance, ()
    if isinstance(variance, VarianceEstimate):
        point, draws = variance.variance, tuple(variance.draws)
        if not isinstance(point, VarianceComponents):
            raise TypeError(
                "`variance.variance` must be a steppedwedge.VarianceComponents; got "
                f"{type(point).__name__}."
            )
        if not draws:
            raise OptionError(
                "`variance` carries no draws (an estimate made without a bootstrap, "
                "n_boot=0): assurance over its uncertainty is not defined. Re-estimate with "
                "n_boot > 0, or pass `variance=estimate.variance` to average over an effect "
                "prior only."
            )
    elif isinstance(variance, Sequence) and not isinstance(variance, str):
        point, draws = None, tuple(variance)
        if not draws:
            raise OptionError("`variance` is an empty sequence of draws; give at least one.")
    else:
        raise TypeError(
            "`variance` must be a VarianceComponents, an estimate with `.variance` and "
            "`.draws` (steppedwedge.estimate_variance) or a sequence of VarianceComponents "
            f"draws; got {type(variance).__name__}."
        )
    for k, vc in enumerate(draws):
        if not isinstance(vc, VarianceComponents):
            raise TypeError(
                f"draw {k} of `variance` must be a VarianceComponents; got {type(vc).__name__}."
            )
    scales = {vc.decay_scale for vc in draws} | ({point.decay_scale} if point else set())
    if len(scales) > 1:
        raise OptionError(
            "the draws of `variance` mix decay_scale='period' and 'time'; convert them to one "
            "scale (e.g. EstimatedVariance.for_period) first."
        )
    return point, draws


def _effects(effect: Any, n_default: int, gen: np.random.Generator) -> tuple[str, np.ndarray]:
    """Classify ``effect``: ("fixed", scalar), ("grid", values) or ("draws", values)."""
    if hasattr(effect, "rvs") and callable(effect.rvs):
        return "draws", np.asarray(effect.rvs(size=n_default, random_state=gen), dtype=float)
    arr = np.asarray(effect, dtype=float)
    if arr.ndim == 0:
        return "fixed", arr.reshape(1)
    if arr.ndim == 1 and arr.size >= 1:
        return "grid", arr
    raise OptionError("`effect` must be a scalar, a 1-D grid or a distribution (with `.rvs`).")


def _spec(
    design: Design, effect: float, vc: VarianceComponents, cluster_size: Any, opts: dict[str, Any]
) -> _Spec:
    unknown = (
        set(opts) - set(_POWER_OPTIONS) - {"family", "baseline", "exposure", "dispersion", "alpha"}
    )
    if unknown:
        raise OptionError(
            f"unknown option(s) {sorted(unknown)} for assurance with `variance=`; it takes "
            f"family, baseline, exposure, dispersion and {', '.join(_POWER_OPTIONS)}."
        )
    return _power_iv(design, effect, vc, cluster_size, **opts)


def _drawn_components(draws: tuple[VarianceComponents, ...]) -> dict[str, np.ndarray]:
    """Return the drawn values of each component that varies over the draws (and ``tau2``)."""
    out: dict[str, np.ndarray] = {}
    for name in _COMPONENTS:
        vals = np.array(
            [np.nan if getattr(vc, name) is None else float(getattr(vc, name)) for vc in draws]
        )
        varies = not np.array_equal(vals, np.full_like(vals, vals[0]), equal_nan=True)
        if name == "tau2" or varies:
            out[name] = vals
    return out


def _jobs(kind: str, eff: np.ndarray, n_var: int) -> tuple[np.ndarray, np.ndarray]:
    """(effect, draw index) of every power evaluation, grid-major."""
    k = max(n_var, 1)
    if kind == "draws":
        return eff, (np.arange(n_var) if n_var else np.zeros(eff.size, np.int64))
    return np.repeat(eff, k), np.tile(np.arange(k), eff.size)


def _validated_spec(
    design: Design,
    eff: np.ndarray,
    components: tuple[VarianceComponents, ...],
    cluster_size: Any,
    options: dict[str, Any],
) -> _Spec:
    spec = _spec(design, float(eff[0]), components[0], cluster_size, options)
    for k, vc in enumerate(components):
        try:
            _check_sigma2(vc, spec.family, spec.link, spec.analysis, spec.binary_variance)
        except OptionError as exc:
            raise OptionError(f"draw {k} of `variance`: {exc}") from None
    for e in np.unique(eff):
        _check_means(dataclasses.replace(spec, effect=float(e)))
    return spec


def components_assurance(
    design: Design,
    *,
    effect: Any,
    variance: Any,
    cluster_size: Any,
    probabilities: Any,
    n_draws: int,
    gen: np.random.Generator,
    alpha: float,
    options: dict[str, Any],
) -> dict[str, Any]:
    """Return the fields of an :class:`~steppedwedge.AssuranceResult` (see ``assurance``)."""
    point, draws = resolve_draws(variance)
    n_var = len(draws)
    kind, eff = _effects(effect, n_var or check_positive_int("n_draws", n_draws), gen)
    probabilities = dict(probabilities or {})
    if set(probabilities) - ({"effect"} if kind == "grid" else set()):
        raise OptionError(
            "`probabilities` takes only 'effect', and only when `effect` is a grid; got "
            f"{sorted(probabilities)}."
        )
    prob = np.ones(())
    if kind == "grid":
        w = np.asarray(probabilities.get("effect", np.ones(eff.size)), dtype=float)
        if w.shape != eff.shape or np.any(w < 0) or w.sum() <= 0:
            raise OptionError(f"`probabilities['effect']` must be {eff.size} weights >= 0.")
        prob = w / w.sum()
    components = draws if n_var else (point,)
    assert all(vc is not None for vc in components)
    vcs: tuple[VarianceComponents, ...] = components  # type: ignore[assignment]
    spec = _validated_spec(design, eff, vcs, cluster_size, {**options, "alpha": alpha})
    # the contrast's estimability is a property of the design: checked once, unbatched
    reference = _compute(dataclasses.replace(spec, variance=point or vcs[0]))
    effects, index = _jobs(kind, eff, n_var)
    p2, _ = batched_power(spec, vcs, effects, index)
    grid: dict[str, np.ndarray] = {"effect": eff} if kind == "grid" else {}
    drawn = _drawn_components(draws) if n_var else {}
    if kind == "draws":
        drawn["effect"] = eff
    if kind == "grid":
        shape: tuple[int, ...] = (eff.size, n_var) if n_var else (eff.size,)
    else:
        shape = (effects.size,) if drawn else ()
    pw: np.ndarray = p2.reshape(shape)
    over_draws = pw.mean(axis=-1) if drawn else pw
    mc_se = None
    n_mc = int(shape[-1]) if drawn else 0
    if n_mc > 1:
        per_draw = (pw * prob[..., None]).reshape(-1, n_mc).sum(axis=0)
        mc_se = float(per_draw.std(ddof=1) / np.sqrt(n_mc))
    return dict(
        assurance=float((over_draws * prob).sum()),
        power=pw,
        grid=grid,
        probabilities=prob,
        draws=drawn,
        mc_std_error=mc_se,
        point_power=reference.power if point is not None and kind == "fixed" else None,
        family=spec.family,
    )
