"""Example data sets bundled with steppedwedge.

All files ship inside the package and are read with :mod:`importlib.resources`; every
loader returns a new :class:`pandas.DataFrame` on each call.

* :func:`load_councils` and :func:`load_council_characteristics`: a SYNTHETIC stepped-wedge
  trial in 17 fictitious councils, 20 quarters, 7 randomised waves, with counts of children
  looked after, entries into care, child protection plans and children in need.  Made by
  ``tools/make_council_example.py``; the true parameters are in :func:`load_councils`.
* :func:`load_dfe_panel`: REAL Department for Education statistics for English local
  authorities, 2013-2025 (children looked after, entries into care, child protection
  plans, children in need, referrals, population aged 0-17).  Source: DfE
  ``dfe-analytical-services/CSC_outcomes_and_enablers`` (commit ``2f5d11a``).  Contains
  public sector information licensed under the Open Government Licence v3.0.
* :func:`make_fs_like` and :func:`make_nwd_like`: SYNTHETIC child-level referral data shaped
  like the Family Safeguarding and No Wrong Door evaluations (published start dates,
  windows, readiness strata and baseline 18-month risks), with a chosen treatment odds ratio.
"""

from __future__ import annotations

from ._councils import load_council_characteristics, load_councils, load_dfe_panel
from ._sfpc import SyntheticTrial, make_fs_like, make_nwd_like

__all__ = [
    "SyntheticTrial",
    "load_council_characteristics",
    "load_councils",
    "load_dfe_panel",
    "make_fs_like",
    "make_nwd_like",
]
