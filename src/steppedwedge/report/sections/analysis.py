"""The analysis sections: primary analysis, sensitivity panel, model checks."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ...plotting.forest import plot_forest
from ..analyses import AnalysisRun, variance_label
from ..document import BulletList, Callout, Code, Paragraph, Section, Strong, table_from_records
from ..figures import draw, plot_lag_correlation
from ..formatting import fmt_ci, fmt_df, fmt_num, fmt_p
from ..observed import CellData, lag_correlation

__all__ = [
    "checks_section",
    "effect_record",
    "effect_text",
    "primary_section",
    "sensitivity_section",
]

_METHODS = {
    "laplace": "maximum likelihood (Laplace approximation)",
    "agq": "maximum likelihood (adaptive Gauss-Hermite quadrature)",
    "reml": "REML",
    "ml": "maximum likelihood",
}


def _link(run: AnalysisRun) -> str:
    return "estimate (link scale)" if run.ratio else "estimate"


def _five(value: Any) -> str:
    """Format a log-likelihood or AIC to one decimal (differences of 1 matter)."""
    return fmt_ci(value, None, None, decimals=1)


def _scale(run: AnalysisRun, x: float) -> float:
    return float(np.exp(x)) if run.ratio else float(x)


def effect_record(
    run: AnalysisRun,
    row: Mapping[Hashable, Any],
    relies_on: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One analysis of a panel of effects as a table record (reported scale).

    Columns in order: the analysis (``row["model"]``), the estimate with its 95% CI as text,
    ``p``, the ``extra`` columns, ``relies on``, then the hidden ``estimate``, ``low`` and
    ``high`` that the forest plot and the JSON record use.
    """
    est, lo, hi = (_scale(run, float(row[k])) for k in ("estimate", "conf_low", "conf_high"))
    record: dict[str, Any] = {
        "analysis": str(row["model"]),
        f"{run.label} (95% CI)": fmt_ci(est, lo, hi),
        "p": float(row["p_value"]),
    }
    record.update(extra or {})
    record.update({"relies on": relies_on, "estimate": est, "low": lo, "high": hi})
    return record


def _ci(res: Any) -> tuple[float, float]:
    """95% confidence limits of the estimand (link scale) from the result's tidy table."""
    tidy = res.tidy()
    hit = tidy[tidy["term"] == getattr(res, "estimand", None)]
    row = hit.iloc[0] if len(hit) else tidy.iloc[0]
    return float(row["conf_low"]), float(row["conf_high"])


def effect_text(run: AnalysisRun, res: Any) -> str:
    """``rate ratio 0.87 (95% CI 0.79 to 0.96), p = 0.009``."""
    lo, hi = _ci(res)
    ci = fmt_ci(_scale(run, res.estimate), _scale(run, lo), _scale(run, hi))
    est, rest = ci.split(" ", 1) if " " in ci else (ci, "")
    p = fmt_p(res.pvalue)
    return (
        f"{run.label} {est} (95% CI {rest.strip('()')}), p {'' if p.startswith('<') else '= '}{p}"
    )


def _estimand_words(run: AnalysisRun, offset: str | None) -> str:
    prim = run.primary
    if run.ratio:
        what = {"rate ratio": "rate", "odds ratio": "odds"}[run.label]
        per = f" per unit of {offset}" if offset else ""
        marginal = (
            " With a log link this conditional ratio is also the population-averaged one."
            if getattr(prim, "link", "") == "log"
            else " With a logit link it is a cluster-specific (conditional) odds ratio."
        )
        base = (
            f"the ratio of the outcome {what}{per} in a cluster-period on the intervention "
            f"to the {what} the same cluster would have had under control in the same period, "
            "assumed the same in every period and at every time since the start."
        )
        return base[0].upper() + base[1:] + marginal
    return (
        "The difference in the mean outcome between a cluster-period on the intervention "
        "and the same cluster under control in the same period, assumed the same in every "
        "period and at every time since the start."
    )


