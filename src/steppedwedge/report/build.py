"""Assemble the trial report: Markdown and a self-contained HTML file.

The report is deterministic: the same configuration, data and library version give
byte-identical files (no timestamps; figures are rendered with fixed metadata).  Each
section is a small function returning a :class:`Section`; later sections (power, analyses)
plug into :func:`build_report` in the same way.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._version import __version__
from ..design import Design
from ..randomise import Allocation, randomise
from .config import TrialConfig

__all__ = ["Report", "Section", "build_report", "planned_design"]


@dataclass(frozen=True)
class Figure:
    """A PNG figure with a caption."""

    name: str
    png: bytes = field(repr=False)
    caption: str


@dataclass(frozen=True)
class Section:
    """One report section: a title, Markdown paragraphs/tables and figures."""

    title: str
    markdown: str
    figures: tuple[Figure, ...] = ()


@dataclass(frozen=True)
class Report:
    """A built report; :meth:`write` saves it to a folder."""

    title: str
    sections: tuple[Section, ...]
    allocation: Allocation
    design: Design

    def to_markdown(self) -> str:
        """Return the report as Markdown (figures referenced as PNG files beside it)."""
        out = [f"# {self.title}", ""]
        for sec in self.sections:
            out += [f"## {sec.title}", "", sec.markdown.rstrip(), ""]
            for fig in sec.figures:
                out += [f"![{fig.caption}]({fig.name}.png)", "", f"*{fig.caption}*", ""]
        return "\n".join(out)

    def to_html(self) -> str:
        """Return the report as one self-contained HTML page (figures embedded as data URIs)."""
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(self.title)}</title>",
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.45}"
            "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;"
            "padding:2px 6px;text-align:right}th{background:#f3f3f3}pre{background:#f7f7f7;"
            "padding:.6em;overflow-x:auto}img{max-width:100%}</style>",
            "</head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        for sec in self.sections:
            parts.append(f"<h2>{html.escape(sec.title)}</h2>")
            parts.append(_markdown_to_html(sec.markdown))
            for fig in sec.figures:
                data = base64.b64encode(fig.png).decode("ascii")
                parts.append(
                    f'<figure><img alt="{html.escape(fig.caption)}" '
                    f'src="data:image/png;base64,{data}"><figcaption>'
                    f"{html.escape(fig.caption)}</figcaption></figure>"
                )
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"

    def write(self, folder: str | Path) -> list[Path]:
        """Write ``report.md``, ``report.html``, the figures and the allocation record.

        Returns the paths written.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        for sec in self.sections:
            for fig in sec.figures:
                p = folder / f"{fig.name}.png"
                p.write_bytes(fig.png)
                written.append(p)
        files = {
            "report.md": self.to_markdown(),
            "report.html": self.to_html(),
            "allocation.json": self.allocation.to_json(include_admissible=False) + "\n",
            "allocation.csv": self.allocation.to_frame().to_csv(index=False, lineterminator="\n"),
            "design.csv": self.design.to_frame().to_csv(index=False, lineterminator="\n"),
        }
        for name, text in files.items():
            p = folder / name
            p.write_text(text, encoding="utf-8")
            written.append(p)
        return written


# ---------------------------------------------------------------------- helpers
def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _md_table(frame: pd.DataFrame, floatfmt: str = "{:.3g}") -> str:
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        cells = []
        for v in row:
            if isinstance(v, (float, np.floating)):
                cells.append("" if np.isnan(v) else floatfmt.format(v))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _markdown_to_html(text: str) -> str:
    """Render the small Markdown subset the report uses (paragraphs, tables, code, lists)."""
    out: list[str] = []
    blocks = text.strip().split("\n\n")
    for block in blocks:
        lines = block.split("\n")
        if block.startswith("```"):
            body = "\n".join(lines[1:-1] if lines[-1].startswith("```") else lines[1:])
            out.append(f"<pre>{html.escape(body)}</pre>")
        elif lines[0].startswith("|"):
            header = [c.strip() for c in lines[0].strip("|").split("|")]
            rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
            t = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
            for r in rows:
                t.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>")
            t.append("</table>")
            out.append("".join(t))
        elif all(ln.startswith("- ") for ln in lines):
            items = "".join(f"<li>{html.escape(ln[2:])}</li>" for ln in lines)
            out.append(f"<ul>{items}</ul>")
        else:
            out.append(f"<p>{html.escape(' '.join(lines))}</p>")
    return "\n".join(out)


