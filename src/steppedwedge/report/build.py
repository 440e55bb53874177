"""Assemble the trial report and write it: HTML, Markdown, ``results.json``, figures, PDF.

:func:`build_report` runs the configured steps and returns a :class:`Report` holding a
structured :class:`~.document.Document`; the renderers (:mod:`.html`, :mod:`.markdown`)
and ``results.json`` all come from that one document, so they say the same thing.  The
sections live in :mod:`.sections` (one module per part of the CONSORT-SW checklist), the
analyses in :mod:`.analyses` (whose ``SENSITIVITY`` registry is where a sensitivity analysis
is added).

The report is deterministic: the same configuration, data and library versions give
byte-identical files (no timestamps; figures are rendered with fixed metadata).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..design import Design
from ..exceptions import OptionError
from ..randomise import Allocation
from .analyses import AnalysisRun, run_analyses, run_exploratory
from .config import TrialConfig
from .document import Code, Document, Section, Strong, SummaryItem
from .formatting import fmt_ci, fmt_df, fmt_num
from .html import render_html
from .markdown import render_markdown
from .observed import cell_data
from .sections.analysis import checks_section, effect_text, primary_section, sensitivity_section
from .sections.exploratory import exploratory_section
from .sections.outcomes import outcome_section
from .sections.planning import planning_comparison, power_section
from .sections.record import deviations_section, provenance_section
from .sections.trial import design_section, flow_section, randomisation_section

__all__ = ["Report", "build_report", "planned_design"]


@dataclass(frozen=True)
class Report:
    """A built report; :meth:`write` saves it to a folder.

    Attributes
    ----------
    document : Document
        The structured report every output is rendered from.
    allocation : Allocation
        The randomisation the report describes.
    design : Design
        The allocated design (real cluster labels).
    """

    document: Document
    allocation: Allocation
    design: Design

    @property
    def title(self) -> str:
        """Report title."""
        return self.document.title

    @property
    def sections(self) -> tuple[Section, ...]:
        """The report's sections in reading order."""
        return self.document.sections

    def section(self, key: str) -> Section:
        """Return the section with identifier ``key`` (e.g. ``"primary"``)."""
        for sec in self.sections:
            if sec.key == key:
                return sec
        raise KeyError(f"the report has no section {key!r}")

    def to_markdown(self) -> str:
        """Return the report as Markdown (figures referenced as PNG files beside it)."""
        return render_markdown(self.document)

    def to_html(self) -> str:
        """Return the report as one self-contained HTML page (figures embedded)."""
        return render_html(self.document)

    def results(self) -> dict[str, Any]:
        """Every number of the report as JSON-ready data (the content of ``results.json``)."""
        return self.document.results()

    def write(self, folder: str | Path, *, pdf: bool = False) -> list[Path]:
        """Write ``report.html``, ``report.md``, ``results.json``, figures and records.

        Parameters
        ----------
        folder : str or Path
            Output folder (created if needed).
        pdf : bool, default False
            Also write ``report.pdf`` (needs the optional ``pdf`` extra: weasyprint).

        Returns
        -------
        list of Path
            The files written.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        for sec in self.sections:
            for fig in sec.figures:
                p = folder / f"{fig.name}.png"
                p.write_bytes(fig.png)
                written.append(p)
        html_text = self.to_html()
        files = {
            "report.html": html_text,
            "report.md": self.to_markdown(),
            "results.json": json.dumps(self.results(), indent=2, allow_nan=False) + "\n",
            "allocation.json": self.allocation.to_json(include_admissible=False) + "\n",
            "allocation.csv": self.allocation.to_frame().to_csv(index=False, lineterminator="\n"),
            "design.csv": self.design.to_frame().to_csv(index=False, lineterminator="\n"),
        }
        for name, text in files.items():
            p = folder / name
            p.write_text(text, encoding="utf-8")
            written.append(p)
        if pdf:
            written.append(write_pdf(html_text, folder / "report.pdf"))
        return written


def write_pdf(html_text: str, path: Path) -> Path:
    """Print the HTML page to ``path`` with weasyprint (the optional ``pdf`` extra)."""
    try:
        import weasyprint  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except (ImportError, OSError) as exc:
        raise OptionError(
            "a PDF needs weasyprint and its Pango libraries: pip install 'steppedwedge[pdf]' "
            f"({type(exc).__name__}: {exc})."
        ) from None
    weasyprint.HTML(string=html_text).write_pdf(str(path))
    return path


def planned_design(config: TrialConfig) -> Design:
    """Return the design template: one row per slot, from the wave start dates."""
    return config.planned_design()


def hash_frame(frame: pd.DataFrame) -> str:
    """SHA-256 of the frame's CSV text (the data hash in the provenance)."""
    text = frame.to_csv(index=False, lineterminator="\n")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def significance_note(results: dict[str, Any], alpha: float) -> str | None:
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
        f"The analyses disagree about significance at alpha {alpha:g}. "
        f"p < {alpha:g}: {'; '.join(sig)}. p >= {alpha:g}: {'; '.join(not_sig)}. "
        "Read the primary analysis with its sensitivity analyses."
    )


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _spread(run: AnalysisRun) -> str:
    """Return `` Their rate ratios range from 0.87 to 0.88.`` (on the reported scale)."""
    est = [float(r.estimate) for r in run.panel.values() if np.isfinite(float(r.estimate))]
    if len(est) < 2:
        return ""
    lo, hi = (float(np.exp(v)) if run.ratio else v for v in (min(est), max(est)))
    what = f"{run.label}s" if run.ratio else "estimates"
    return f" Their {what} range from {fmt_ci(lo, None, None)} to {fmt_ci(hi, None, None)}."


