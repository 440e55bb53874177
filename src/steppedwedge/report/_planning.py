"""The ``[planning]`` table: variance components cited from an ``estimate_variance`` result.

Either a saved result (the JSON of ``EstimatedVariance.to_dict()``) or a small table naming
the panel to estimate from; optionally converted to the trial's period length
(``EstimatedVariance.for_period(months=...)``).  The components feed the power section and
the result's own description becomes the sentence that says where they come from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..exceptions import OptionError

__all__ = ["cited_variance"]


def _api() -> Any:
    import steppedwedge as sw

    if not hasattr(sw, "estimate_variance") or not hasattr(sw, "EstimatedVariance"):
        raise OptionError(
            "citing a variance estimate needs sw.estimate_variance, which this version of "
            "steppedwedge does not have; give tau2, gamma2 and decay in [power] instead"
        )
    return sw


def _estimate(table: Any, base: Path) -> Any:
    sw = _api()
    if isinstance(table, str):
        from ._loader import load_json

        path = base / table
        if not path.is_file():
            raise OptionError(f"no such file ({path})")
        return sw.EstimatedVariance.from_dict(load_json(path))
    if table.panel == "dfe":
        panel = sw.datasets.load_dfe_panel()
    else:
        from ._loader import read_csv_file

        panel = read_csv_file(base / table.panel, table.panel)
    kwargs: dict[str, Any] = dict(
        outcome=table.outcome,
        cluster=table.cluster,
        period=table.period,
        family=table.family,
        structure=table.structure,
    )
    if table.exposure is not None:
        kwargs["exposure"] = table.exposure
    if table.councils is not None:
        kwargs["councils"] = list(table.councils)
    return sw.estimate_variance(panel, **kwargs)


def _describe(estimate: Any) -> str:
    describe = getattr(estimate, "describe", None)
    if callable(describe):
        return str(describe())
    return str(getattr(estimate, "source", "an estimate_variance result"))


def cited_variance(planning: Any, base: Path) -> dict[str, Any]:
    """``tau2``, ``gamma2``, ``decay``, ``sigma2``, ``variance_source`` and ``estimate``."""
    estimate = _estimate(planning.variance, base)
    if planning.period_months is not None:
        estimate = estimate.for_period(planning.period_months, gamma2=planning.gamma2)
    vc = estimate.variance
    return {
        "tau2": float(vc.tau2),
        "gamma2": float(vc.gamma2),
        "decay": None if vc.decay is None else float(vc.decay),
        "sigma2": float(vc.sigma2),
        "variance_source": _describe(estimate),
        "estimate": estimate,
    }