def _hash_frame(frame: pd.DataFrame) -> str:
    text = frame.to_csv(index=False, lineterminator="\n")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------- sections
def planned_design(config: TrialConfig) -> Design:
    """Build the design template: one row per slot, from the wave start dates."""
    return Design.from_start_dates(
        config.slot_start_dates(),
        config.periods,
        transition=config.transition,  # type: ignore[arg-type]  # checked by from_start_dates
    )


def _first_treated(design: Design, sequence: int) -> str:
    members = np.flatnonzero(design.sequences == sequence)
    if members.size == 0 or design.start_period[members[0]] < 0:
        return "never"
    return str(design.periods[design.start_period[members[0]]])


def _design_section(template: Design, allocated: Design, config: TrialConfig) -> Section:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height = min(2.0 + 0.28 * allocated.n_clusters, 14.0)
    fig, ax = plt.subplots(figsize=(9.0, height))
    allocated.plot(ax=ax)
    png = _png(fig)
    n_waves = len(config.wave_starts)
    waves = pd.DataFrame(
        {
            "wave": range(1, len(config.wave_starts) + 1),
            "start date": list(config.wave_starts),
            "clusters": list(config.clusters_per_wave),
            "first treated period": [_first_treated(template, s) for s in range(n_waves)],
        }
    )
    md = "\n\n".join(
        [
            f"{allocated.n_clusters} clusters, {allocated.n_periods} periods "
            f"({allocated.periods[0]} to {allocated.periods[-1]}), {allocated.n_sequences} waves. "
            "Rule for a period containing a start date: "
            f"`{config.transition}` (see `Design.from_start_dates`).",
            _md_table(waves),
            "```\n" + allocated.summary() + "\n```",
        ]
    )
    return Section("Design", md, (Figure("design", png, "Stepped-wedge design diagram"),))


def _randomisation_section(allocation: Allocation) -> Section:
    frame = allocation.to_frame()
    md = "\n\n".join(
        [
            "The allocation below is reproduced exactly by re-running `steppedwedge.randomise` "
            "with the recorded seed and inputs (the input hash identifies them).",
            "```\n" + allocation.summary() + "\n```",
            _md_table(frame),
        ]
    )
    return Section("Randomisation", md)


def _descriptive_section(config: TrialConfig) -> Section | None:
    spec = config.data
    if spec is None:
        return None
    df = spec.frame
    grouped = df.groupby([spec.period, spec.treatment], sort=True)
    table = grouped[spec.outcome].agg(["count", "sum"]).reset_index()
    table.columns = [spec.period, spec.treatment, "clusters", f"total {spec.outcome}"]
    if spec.exposure is not None:
        expo = grouped[spec.exposure].sum().to_numpy(dtype=float)
        table[f"rate per 10,000 {spec.exposure}"] = 1e4 * table[f"total {spec.outcome}"] / expo
    wide = table.pivot(index=spec.period, columns=spec.treatment)
    wide.columns = [f"{a} ({'treated' if b == 1 else 'control'})" for a, b in wide.columns]
    wide = wide.reset_index()
    md = "\n\n".join(
        [
            f"Data: `{spec.source}` ({len(df)} rows, SHA-256 `{_hash_frame(df)[:16]}`). "
            f"Outcome `{spec.outcome}`"
            + (f" per exposure `{spec.exposure}`" if spec.exposure else "")
            + f", by period (`{spec.period}`) and arm (`{spec.treatment}`).",
            _md_table(wide, floatfmt="{:.4g}"),
        ]
    )
    return Section("Descriptive statistics", md)


