"""Loaders for the bundled council data: the synthetic example and the real DfE panel."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pandas as pd

__all__ = ["load_council_characteristics", "load_councils", "load_dfe_panel"]

_PANEL_DTYPES: dict[str, Any] = {
    "council": str,
    "quarter": str,
    "period": "int64",
    "region": str,
    "population_0_17": "int64",
    "treated": "int64",
    "looked_after": "int64",
    "entries_into_care": "int64",
    "cpp": "int64",
    "cin": "int64",
}
_CHAR_DTYPES: dict[str, Any] = {
    "council": str,
    "region": str,
    "population_0_17": "int64",
    "baseline_looked_after_per_10k": "float64",
    "wave": "int64",
    "start_date": str,
}


def _read(name: str, dtypes: dict[str, Any]) -> pd.DataFrame:
    source = resources.files("steppedwedge.datasets").joinpath("data").joinpath(name)
    with source.open("r", encoding="utf-8") as fh:
        frame = pd.read_csv(fh, dtype=dtypes, keep_default_na=False, na_values=[""])
    if list(frame.columns) != list(dtypes):  # pragma: no cover - guards the packaged file
        raise RuntimeError(f"bundled file {name} has unexpected columns {list(frame.columns)}")
    return frame


def load_councils() -> pd.DataFrame:
    r"""Load the synthetic council example: 17 councils x 20 quarters of social care counts.

    A SYNTHETIC stepped-wedge trial of a children's social care programme in 17 fictitious
    English councils ("Council A" ... "Council Q"; no real place is meant), observed
    quarterly from 2022Q1 to 2026Q4.  Councils were randomised to 7 waves (2 or 3 councils
    each); wave *w* starts on the first day of quarter ``5 + 2(w - 1)`` (2023Q1, 2023Q3,
    ..., 2026Q1), so 2022 is an all-control baseline year and every council is treated in
    2026.  The quarter containing a council's start date is its first treated quarter.

    Returns
    -------
    pandas.DataFrame
        340 rows (one per council-quarter, sorted by council then period), a new frame on
        every call, with columns:

        * ``council`` (str): "Council A" ... "Council Q";
        * ``quarter`` (str): "2022Q1" ... "2026Q4" (convert with
          ``pd.PeriodIndex(df["quarter"], freq="Q")``);
        * ``period`` (int64): 1 ... 20;
        * ``region`` (str): one of 5 English regions (North East, North West, Yorkshire and
          The Humber, East Midlands, West Midlands);
        * ``population_0_17`` (int64): children aged 0-17 (15,000-150,000; changes yearly);
        * ``treated`` (int64): 1 from the council's first treated quarter on, else 0;
        * ``looked_after`` (int64): children looked after at the end of the quarter (stock);
        * ``entries_into_care`` (int64): children who started to be looked after in the
          quarter;
        * ``cpp`` (int64): children on a child protection plan at the end of the quarter;
        * ``cin`` (int64): children in need at the end of the quarter.

        String columns have pandas' default string dtype (``object`` before pandas 3).

    See Also
    --------
    load_council_characteristics : one row per council (region, population, wave, start date).

    Notes
    -----
    Made by ``tools/make_council_example.py`` (numpy, fixed seed 20261133) and calibrated
    to English local-authority statistics 2013-2025 (DfE *Children looked after* and
    *Characteristics of children in need*, ONS mid-year populations): about 70 children
    looked after, 26 entries into care, 42 child protection plans and 335 children in need
    per 10,000 children; between-council SD of log rates 0.26-0.41; council-period
    correlations that level off with lag (a persistent plus a decaying council component).

    True data-generating process (council :math:`i`, quarter :math:`t = 1, \dots, 20`,
    population :math:`P_{it}`, treatment :math:`X_{it}`):

    * entries into care :math:`\sim \text{Poisson}(\mu_{it})`,
      :math:`\log \mu_{it} = \log(P_{it}/10^4) + \log 6.6 + a_i + 0.004 (t - 1) +
      u_{it} + \log(0.85) X_{it}`, with :math:`a_i \sim N(0, 0.33^2)` (persistent
      council effect, :math:`\tau^2 = 0.1089`) and :math:`u_{it}` a stationary AR(1)
      council-quarter effect with SD 0.15 (:math:`\gamma^2 = 0.0225`) and correlation
      :math:`r = 0.68^{1/4} \approx 0.908` per quarter (0.68 per year).  **The true
      treatment effect is a rate ratio of 0.85** (log rate ratio -0.1625) on entries into
      care, immediate and constant.
    * looked after (stock): :math:`L_{it} = L_{i,t-1} - \text{Binomial}(L_{i,t-1}, q_i) +
      \text{entries}_{it}`, quarterly exit probability :math:`q_i = 0.094 e^{b_i}`,
      :math:`b_i \sim N(0, 0.2^2)`, started at each council's equilibrium at the end of
      2021.  The treatment acts on the stock only through fewer entries, so its effect
      builds up gradually.
    * child protection plans and children in need: Poisson with rates 42 and 335 per
      10,000, council effects with SD 0.31 and 0.26 (correlated 0.6 and 0.5 with
      :math:`a_i`), AR(1) council-quarter effects with SD 0.20 and 0.10 and yearly
      correlation 0.53 and 0.60, a trend of -0.003 per quarter for plans, and **no
      treatment effect**.
    * populations: lognormal (median 55,000, SD of log 0.6) restricted to 15,000-150,000,
      growing by a council-specific :math:`N(0.3\%, 0.4\%^2)` a year.

    The realised sample's pooled 2022 rates are 68 looked after and 28 entries a year per
    10,000 children.  A Poisson GLM with council and quarter fixed effects estimates the
    entry rate ratio as about 0.84.

    Examples
    --------
    >>> from steppedwedge.datasets import load_councils
    >>> df = load_councils()
    >>> df.shape
    (340, 10)
    >>> df.groupby("quarter")["treated"].sum().iloc[[0, 4, 6, 19]].tolist()
    [0, 3, 5, 17]
    >>> rate = 1e4 * df["looked_after"].sum() / df["population_0_17"].sum()
    >>> bool(50 < rate < 90)
    True
    """
    return _read("councils.csv", _PANEL_DTYPES)


def load_council_characteristics() -> pd.DataFrame:
    """Load the council table of the synthetic council example (one row per council).

    Returns
    -------
    pandas.DataFrame
        17 rows sorted by council, a new frame on every call, with columns ``council``
        (str), ``region`` (str), ``population_0_17`` (int64; the 2022 value),
        ``baseline_looked_after_per_10k`` (float64; the mean observed rate of children
        looked after per 10,000 children over the four 2022 quarters, one decimal),
        ``wave`` (int64, 1-7, randomised) and ``start_date`` (str, ISO ``YYYY-MM-DD``: the
        first day of the wave's first treated quarter; convert with ``pd.to_datetime``).

    See Also
    --------
    load_councils : the council-quarter panel and how the data were made.

    Examples
    --------
    >>> from steppedwedge.datasets import load_council_characteristics
    >>> chars = load_council_characteristics()
    >>> chars["wave"].value_counts().sort_index().tolist()
    [3, 2, 3, 3, 2, 2, 2]
    >>> chars.loc[chars["wave"] == 1, "start_date"].unique().tolist()
    ['2023-01-01']
    """
    return _read("council_characteristics.csv", _CHAR_DTYPES)


_DFE_DTYPES: dict[str, Any] = {
    "la_code": str,
    "la_name": str,
    "region_name": str,
    "year": "int64",
    "population_0_17": "Int64",
    "cla_31_march": "Int64",
    "cla_started_in_year": "Int64",
    "cla_ceased_in_year": "Int64",
    "cpp_31_march": "Int64",
    "cin_31_march": "Int64",
    "referrals_in_year": "Int64",
    "boundary_change": "bool",
}


def load_dfe_panel() -> pd.DataFrame:
    """Load the real DfE panel of English local authorities' children's social care, 2013-2025.

    One row per English local authority (LA) and reporting year: 1,976 rows, 161 LA codes.
    Year *Y* means "at 31 March *Y*" for stocks and "the year ending 31 March *Y*" for
    flows.  These are REAL official statistics, bundled for calibrating power calculations
    and simulations (e.g. between-council variance and autocorrelation of log rates).

    Returns
    -------
    pandas.DataFrame
        A new frame on every call, sorted by ``la_code`` and ``year``, with columns
        ``la_code``, ``la_name``, ``region_name`` (str), ``year`` (int64),
        ``population_0_17`` (ONS mid-year estimate of the previous calendar year, the
        denominator DfE uses for rates), ``cla_31_march`` (children looked after),
        ``cla_started_in_year``, ``cla_ceased_in_year`` (2021-2025 only),
        ``cpp_31_march`` (child protection plans), ``cin_31_march`` (children-in-need
        episodes open), ``referrals_in_year`` (all nullable ``Int64``: suppressed or
        unavailable values are ``<NA>``) and ``boundary_change`` (bool: the LA was created
        or abolished during 2013-2025).

    Notes
    -----
    Source: Department for Education, *Children looked after in England* and
    *Characteristics of children in need* (official statistics), and ONS mid-year
    population estimates, as re-published in the DfE repository
    ``dfe-analytical-services/CSC_outcomes_and_enablers`` (folder ``data-raw/``, commit
    ``2f5d11a``).  LA level only (no national or regional rows); counts are not rounded.

    Licence: contains public sector information licensed under the Open Government
    Licence v3.0 (https://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/).

    Examples
    --------
    >>> from steppedwedge.datasets import load_dfe_panel
    >>> dfe = load_dfe_panel()
    >>> dfe.shape
    (1976, 12)
    >>> y25 = dfe[dfe["year"] == 2025]
    >>> round(float(1e4 * y25["cla_31_march"].sum() / y25["population_0_17"].sum()), 1)
    67.1
    """
    return _read("dfe_la_children_social_care_panel.csv", _DFE_DTYPES)