def primary_section(run: AnalysisRun, offset: str | None, disagree: str | None) -> Section:
    """Estimate, CI, small-sample df, method and estimand of the primary analysis (12a, 17a)."""
    prim = run.primary
    fits = [(variance_label(prim), prim)] + (
        [(run.companion_label, run.companion)] if run.companion is not None else []
    )
    effect_rows = []
    for name, res in fits:
        lo, hi = _ci(res)
        effect_rows.append(
            {
                "variance": name,
                f"{run.label} (95% CI)": fmt_ci(
                    _scale(run, res.estimate), _scale(run, lo), _scale(run, hi)
                ),
                _link(run): float(res.estimate),
                "standard error": float(res.std_error),
                "df": float(res.df),
                "p": float(res.pvalue),
                "ratio": _scale(run, res.estimate),
                "low": _scale(run, lo),
                "high": _scale(run, hi),
            }
        )
    table = table_from_records(
        "effect",
        effect_rows,
        {_link(run): fmt_num, "standard error": fmt_num, "df": fmt_df, "p": fmt_p},
        "Treatment effect of the primary analysis",
        hidden=("ratio", "low", "high"),
    )
    method = Paragraph(
        (
            "Method: ",
            f"{run.family} generalised linear mixed model" if run.ratio else "linear mixed model",
            " with random structure ",
            Code(run.random),
            ", categorical period effects",
            f" and log {offset} as offset" if offset else "",
            f", fitted by {_METHODS.get(str(prim.method), str(prim.method))}; t test on "
            f"{fmt_df(prim.df)} degrees of freedom (",
            str(prim.dof).split(":")[0],
            "). ",
            Strong("Estimand: "),
            _estimand_words(run, offset),
        )
    )
    headline = effect_text(run, prim)
    result = Paragraph((Strong(headline[0].upper() + headline[1:]), f" ({variance_label(prim)})."))
    period_table = _period_effects(run)
    blocks: list[Any] = [method, result]
    if disagree:
        blocks.append(Callout((disagree,), "warning"))
    blocks += [table, period_table]
    values = {"estimates": effect_rows, "variance_components": dict(prim.variance_components)}
    return Section(
        "primary",
        "Primary analysis",
        tuple(blocks),
        values,
        ("12a statistical methods", "17a effect estimate, precision and time effects"),
    )


def _period_effects(run: AnalysisRun) -> Any:
    tidy = run.primary.tidy()
    rows = tidy[tidy["term"].astype(str).str.startswith("period[")]
    records = [
        {
            "period": str(r.term)[len("period[") : -1],
            f"{'ratio' if run.ratio else 'difference'} to the first period (95% CI)": fmt_ci(
                _scale(run, r.estimate), _scale(run, r.conf_low), _scale(run, r.conf_high)
            ),
            _link(run): float(r.estimate),
            "standard error": float(r.std_error),
        }
        for r in rows.itertuples()
    ]
    return table_from_records(
        "period_effects",
        records,
        {_link(run): fmt_num, "standard error": fmt_num},
        "Period (secular time) effects of the primary analysis",
    )


def sensitivity_section(run: AnalysisRun, panel: pd.DataFrame) -> Section:
    """Build the sensitivity panel and its forest plot (CONSORT-SW 12b, 18)."""
    records: list[dict[str, Any]] = []
    for r in panel.to_dict("records"):
        relies_on = run.assumptions.get(str(r["model"]), "")
        record = effect_record(run, r, relies_on, {"df": float(r["df"])})
        record["std_error"] = float(r["std_error"])
        records.append(record)
    table = table_from_records(
        "panel",
        records,
        {"p": fmt_p, "df": fmt_df},
        "The treatment effect by analysis",
        hidden=("estimate", "low", "high", "std_error"),
    )
    fig = draw(
        "forest",
        f"Forest plot of the {run.label if run.ratio else 'effect'} and 95% CI by analysis "
        "(first row, in bold: the primary analysis; dotted line at its estimate).",
        lambda f: plot_forest(
            panel,
            ax=f.subplots(),
            ratio=run.ratio,
            label=f"{run.label} (log scale)" if run.ratio else "effect",
            primary=0,
        ),
        size=(7.0, 0.45 * len(records) + 1.0),
    )
    blocks: list[Any] = [
        Paragraph(
            (
                "The same treatment effect estimated by methods with different assumptions. "
                "The mixed model's standard error is right only if its random effects describe "
                "the correlation over time; the others do not rely on that.",
            )
        ),
        fig,
        table,
    ]
    if run.notes:
        blocks.append(Paragraph(("Notes from the fits:",)))
        blocks.append(BulletList(tuple((n,) for n in run.notes)))
    return Section(
        "sensitivity",
        "Sensitivity analyses",
        tuple(blocks),
        {"panel": records, "notes": list(run.notes)},
        ("12b sensitivity analyses",),
    )


