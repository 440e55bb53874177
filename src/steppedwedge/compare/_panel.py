"""The sensitivity panel of :func:`compare_analyses`: which alternatives, and how each is fitted.

Each entry of :data:`ANALYSES` names one alternative analysis of the same trial, what it
assumes, and a builder ``(context) -> result``.  Adding an alternative is one entry here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..exceptions import OptionError, SteppedWedgeError

__all__ = ["ANALYSES", "Context", "run_analysis"]


@dataclass(frozen=True)
class Context:
    """What every builder needs: the data, roles, the primary fit options, randomisation."""

    data: pd.DataFrame
    roles: dict[str, Any]
    primary: dict[str, Any]
    allocation: Any = None
    n_permutations: int = 999
    rng: Any = None
    notes: list[str] = field(default_factory=list)


def _fit(ctx: Context, **options: Any) -> Any:
    from ..models.fit import fit

    return fit(ctx.data, **ctx.roles, **options)


def _primary(ctx: Context) -> Any:
    return _fit(ctx, **ctx.primary)


def _robust(ctx: Context) -> Any:
    return _fit(ctx, **{**ctx.primary, "vcov": "cr2"})


def _eti(ctx: Context) -> Any:
    return _fit(ctx, **{**ctx.primary, "effect": "eti"})


def _other_random(primary: dict[str, Any]) -> str:
    random = str(primary.get("random", "nested"))
    return "nested" if "decay" in random else "nested+decay"


def _decay(ctx: Context) -> Any:
    return _fit(ctx, **{**ctx.primary, "random": _other_random(ctx.primary)})


def _family(ctx: Context) -> dict[str, Any]:
    keys = ("family", "link")
    return {k: ctx.primary[k] for k in keys if k in ctx.primary}


def _gee(ctx: Context) -> Any:
    try:
        return _fit(ctx, **_family(ctx), method="gee")
    except SteppedWedgeError as exc:
        ctx.notes.append(f"GEE with categorical period effects not estimable ({exc}); linear time.")
        return _fit(ctx, **_family(ctx), method="gee", time="linear")


def _method(name: str) -> Callable[[Context], Any]:
    def build(ctx: Context) -> Any:
        return _fit(ctx, **_family(ctx), method=name)

    return build


def _randomisation(ctx: Context) -> Any:
    from ..inference.permutation import permutation_test

    roles = {k: v for k, v in ctx.roles.items() if k not in ("period_order", "missing")}
    return permutation_test(
        ctx.data,
        **roles,
        **_family(ctx),
        allocation=ctx.allocation,
        statistic="twfe",
        n_permutations=ctx.n_permutations,
        rng=ctx.rng,
    )


@dataclass(frozen=True)
class Analysis:
    """One alternative: its row label, what it assumes and how to fit it."""

    label: str
    assumes: str
    build: Callable[[Context], Any]


#: The panel, in the order of the table.  ``"vertical"`` needs ``sw.fit(method="vertical")``.
ANALYSES: dict[str, Analysis] = {
    "primary": Analysis(
        "primary analysis",
        "the pre-specified model: its random effects describe the correlation; constant "
        "immediate effect",
        _primary,
    ),
    "robust": Analysis(
        "primary, CR2 variance",
        "same estimate; standard error robust to a wrong correlation model",
        _robust,
    ),
    "eti": Analysis(
        "exposure-time indicators (TATE)",
        "effect may change with time since the start; averaged over exposure times",
        _eti,
    ),
    "decay": Analysis(
        "other random-effect structure",
        "nested (exchangeable) against decaying cluster-period correlation",
        _decay,
    ),
    "gee": Analysis(
        "GEE, MD-corrected",
        "marginal model; working correlation; small-sample sandwich",
        _gee,
    ),
    "fixed-effects": Analysis(
        "cluster fixed effects, CR2",
        "cluster and period fixed effects; CR2 sandwich with Satterthwaite df",
        _method("fixed-effects"),
    ),
    "cluster-summary": Analysis(
        "cluster-period summaries",
        "one summary per cluster-period; CR2 errors clustered by cluster",
        _method("cluster-summary"),
    ),
    "randomisation": Analysis(
        "randomisation test (twfe)",
        "no distributional model; the trial's allocation space (p-value under no effect)",
        _randomisation,
    ),
    "callaway-santanna": Analysis(
        "Callaway-Sant'Anna DiD",
        "not-yet-treated comparisons only (no forbidden comparisons); effects may vary by "
        "cohort and period; log of cell rates for counts",
        _method("callaway-santanna"),
    ),
    "imputation": Analysis(
        "imputation (Borusyak et al.)",
        "cluster and period effects fitted on untreated cells; effects may vary",
        _method("imputation"),
    ),
    "vertical": Analysis(
        "vertical (within-period)",
        "only comparisons within a period; no model of time",
        _method("vertical"),
    ),
}


def run_analysis(name: str, ctx: Context) -> tuple[Any | None, list[str], str | None]:
    """Fit one alternative: ``(result or None, warnings seen, error message or None)``.

    Warnings are recorded (and reported in the comparison's notes), never lost; an analysis
    that cannot be fitted to these data gives its error message instead of a result.
    """
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            result = ANALYSES[name].build(ctx)
            error = None
        except OptionError as exc:
            result, error = None, f"OptionError: {exc}"
            if f"got {name!r}" in str(exc):  # sw.fit has no such method in this version
                error = f"not available: sw.fit(method={name!r}) is not in this version"
        except (SteppedWedgeError, ValueError, TypeError) as exc:
            result, error = None, f"{type(exc).__name__}: {exc}"
    messages = sorted({str(w.message) for w in seen})
    return result, messages, error