def _figure(draw: Any, name: str, caption: str, size: tuple[float, float] = (7.0, 4.0)) -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    draw(ax)
    return Figure(name, _png(fig), caption)


def _power_section(config: TrialConfig, template: Design) -> Section | None:
    spec = config.power
    if spec is None:
        return None
    from ..power import power as analytic_power
    from ..power import power_curve
    from ..variance import VarianceComponents

    vc = VarianceComponents(
        sigma2=spec.sigma2, tau2=spec.tau2, gamma2=spec.gamma2, decay=spec.decay
    )
    kwargs: dict[str, Any] = dict(
        variance=vc,
        cluster_size=spec.cluster_size,
        family=spec.family,
        alpha=spec.alpha,
    )
    if spec.baseline is not None:
        kwargs["baseline"] = spec.baseline
    if spec.dispersion is not None:
        kwargs["dispersion"] = spec.dispersion
    if spec.family in _RATIO_FAMILIES:
        # the GLMM the report runs tests with t on I - 2 df (sw.fit's dof="clusters")
        kwargs["dof"] = float(config.n_clusters - 2)
    if spec.exposure_column is not None:
        # every slot gets the mean exposure: before randomisation the slot is not yet a
        # council; the expected power over allocations is shown by `expected_power`.
        mean_expo = float(config.clusters[spec.exposure_column].mean())
        kwargs["exposure"] = mean_expo
    res = analytic_power(template, effect=spec.effect, **kwargs)
    ratio = spec.family in ("poisson", "negative_binomial", "binomial")
    effects = np.linspace(spec.effect * 0.25, spec.effect * 1.75, 13)
    curve = power_curve(template, vary="effect", values=effects, **kwargs)

    def draw(ax: Any) -> None:
        xs = np.exp(effects) if ratio else effects
        ax.plot(xs, curve.power, marker="o", color="#1f5f8b")
        ax.axhline(0.8, color="grey", lw=0.8, ls="--")
        ax.axvline(np.exp(spec.effect) if ratio else spec.effect, color="#c0392b", lw=0.8)
        ax.set_xlabel("rate ratio" if ratio else "effect")
        ax.set_ylabel("power")
        ax.set_ylim(0, 1)
        ax.set_title("Power of the planned design")

    table = pd.DataFrame(
        {
            ("rate ratio" if ratio else "effect"): np.exp(effects) if ratio else effects,
            "power": curve.power,
        }
    )
    expo_text = (
        f" Counts are modelled with exposure `{spec.exposure_column}` "
        f"(mean {kwargs['exposure']:.0f} per cluster-period)."
        if "exposure" in kwargs
        else ""
    )
    md = "\n\n".join(
        [
            f"Planned analysis: {spec.family} mixed model"
            + (
                f" with random structure `{config.analysis.random}`"
                if config.analysis is not None
                else ""
            )
            + (f", t test with {kwargs['dof']:g} df" if "dof" in kwargs else "")
            + f", two-sided alpha {spec.alpha}. "
            f"Effect {spec.effect:.4g} on the link scale"
            + (f" (ratio {np.exp(spec.effect):.3f})" if ratio else "")
            + f"; baseline {spec.baseline}."
            + expo_text,
            (
                "Assumed variance components (link scale): "
                if spec.family != "gaussian"
                else "Assumed variance components: "
            )
            + f"between-cluster tau2 = {vc.tau2:.4g} (SD {np.sqrt(vc.tau2):.3g}), "
            + f"cluster-period gamma2 = {vc.gamma2:.4g} (SD {np.sqrt(vc.gamma2):.3g})"
            + (f" decaying by {vc.decay:.3g} per period" if vc.decay is not None else "")
            + (f", residual sigma2 = {vc.sigma2:.4g}" if spec.family == "gaussian" else "")
            + ".",
            f"**Power {res.power:.3f}** (standard error of the estimator {res.std_error:.4g}).",
            _md_table(table, floatfmt="{:.3f}"),
            "```\n" + str(res.summary()) + "\n```",
        ]
    )
    fig = _figure(lambda ax: draw(ax), "power_curve", "Power over the size of the effect")
    return Section("Power justification", md, (fig,))