def checks_section(run: AnalysisRun, cd: CellData) -> Section:
    """Random-effect structures compared and residual correlation by lag (12a)."""
    blocks: list[Any] = []
    values: dict[str, Any] = {}
    if run.comparison:
        best = min(run.comparison, key=lambda r: r["aic"])["random"]
        recs = [
            {
                "random structure": r["random"],
                "log-likelihood": r["loglik"],
                "parameters": r["parameters"],
                "AIC": r["aic"],
                "decay": r["decay"],
                run.label: _scale(run, r["estimate"]),
                "p": r["p_value"],
            }
            for r in run.comparison
        ]
        blocks.append(
            Paragraph(
                (
                    "Random-effect structures compared (Laplace log-likelihoods of the same "
                    "fixed effects; AIC = -2 log-likelihood + 2 parameters). Lowest AIC: ",
                    Code(best),
                    "; the primary analysis is the pre-specified one whatever the comparison "
                    "shows.",
                )
            )
        )
        fm: dict[str, Callable[[Any], str]] = {
            "log-likelihood": _five,
            "AIC": _five,
            "decay": fmt_num,
            run.label: fmt_num,
            "p": fmt_p,
        }
        blocks.append(table_from_records("structures", recs, fm, "Random-effect structures"))
        values["lowest_aic"] = best
        values["structures"] = run.comparison
    lag_blocks, lags = _lag_blocks(run, cd)
    blocks += lag_blocks
    values["lag_correlation"] = lags
    return Section("checks", "Model checks", tuple(blocks), values, ("12a correlation structure",))


def _lag_blocks(run: AnalysisRun, cd: CellData) -> tuple[list[Any], dict[str, list[Any]]]:
    """Residual correlation by lag against the primary model's (paragraph, figure, table)."""
    prim = run.primary
    comps = dict(prim.variance_components)
    noise = (
        float(np.mean(1.0 / (cd.cells["events"] + 0.5)))
        if run.ratio
        else float(comps.get("sigma2", 0.0) / max(float(cd.cells["rows"].mean()), 1.0))
    )
    if getattr(prim, "dispersion", None):
        noise += 1.0 / float(prim.dispersion)
    lags = lag_correlation(
        cd.cells,
        log_scale=run.ratio,
        effect=float(prim.estimate),
        components=comps,
        noise=noise,
    )
    blocks: list[Any] = []
    if len(lags):
        blocks.append(
            Paragraph(
                (
                    "Residual autocorrelation: the correlation of a cluster's residual "
                    f"outcomes k periods apart ({'log rates' if run.ratio else 'means'} minus "
                    "the period mean over clusters and the fitted treatment effect) against "
                    "the correlation the primary model implies, with the sampling noise of a "
                    "cell included. A steady fall with the lag that the model does not follow "
                    "points to a missing decay term.",
                )
            )
        )
        blocks.append(
            draw(
                "lag_correlation",
                "Residual correlation by lag: observed and implied by the primary model.",
                lambda f: plot_lag_correlation(f, lags),
                size=(6.0, 3.0),
            )
        )
        blocks.append(
            table_from_records(
                "lags",
                [{str(k): v for k, v in r.items()} for r in lags.to_dict("records")],
                {"observed": fmt_num, "implied": fmt_num, "pairs": fmt_df},
                "Residual correlation by lag",
            )
        )
    return blocks, {str(k): v for k, v in lags.to_dict("list").items()}