def _summary(
    config: TrialConfig, allocated: Design, run: AnalysisRun | None, disagree: str | None
) -> tuple[tuple[SummaryItem, ...], dict[str, Any]]:
    data = config.data
    question: tuple[Any, ...] = ("Does the intervention change ",)
    if config.question:
        question = (config.question,)
    elif data is not None:
        question += (Code(data.outcome),)
        question += (" per ", Code(data.exposure)) if data.exposure else ()
        question += ("?",)
    else:
        question = ("The randomised roll-out of the intervention.",)
    design = (
        f"Stepped-wedge cluster randomised trial: {allocated.n_clusters} clusters in "
        f"{allocated.n_sequences} waves, {allocated.n_periods} periods "
        f"({allocated.periods[0]} to {allocated.periods[-1]}).",
    )
    items = [SummaryItem("Question", question), SummaryItem("Design", design)]
    values: dict[str, Any] = {}
    if run is not None:
        prim = run.primary
        items.append(
            SummaryItem(
                "Primary result",
                (
                    Strong(_capital(effect_text(run, prim))),
                    f"; t test on {fmt_df(prim.df)} df ({run.family} mixed model, random "
                    "structure ",
                    Code(run.random),
                    ").",
                ),
            )
        )
        agree = disagree or (
            f"All {len(run.panel)} analyses agree about significance at alpha {run.alpha:g}."
        )
        items.append(SummaryItem("Sensitivity analyses", (agree + _spread(run),)))
        values = {
            "estimate": float(prim.estimate),
            "std_error": float(prim.std_error),
            "df": float(prim.df),
            "p_value": float(prim.pvalue),
            "ratio": float(np.exp(prim.estimate)) if run.ratio else None,
            "sensitivity_agree": disagree is None,
        }
    return tuple(items), values


def build_report(config: TrialConfig, *, exploratory: bool = True) -> Report:
    """Run the configured steps and collect the report.

    Parameters
    ----------
    config : TrialConfig
    exploratory : bool, default True
        Add the exploratory analyses (:func:`steppedwedge.compare_analyses`: effect by
        exposure time, not-yet-treated comparisons, implied weights); False leaves the
        section out (they refit the primary model a few times).

    Returns
    -------
    Report

    Examples
    --------
    >>> from steppedwedge.report import build_report, council_example
    >>> report = build_report(council_example())  # doctest: +SKIP
    >>> report.section("primary").values["estimates"][0]["ratio"]  # doctest: +SKIP
    0.87...
    """
    template = config.planned_design()
    allocation = config.allocation()
    allocated = allocation.design
    sections = [design_section(template, allocated, config), randomisation_section(allocation)]
    deviations: list[str] = []
    planned = power_section(config, template)
    if planned is not None:
        sections.append(planned[0])
    data = config.data
    data_hash = hash_frame(data.frame) if data is not None else None
    cd = None
    if data is not None and data_hash is not None:
        roles = data.roles()
        cd = cell_data(config.analysis_frame(), roles, allocated, data.outcome)
        # the roll-out the data record (the analysis frame may carry the ITT treatment)
        observed = (
            cell_data(data.frame, {**roles, "treatment": data.treatment}, allocated, data.outcome)
            if data.treatment is not None
            else cd
        )
        rollout = config.rollout() if config.start_dates else None
        population = config.analysis.analysis_population if config.analysis else "itt"
        flow, deviations = flow_section(observed, allocation, rollout, population)
        sections += [flow, outcome_section(cd, data.source, data_hash, data.outcome)]
    run = run_analyses(config, allocation)
    disagree = significance_note(run.panel, run.alpha) if run is not None else None
    if run is not None and cd is not None and data is not None:
        from ..compare import compare

        sections.append(primary_section(run, data.exposure, disagree))
        if planned is not None:
            plan = planning_comparison(config, template, planned[1], run)
            if plan is not None:
                sections.append(plan)
                ratio = plan.values["se_ratio"]
                if not 0.8 <= ratio <= 1.25:
                    deviations.append(
                        f"standard error {fmt_num(ratio)} times the planned one (section "
                        f"{plan.title})"
                    )
        explore = run_exploratory(config, allocation, run.notes) if exploratory else None
        sections.append(sensitivity_section(run, compare(run.panel)))
        if explore is not None:
            sections.append(exploratory_section(run, explore))
        sections.append(checks_section(run, cd))
        if run.comparison:
            best = min(run.comparison, key=lambda r: r["aic"])["random"]
            if best != run.random:
                deviations.append(
                    f"the lowest-AIC random structure is {best}, not the pre-specified "
                    f"{run.random} (the primary analysis is kept as pre-specified)"
                )
    sections.append(deviations_section(deviations))
    sections.append(provenance_section(config, allocation, data_hash))
    summary, values = _summary(config, allocated, run, disagree)
    explored = [sec for sec in sections if sec.key == "exploratory"]
    if explored:
        rows = explored[0].values["panel"][1:]  # the first row is the primary analysis
        label = run.label if run is not None else "estimate"
        text = "; ".join(f"{r['analysis']} {r[f'{label} (95% CI)']}" for r in rows)
        summary += (SummaryItem("Exploratory (not pre-specified)", (text + ".",)),)
    doc = Document(
        config.title,
        "Trial report following the CONSORT extension for stepped-wedge cluster randomised "
        "trials (Hemming et al., BMJ 2018;363:k1614).",
        summary,
        tuple(sections),
        values,
    )
    return Report(doc, allocation, allocated)
