"""Sample size: the power justification, and the planning assumptions against the estimates."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...design import Design
from ..analyses import RATIO_FAMILIES, AnalysisRun, variance_label
from ..config import PowerSpec, TrialConfig
from ..document import Callout, Code, Paragraph, Section, Strong, table_from_records
from ..figures import INTERVENTION, draw
from ..formatting import fmt_ci, fmt_df, fmt_num, fmt_ratio, fmt_short

__all__ = ["planning_comparison", "power_kwargs", "power_section"]

#: An achieved standard error this many times the planned one (or its inverse) is commented.
SE_RATIO_COMMENT = 1.25


def power_kwargs(config: TrialConfig, spec: PowerSpec) -> dict[str, Any]:
    """Arguments of ``sw.power`` for the planned analysis (without ``variance``)."""
    kwargs: dict[str, Any] = dict(
        cluster_size=spec.cluster_size, family=spec.family, alpha=spec.alpha
    )
    if spec.baseline is not None:
        kwargs["baseline"] = spec.baseline
    if spec.dispersion is not None:
        kwargs["dispersion"] = spec.dispersion
    if spec.family in RATIO_FAMILIES:
        # the GLMM the report runs tests with t on I - 2 df (sw.fit's dof="clusters")
        kwargs["dof"] = float(config.n_clusters - 2)
    if spec.exposure_column is not None:
        # every slot gets the mean exposure: before randomisation a slot is not a council yet
        kwargs["exposure"] = float(config.clusters[spec.exposure_column].mean())
    return kwargs


def _planned_components(spec: PowerSpec) -> Any:
    from ...variance import VarianceComponents

    return VarianceComponents(
        sigma2=spec.sigma2, tau2=spec.tau2, gamma2=spec.gamma2, decay=spec.decay
    )


def power_section(config: TrialConfig, template: Design) -> tuple[Section, Any] | None:
    """Compute the power of the planned design and its curve over the effect (CONSORT-SW 7a)."""
    spec = config.power
    if spec is None:
        return None
    from ...planning import power as analytic_power
    from ...planning import power_curve

    vc = _planned_components(spec)
    kwargs = power_kwargs(config, spec)
    res = analytic_power(template, effect=spec.effect, variance=vc, **kwargs)
    ratio = spec.family in RATIO_FAMILIES
    effects = np.linspace(spec.effect * 0.25, spec.effect * 1.75, 13)
    curve = power_curve(template, vary="effect", values=effects, variance=vc, **kwargs)
    xs = np.exp(effects) if ratio else effects
    xlabel = "rate ratio" if ratio else "effect"

    fig = _curve_figure(xs, np.asarray(curve.power), xlabel)
    table = _inputs_table(spec, vc, kwargs, res, xlabel, float(xs[6]))
    values = {
        "power": float(res.power),
        "std_error": float(res.std_error),
        "effect": float(spec.effect),
        "alpha": float(spec.alpha),
        "tau2": float(vc.tau2),
        "gamma2": float(vc.gamma2),
        "decay": vc.decay,
        "dof": kwargs.get("dof"),
        "exposure": kwargs.get("exposure"),
        "curve": {"effect": effects.tolist(), "power": np.asarray(curve.power).tolist()},
    }
    random = config.analysis.random if config.analysis is not None else None
    text = Paragraph(
        (
            f"Planned analysis: {spec.family} mixed model",
            *((" with random structure ", Code(random)) if random else ()),
            f", t test on {fmt_df(kwargs['dof'])} df" if "dof" in kwargs else "",
            f", two-sided alpha {fmt_short(spec.alpha)}. ",
            Strong(f"Power {fmt_num(res.power)}"),
            f" to detect a {xlabel} of {fmt_short(xs[6])} (standard error "
            f"{fmt_num(res.std_error)} on the link scale).",
        )
    )
    source = Paragraph((spec.variance_source,))
    values["variance_source"] = spec.variance_source
    sec = Section(
        "sample_size",
        "Sample size",
        (text, source, table, fig),
        values,
        ("7a sample size with the assumed correlation structure",),
    )
    return sec, res


def _curve_figure(xs: np.ndarray, power: np.ndarray, xlabel: str) -> Any:
    def paint(fig: Any) -> None:
        ax = fig.subplots()
        ax.plot(xs, power, marker="o", ms=3.5, color=INTERVENTION)
        ax.axhline(0.8, color="#888", lw=0.8, ls="--")
        ax.axvline(xs[6], color="#b03a2e", lw=0.8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("power")
        ax.set_ylim(0, 1.02)

    return draw(
        "power_curve",
        f"Power of the planned design over the size of the effect (red line: the planned "
        f"{xlabel} {fmt_short(xs[6])}; dashed: 80%).",
        paint,
        size=(6.0, 3.2),
    )


def _short_or_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "none" if value is None else fmt_short(value)


def _inputs_table(
    spec: PowerSpec, vc: Any, kwargs: dict[str, Any], res: Any, xlabel: str, planned: float
) -> Any:
    rows: list[dict[str, Any]] = [
        {"quantity": "family", "value": spec.family},
        {"quantity": f"planned effect ({xlabel})", "value": planned},
        {"quantity": "baseline", "value": spec.baseline},
        {"quantity": "two-sided alpha", "value": spec.alpha},
        {"quantity": "between-cluster variance tau2", "value": vc.tau2},
        {"quantity": "cluster-period variance gamma2", "value": vc.gamma2},
        {"quantity": "decay per period", "value": vc.decay},
        {"quantity": "degrees of freedom", "value": kwargs.get("dof")},
        {"quantity": "standard error of the estimator", "value": res.std_error},
        {"quantity": "power", "value": res.power},
    ]
    if "exposure" in kwargs:
        label = f"mean {spec.exposure_column} per cluster-period"
        rows.insert(3, {"quantity": label, "value": kwargs["exposure"]})
    return table_from_records(
        "inputs",
        [{"quantity": r["quantity"], "value": _clean_value(r["value"])} for r in rows],
        {"value": _short_or_text},
        "Inputs of the sample-size calculation",
    )


def _clean_value(value: Any) -> Any:
    return float(value) if isinstance(value, (int, float, np.floating)) else value


def planning_comparison(
    config: TrialConfig, template: Design, planned: Any, run: AnalysisRun
) -> Section | None:
    """Planning assumptions against the estimates of the fitted primary model (7a, 17a)."""
    spec = config.power
    if spec is None:
        return None
    from ...planning import power as analytic_power
    from ...variance import VarianceComponents

    prim = run.primary
    est = dict(prim.variance_components)
    rows = _component_rows(prim, _planned_components(spec))
    t2, g2 = float(est.get("tau2", 0.0)), float(est.get("gamma2", 0.0))
    cac_est = rows[3]["estimate"]
    fitted = VarianceComponents(sigma2=spec.sigma2, tau2=t2, gamma2=g2, decay=est.get("decay"))
    achieved = analytic_power(
        template, effect=spec.effect, variance=fitted, **power_kwargs(config, spec)
    )
    se_ratio = float(prim.std_error) / float(planned.std_error)
    table = _components_table(rows)
    blocks: list[Paragraph | Callout] = [
        Paragraph(
            (
                f"Standard error of the treatment effect: planned {fmt_num(planned.std_error)}, "
                f"achieved {fmt_num(prim.std_error)} ({variance_label(prim)})"
                + (
                    f" and {fmt_num(run.companion.std_error)} ({run.companion_label})"
                    if run.companion is not None
                    else ""
                )
                + f"; ratio achieved / planned {fmt_ratio(se_ratio)}. Power at the planned "
                f"effect with the fitted variance components: {fmt_num(achieved.power)} "
                f"(planned {fmt_num(planned.power)}).",
            )
        )
    ]
    comment = _se_comment(se_ratio, rows, planned, achieved)
    if comment:
        blocks.append(Callout((comment,), "warning"))
    values = {
        "planned_std_error": float(planned.std_error),
        "achieved_std_error": float(prim.std_error),
        "achieved_std_error_companion": (
            None if run.companion is None else float(run.companion.std_error)
        ),
        "se_ratio": se_ratio,
        "planned_power": float(planned.power),
        "achieved_power": float(achieved.power),
        "cac_estimate": cac_est,
    }
    return Section(
        "planning",
        "Planning assumptions and estimates",
        (blocks[0], table, *blocks[1:]),
        values,
        ("7a assumed correlation structure", "17a estimated ICC/CAC and variance components"),
    )


def _component_rows(prim: Any, assumed: Any) -> list[dict[str, Any]]:
    """Assumed and estimated tau2, gamma2, decay (with Wald intervals) and the CAC."""
    est = dict(prim.variance_components)
    intervals = dict(getattr(prim, "variance_intervals", {}) or {})
    rows = []
    for key, label in (
        ("tau2", "between-cluster variance tau2"),
        ("gamma2", "cluster-period variance gamma2"),
        ("decay", "decay of the cluster-period effect, per period"),
    ):
        e, lo, hi = intervals.get(key, (est.get(key, np.nan), np.nan, np.nan))
        rows.append(
            {
                "key": key,
                "quantity": label,
                "assumed": getattr(assumed, key),
                "estimate": e,
                "low": lo,
                "high": hi,
            }
        )
    t2, g2 = float(est.get("tau2", 0.0)), float(est.get("gamma2", 0.0))
    # GLMM fits give the CAC a delta-method Wald interval on the logit scale (their
    # ``correlations``); the LMM's is a point estimate only
    cac = dict(getattr(prim, "correlations", {}) or {}).get("cac")
    c_est = t2 / (t2 + g2) if t2 + g2 > 0 else np.nan
    c_lo, c_hi = (cac[1], cac[2]) if cac is not None else (np.nan, np.nan)
    rows.append(
        {
            "key": "cac",
            "quantity": "cluster autocorrelation CAC = tau2 / (tau2 + gamma2)"
            + ("" if cac is not None else ", no interval"),
            "assumed": assumed.cac if assumed.tau2 + assumed.gamma2 > 0 else np.nan,
            "estimate": c_est,
            "low": c_lo,
            "high": c_hi,
        }
    )
    if "sigma2" in est:  # Gaussian: the within-period ICC on the outcome scale
        s2 = float(est["sigma2"])
        rows.append(
            {
                "key": "icc",
                "quantity": "ICC = (tau2 + gamma2) / (tau2 + gamma2 + sigma2), no interval",
                "assumed": assumed.icc,
                "estimate": (t2 + g2) / (t2 + g2 + s2),
                "low": np.nan,
                "high": np.nan,
            }
        )
    return rows


def _components_table(rows: list[dict[str, Any]]) -> Any:
    return table_from_records(
        "components",
        [
            {
                "quantity": r["quantity"],
                "assumed at planning": r["assumed"],
                "estimated (95% CI)": fmt_ci(r["estimate"], r["low"], r["high"], decimals=3),
                "estimate": r["estimate"],
                "low": r["low"],
                "high": r["high"],
            }
            for r in rows
        ],
        {"assumed at planning": fmt_num},
        "Variance components: planning values and the primary model's estimates"
        + (
            " on the link scale (Wald intervals from the Laplace likelihood)"
            if any(np.isfinite(r["low"]) for r in rows)
            else ""
        ),
        hidden=("estimate", "low", "high"),
    )


def _se_comment(se_ratio: float, rows: list[dict[str, Any]], planned: Any, achieved: Any) -> str:
    if 1 / SE_RATIO_COMMENT <= se_ratio <= SE_RATIO_COMMENT:
        return ""
    direction = "larger" if se_ratio > 1 else "smaller"
    far = [
        r["key"]
        for r in rows[:3]
        if r["assumed"] is not None
        and np.isfinite(r["assumed"])
        and np.isfinite(r["low"])
        and not (r["low"] <= r["assumed"] <= r["high"])
    ]
    reason = (
        f" The assumed {', '.join(far)} lie outside the 95% intervals of the estimates."
        if far
        else " The estimated components are compatible with the assumed ones, so the "
        "difference comes from the data (cluster sizes, events) or the model."
    )
    return (
        f"The achieved standard error is {fmt_ratio(se_ratio)} times the planned one "
        f"({direction}): the trial was {'less' if se_ratio > 1 else 'more'} precise than "
        f"planned, and its power at the planned effect was {fmt_num(achieved.power)} rather "
        f"than {fmt_num(planned.power)}." + reason
    )
