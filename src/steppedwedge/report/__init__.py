"""Reproducible trial reports from a trial configuration (``trial.toml``).

:func:`report` reads the configuration (:mod:`.config`, validated by :mod:`.schema`), runs the
analyses (:mod:`.analyses`), assembles a document (:mod:`.build`, one module per part of the
CONSORT-SW checklist in :mod:`.sections`) and writes it as self-contained HTML, Markdown, a
PDF on request, ``results.json`` and the figures (:mod:`.html`, :mod:`.markdown`,
:mod:`.figures`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .build import Report, build_report
from .config import TrialConfig
from .example import council_example

__all__ = ["ConfigError", "Report", "TrialConfig", "build_report", "council_example", "report"]


def report(
    config: TrialConfig | str | Path, folder: str | Path = "report", *, pdf: bool = False
) -> Report:
    """Build the trial report and write it to a folder (the Python side of ``steppedwedge report``).

    Parameters
    ----------
    config : TrialConfig, str or pathlib.Path
        A configuration (e.g. :func:`council_example`) or the path of a ``trial.toml``
        (read with :meth:`TrialConfig.from_toml`).
    folder : str or pathlib.Path, default "report"
        Where ``report.html``, ``report.md``, the figures and the allocation record go.
    pdf : bool, default False
        Also print the page to ``report.pdf`` (needs the optional ``pdf`` extra,
        weasyprint).

    Returns
    -------
    Report
        The built report (its sections and allocation), already written to ``folder``.

    Raises
    ------
    ConfigError
        For an invalid ``trial.toml`` (the message names the key and its line).

    See Also
    --------
    steppedwedge.report.build_report : build without writing.

    References
    ----------
    Hemming K, Taljaard M, McKenzie JE, et al. (2018). Reporting of stepped wedge cluster
    randomised trials: extension of the CONSORT 2010 statement with explanation and
    elaboration. *BMJ* 363:k1614.

    Examples
    --------
    The planning-stage report of the bundled example (design, randomisation and sample size:
    the configuration without its data; with them the report also analyses the trial, as
    ``examples/own_trial_report.ipynb`` does):

    >>> import dataclasses, pathlib, tempfile
    >>> import steppedwedge as sw
    >>> from steppedwedge.report import council_example
    >>> plan = dataclasses.replace(council_example(), data=None, analysis=None)
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> rep = sw.report(plan, folder)
    >>> sorted(p.name for p in folder.glob("report.*"))
    ['report.html', 'report.md']
    """
    cfg = config if isinstance(config, TrialConfig) else TrialConfig.from_toml(config)
    built = build_report(cfg)
    built.write(folder, pdf=pdf)
    return built


def __getattr__(name: str) -> Any:
    # the schema needs pydantic (the `report` extra): imported only when asked for
    if name == "ConfigError":
        from .schema import ConfigError

        return ConfigError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
