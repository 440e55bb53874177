"""Reproducible trial reports (Markdown + self-contained HTML) from a trial configuration."""

from .build import Report, build_report
from .config import TrialConfig
from .example import council_example

__all__ = ["Report", "TrialConfig", "build_report", "council_example"]