_RATIO_FAMILIES = ("poisson", "negative_binomial", "binomial")
#: Random-effect structures compared for a GLMM primary analysis, simplest first.
_COMPARED = ("cluster", "nested", "decay", "nested+decay")


def _period_order(frame: pd.DataFrame, column: str, design: Design) -> list[str] | None:
    """Return the design's period order for text period labels (decay and linear time need it)."""
    col = frame[column]
    if pd.api.types.is_numeric_dtype(col) or isinstance(col.dtype, pd.PeriodDtype):
        return None
    labels = [str(p) for p in design.periods]
    present = set(col.astype(str))
    if not present <= set(labels):
        return None
    return [p for p in labels if p in present]


def _quiet_fit(notes: list[str], what: str, frame: pd.DataFrame, **kwargs: Any) -> Any:
    """``sw.fit`` with its warnings recorded as report notes instead of raised."""
    import warnings

    from ..models import fit

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fit(frame, **kwargs)
    for w in caught:
        first = str(w.message).splitlines()[0]
        notes.append(f"{what}: {first}")
    return res


def _model_comparison(
    frame: pd.DataFrame, family: str, fit_kw: dict[str, Any], notes: list[str]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Log-likelihood, AIC and decay of the cluster, nested, decay and nested+decay GLMMs."""
    rows, fits = [], {}
    for random in _COMPARED:
        try:
            res = _quiet_fit(
                notes, f"GLMM `{random}`", frame, family=family, random=random, **fit_kw
            )
        except ValueError as exc:
            notes.append(f"GLMM `{random}` not fitted: {str(exc).splitlines()[0]}")
            continue
        fits[random] = res
        vc = dict(res.variance_components)
        k = len(res.params) + len(vc)
        rows.append(
            {
                "random": random,
                "log-likelihood": float(res.loglik),
                "parameters": k,
                "AIC": -2.0 * float(res.loglik) + 2.0 * k,
                "decay": float(vc.get("decay", np.nan)),
                "ratio": float(np.exp(res.estimate)),
                "p_value": float(res.pvalue),
            }
        )
    return pd.DataFrame(rows), fits


def _significance_note(results: dict[str, Any], alpha: float) -> str | None:
    """Name the analyses on each side when they disagree about significance at ``alpha``."""
    sig: list[str] = []
    not_sig: list[str] = []
    for name, res in results.items():
        p = float(res.pvalue)
        if np.isfinite(p):
            (sig if p < alpha else not_sig).append(name)
    if not sig or not not_sig:
        return None
    return (
        f"**The analyses disagree about significance at alpha {alpha:g}.** "
        f"p < {alpha:g}: {'; '.join(sig)}. p >= {alpha:g}: {'; '.join(not_sig)}. "
        "Read the primary analysis with its sensitivity analyses below."
    )


def _effect_text(res: Any, ratio: bool, label: str) -> str:
    tidy = res.tidy(exponentiate=ratio) if ratio else res.tidy()
    row = tidy.iloc[0]
    if ratio:
        return (
            f"{label} {row['estimate']:.3f} (95% CI {row['conf_low']:.3f} to "
            f"{row['conf_high']:.3f}), p = {row['p_value']:.4f}"
        )
    return (
        f"effect {row['estimate']:.4g} (95% CI {row['conf_low']:.4g} to "
        f"{row['conf_high']:.4g}), p = {row['p_value']:.4f}"
    )


def _sensitivity_results(
    config: TrialConfig,
    allocation: Allocation,
    frame: pd.DataFrame,
    roles: dict[str, Any],
    notes: list[str],
) -> dict[str, Any]:
    from ..inference.permutation import permutation_test

    spec = config.analysis
    assert spec is not None
    results: dict[str, Any] = {}
    fam = spec.family
    for kind in spec.sensitivity:
        if kind == "fixed-effects":
            results["cluster fixed effects, CR2"] = _quiet_fit(
                notes, kind, frame, family=fam, method="fixed-effects", **roles
            )
        elif kind == "gee":
            try:
                results["GEE, MD-corrected"] = _quiet_fit(
                    notes, kind, frame, family=fam, method="gee", **roles
                )
            except ValueError as exc:
                notes.append(f"GEE with categorical period effects not estimable: {exc}")
                results["GEE, MD-corrected, linear time"] = _quiet_fit(
                    notes, kind, frame, family=fam, method="gee", time="linear", **roles
                )
        elif kind == "cluster-summary":
            results["cluster-period summaries"] = _quiet_fit(
                notes, kind, frame, family=fam, method="cluster-summary", **roles
            )
        elif kind == "permutation":
            perm_roles = {k: v for k, v in roles.items() if k != "period_order"}
            results["randomisation test"] = permutation_test(
                frame,
                family=fam,
                allocation=allocation,
                statistic="twfe",
                n_permutations=spec.n_permutations,
                rng=config.seed,
                **perm_roles,
            )
        else:
            notes.append(f"unknown sensitivity analysis {kind!r} skipped")
    return results


def _analysis_sections(
    config: TrialConfig, allocation: Allocation
) -> tuple[list[Section], str | None]:
    """Primary and sensitivity analyses, and the summary paragraph that opens the report."""
    spec, data = config.analysis, config.data
    if spec is None or data is None:
        return [], None
    from ..compare import compare

    roles: dict[str, Any] = dict(
        outcome=data.outcome, cluster=data.cluster, period=data.period, treatment=data.treatment
    )
    if data.exposure is not None:
        roles["exposure"] = data.exposure
    frame = data.frame
    order = _period_order(frame, data.period, allocation.design)
    if order is not None:
        roles["period_order"] = order
    alpha = config.power.alpha if config.power is not None else 0.05
    ratio = spec.family in _RATIO_FAMILIES
    label = "rate ratio" if spec.family != "binomial" else "odds ratio"
    notes: list[str] = []
    comparison = None
    if ratio:
        comparison, fits = _model_comparison(frame, spec.family, roles, notes)
    primary = (
        fits[spec.random]
        if ratio and spec.random in fits
        else _quiet_fit(notes, "primary", frame, family=spec.family, random=spec.random, **roles)
    )
    robust = None
    if ratio:
        try:
            robust = _quiet_fit(
                notes,
                "primary, CR2",
                frame,
                family=spec.family,
                random=spec.random,
                vcov="cr2",
                **roles,
            )
        except (ValueError, TypeError) as exc:
            notes.append(f"cluster-robust variance of the primary model not available: {exc}")
    results: dict[str, Any] = {"mixed model (primary)": primary}
    if robust is not None:
        results["mixed model (primary), CR2 variance"] = robust
    results.update(_sensitivity_results(config, allocation, frame, roles, notes))
    disagree = _significance_note(results, alpha)
    summary = " ".join(
        [
            f"Primary analysis (pre-specified): {spec.family} mixed model with random "
            f"structure `{spec.random}`: **{_effect_text(primary, ratio, label)}**.",
        ]
        + (
            [disagree]
            if disagree
            else [f"All analyses agree about significance at alpha {alpha:g}."]
        )
    )
    sections = [_primary_section(spec, primary, robust, comparison, ratio, label, disagree)]
    sections.append(_sensitivity_section(compare(results), ratio, label, notes))
    return sections, summary


def _primary_section(
    spec: Any,
    primary: Any,
    robust: Any,
    comparison: pd.DataFrame | None,
    ratio: bool,
    label: str,
    disagree: str | None,
) -> Section:
    parts = [
        f"Primary analysis (pre-specified): {spec.family} mixed model with random structure "
        f"`{spec.random}` and categorical period effects (`sw.fit`), t test with "
        f"{primary.df:g} df." + (f" {disagree}" if disagree else ""),
        f"**{_effect_text(primary, ratio, label)}** (model-based variance).",
    ]
    if robust is not None:
        parts.append(
            f"With the CR2 cluster-robust variance of the same fit: "
            f"{_effect_text(robust, ratio, label)} (SE {robust.std_error:.4g} against "
            f"{primary.std_error:.4g} model-based)."
        )
    if comparison is not None and len(comparison):
        shown = comparison.rename(columns={"ratio": label})
        best = str(comparison["random"].iloc[int(np.argmin(comparison["AIC"].to_numpy()))])
        parts.append(
            "Random-effect structures compared (Laplace log-likelihoods of the same fixed "
            "effects; AIC = -2 log-likelihood + 2 parameters; decay = estimated correlation "
            f"of a cluster's period effects one period apart). Lowest AIC: `{best}`; the "
            "primary analysis is the pre-specified one whatever the comparison shows.\n\n"
            + _md_table(shown, floatfmt="{:.4g}")
        )
    parts.append("```\n" + str(primary.summary()) + "\n```")
    return Section("Primary analysis", "\n\n".join(parts))


def _sensitivity_section(table: pd.DataFrame, ratio: bool, label: str, notes: list[str]) -> Section:
    columns = ["model", "estimate", "std_error", "conf_low", "conf_high", "p_value", "df"]
    shown = table[columns].copy()
    if ratio:
        for col in ("estimate", "conf_low", "conf_high"):
            shown[col] = np.exp(shown[col])
        shown = shown.rename(columns={"estimate": label})
    md = "\n\n".join(
        [
            "The same treatment effect estimated by methods with different assumptions"
            + (" (ratios; standard errors on the log scale)." if ratio else ".")
            + " The mixed model's standard error is right only if its random effects describe"
            " the correlation over time; the CR2 variance of the same model, cluster fixed"
            " effects with CR2 errors and Satterthwaite df, cluster-period summaries with"
            " council-clustered CR2 errors and the randomisation test over the trial's own"
            " allocation space do not rely on that.",
            _md_table(shown, floatfmt="{:.4g}"),
        ]
        + ["\n".join(f"- {n}" for n in notes)] * bool(notes)
    )
    return Section("Sensitivity analyses", md)


def _provenance_section(config: TrialConfig, allocation: Allocation) -> Section:
    import matplotlib

    rows = {
        "steppedwedge": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "matplotlib": matplotlib.__version__,
        "configuration": config.source,
        "randomisation seed": json.dumps(allocation.seed),
        "allocation input hash": allocation.input_hash,
    }
    if config.data is not None:
        rows["data hash (SHA-256)"] = _hash_frame(config.data.frame)
    md = "\n".join(f"- {k}: {v}" for k, v in rows.items())
    return Section("Provenance", md)


def build_report(config: TrialConfig) -> Report:
    """Run the configured steps and collect the report sections.

    Parameters
    ----------
    config : TrialConfig

    Returns
    -------
    Report
    """
    template = planned_design(config)
    clusters = config.clusters.rename(columns={config.cluster_column: "cluster"})
    kwargs: dict[str, Any] = {}
    if config.strata:
        kwargs["strata"] = config.strata
    if config.balance:
        kwargs["balance"] = list(config.balance)
        kwargs["cutoff"] = config.cutoff
    allocation = randomise(template, clusters, rng=config.seed, **kwargs)
    allocated = allocation.design
    sections = [
        _design_section(template, allocated, config),
        _randomisation_section(allocation),
    ]
    pw = _power_section(config, template)
    if pw is not None:
        sections.append(pw)
    desc = _descriptive_section(config)
    if desc is not None:
        sections.append(desc)
    analyses, summary = _analysis_sections(config, allocation)
    if summary is not None:
        sections.insert(0, Section("Summary", summary))
    sections.extend(analyses)
    sections.append(_provenance_section(config, allocation))
    return Report(config.title, tuple(sections), allocation, allocated)
