r"""Cluster-level (cluster-period summary) analysis of stepped-wedge trials.

Each observed cluster-period cell is reduced to one summary ``s_ij`` (mean, proportion,
empirical log-odds, rate or log-rate) and the summaries are regressed on cluster and period
fixed effects and the treatment:

.. math::  s_{ij} = \\alpha_i + \\beta_j + \\theta X_{ij} + \\varepsilon_{ij}.

Cluster fixed effects absorb any time-constant cluster effect (so the analysis does not
depend on an exchangeable within-cluster correlation), period fixed effects absorb secular
trends, and every cell counts once (unweighted) or in proportion to its size or precision.
It is a simple, transparent sensitivity analysis to show beside the primary model
(Thompson et al. 2018 argue for cluster-level summaries in stepped-wedge trials; this is the
fixed-effects regression form of that idea).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from .._validation import check_option
from ..data import TrialData
from ..exceptions import DataError
from ..results import Summary
from .gee import _label, _WaldTable

__all__ = ["ClusterSummaryResult", "fit_cluster_summary", "fit_cluster_summary_frame"]

SummaryWeights = Literal["none", "size", "inverse-variance"]
_LINKS = {
    "gaussian": ("identity",),
    "binomial": ("identity", "logit"),
    "poisson": ("log", "identity"),
    "negative_binomial": ("log", "identity"),
}
_SUMMARY = {
    ("gaussian", "identity"): "cell mean",
    ("binomial", "identity"): "proportion",
    ("binomial", "logit"): "empirical log-odds log((y + 0.5) / (n - y + 0.5))",
    ("poisson", "log"): "log rate log((y + 0.5) / exposure)",
    ("poisson", "identity"): "rate y / exposure",
}
_SUMMARY[("negative_binomial", "log")] = _SUMMARY[("poisson", "log")]
_SUMMARY[("negative_binomial", "identity")] = _SUMMARY[("poisson", "identity")]


@dataclass(frozen=True)
class ClusterSummaryResult(_WaldTable):
    """Fixed-effects regression of cluster-period summaries.

    Attributes
    ----------
    params : pandas.Series
        Treatment effect (``"treatment"``), period effects (``period[j]``, contrasts with
        the first period) and cluster effects (``cluster[i]``, the first cluster's level
        is the intercept).
    vcov_matrix : pandas.DataFrame
    vcov : {"model", "robust"}
    df : float
        Residual degrees of freedom ``n_cells - rank``.
    family, link, weights : str
    summary_statistic : str
        What each cell was reduced to.
    residual_variance : float
        Estimated variance of a unit-weight cell summary around the fitted two-way model.
    n_clusters, n_cells : int
    cells : pandas.DataFrame
        The analysed cells: cluster, period, treatment, summary, weight.
    """

    params: pd.Series
    vcov_matrix: pd.DataFrame
    vcov: str
    df: float
    family: str
    link: str
    weights: str
    summary_statistic: str
    residual_variance: float
    n_clusters: int
    n_cells: int
    cells: pd.DataFrame
    estimand: str = "treatment"
    method: str = "cluster-summary"
    converged: bool = True

    def summary(self) -> Summary:
        """Text/HTML/Markdown/LaTeX summary."""
        info = (
            ("Method", "cluster-period summaries, cluster + period fixed effects"),
            ("Summary per cell", self.summary_statistic),
            ("Weights", self.weights),
            ("Variance estimator", "model-based" if self.vcov == "model" else "robust (HC2)"),
            ("Reference distribution", f"t, {self.df:g}"),
            ("Clusters / cells", f"{self.n_clusters} / {self.n_cells}"),
        )
        table = self.tidy()
        table = table[~table["term"].str.startswith("cluster[")].reset_index(drop=True)
        return Summary(
            title="Stepped-wedge cluster-level analysis (cluster-period summaries)",
            header=info,
            tables=(("Coefficients (cluster effects omitted)", table),),
        )

    def __repr__(self) -> str:
        lo, hi = self.conf_int()
        return (
            f"ClusterSummaryResult({self.family}, {self.link} scale, "
            f"weights={self.weights!r}: treatment = {self.estimate:.4g} (SE "
            f"{self.std_error:.4g}, 95% CI {lo:.4g} to {hi:.4g}, p = {self.pvalue:.3g}))"
        )


def _cell_summaries(
    td: TrialData, link: str, weights: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Observed cells: cluster code, period code, treatment, summary, weight."""
    c = td.cells()
    ci, pj = np.nonzero(c.observed)
    n = c.n[ci, pj].astype(float)
    tot = c.total[ci, pj].astype(float)
    x = c.treatment[ci, pj].astype(float)
    fam = td.family
    if fam == "gaussian":
        if td.kind == "aggregate":
            s = td.frame.groupby([td.cluster_codes, td.period_codes])["outcome"].mean()
            s = s.reindex(list(zip(ci, pj, strict=False))).to_numpy(float)
        else:
            s = c.mean[ci, pj].astype(float)
        if weights == "inverse-variance":
            if td.kind != "individual":
                raise DataError(
                    "`weights='inverse-variance'` needs individual rows to estimate the "
                    "within-cell variance; use weights='size' or 'none'."
                )
            within = c.within_ss[ci, pj] / np.maximum(n - 1.0, 1.0)
            if np.any(n < 2) or np.any(within <= 0):
                raise DataError(
                    "`weights='inverse-variance'` needs at least 2 individuals with "
                    "different outcomes in every cell; use weights='size'."
                )
            w = n / within
        else:
            w = n
    elif fam == "binomial":
        if link == "identity":
            s = tot / n
            pc = (tot + 0.5) / (n + 1.0)
            w = n / (pc * (1 - pc)) if weights == "inverse-variance" else n
        else:
            s = np.log((tot + 0.5) / (n - tot + 0.5))
            pc = (tot + 0.5) / (n + 1.0)
            w = n * pc * (1 - pc) if weights == "inverse-variance" else n
    else:
        expo = c.exposure[ci, pj].astype(float) if c.exposure is not None else n
        if link == "log":
            s = np.log((tot + 0.5) / expo)
            w = tot + 0.5 if weights == "inverse-variance" else expo
        else:
            s = tot / expo
            w = expo * expo / (tot + 0.5) if weights == "inverse-variance" else expo
    if weights == "none":
        w = np.ones_like(s)
    return ci, pj, x, s, w


def fit_cluster_summary(
    trial_data: TrialData,
    *,
    link: str | None = None,
    weights: SummaryWeights = "none",
    vcov: Literal["model", "robust"] = "model",
) -> ClusterSummaryResult:
    """Regress cluster-period summaries on cluster and period fixed effects and treatment.

    Parameters
    ----------
    trial_data : TrialData
        Validated trial rows (individual or aggregate).
    link : str, optional
        Scale of the cell summary: ``identity`` (mean, proportion or rate), ``logit``
        (binomial: empirical log-odds with 0.5 added to events and non-events) or ``log``
        (counts: log of (events + 0.5) / exposure).  Default: identity, except ``log`` for
        counts.
    weights : {"none", "size", "inverse-variance"}
        Unweighted (every cell counts once, default), cell size (individuals or trials;
        exposure for counts), or the inverse of the within-cell sampling variance of the
        summary (Gaussian: ``n / s^2``; proportion: ``n / (p(1-p))``; log-odds:
        ``n p (1-p)``; log rate: ``y + 0.5``; rate: ``exposure^2 / (y + 0.5)``, with
        ``p = (y + 0.5) / (n + 1)``).
    vcov : {"model", "robust"}
        Classical weighted-least-squares variance, or the HC2 heteroscedasticity-robust
        sandwich (each cell its own variance).  Both use ``t`` with the residual df.

    Returns
    -------
    ClusterSummaryResult

    Raises
    ------
    DataError
        If the treatment is not identifiable from the within-period, within-cluster
        contrasts (e.g. no cluster switches), or no residual degrees of freedom remain.
    ValueError
        For an unknown option or a link that does not fit the family.

    Notes
    -----
    With cluster and period fixed effects the estimate uses only within-cluster changes
    that differ from the period's average change, so it does not rely on an exchangeable
    within-cluster correlation.  Residuals of cells of the same cluster may still be
    correlated (e.g. with decaying correlation), which the model-based variance ignores;
    read it as a sensitivity analysis beside the primary model, or combine it with a
    permutation test for design-based inference.

    References
    ----------
    Thompson JA, Davey C, Fielding K, Hargreaves JR, Hayes RJ (2018). Robust analysis of
    stepped wedge trials using cluster-level summaries within periods. Stat Med
    37:2487-2500.

    Examples
    --------
    >>> import pandas as pd
    >>> from steppedwedge.data import TrialData
    >>> from steppedwedge.models.cluster_level import fit_cluster_summary
    >>> df = pd.DataFrame({
    ...     "c": [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4],
    ...     "t": [1, 2, 3] * 4,
    ...     "x": [0, 1, 1, 0, 1, 1, 0, 0, 1, 0, 0, 1],
    ...     "events": [5, 9, 10, 4, 8, 9, 6, 5, 11, 3, 4, 8],
    ...     "n": [50] * 12,
    ... })
    >>> td = TrialData.from_frame(df, outcome="events", trials="n", family="binomial",
    ...                           cluster="c", period="t", treatment="x")
    >>> res = fit_cluster_summary(td)
    >>> round(res.estimate, 4), round(res.std_error, 4), res.df
    (0.08, 0.0126, 5.0)
    """
    if not isinstance(trial_data, TrialData):
        raise TypeError(
            f"`trial_data` must be a steppedwedge TrialData; got {type(trial_data).__name__}."
        )
    fam = trial_data.family
    lk = _LINKS[fam][0] if link is None else link
    if lk not in _LINKS[fam]:
        listed = ", ".join(repr(x) for x in _LINKS[fam])
        raise ValueError(
            f"`link` must be one of {listed} for family {fam!r} in a cluster-level "
            f"analysis; got {link!r}."
        )
    wt = check_option("weights", weights, ("none", "size", "inverse-variance"))
    vc = check_option("vcov", vcov, ("model", "robust"))

    ci, pj, x, s, w = _cell_summaries(trial_data, lk, wt)
    clusters = np.unique(ci)
    periods = np.unique(pj)
    cols = [np.ones(len(s)), x]
    names = ["(Intercept)", "treatment"]
    for j in periods[1:]:
        cols.append((pj == j).astype(float))
        names.append(f"period[{_label(trial_data.periods[j])}]")
    for i in clusters[1:]:
        cols.append((ci == i).astype(float))
        names.append(f"cluster[{_label(trial_data.clusters[i])}]")
    X = np.column_stack(cols)
    sw = np.sqrt(w)
    Xw = X * sw[:, None]
    rank = np.linalg.matrix_rank(Xw)
    if rank < X.shape[1]:
        raise DataError(
            "the treatment effect is not identifiable from cluster-period summaries with "
            "cluster and period fixed effects (treatment is collinear with them: does any "
            "cluster switch while another does not?)."
        )
    df = float(len(s) - rank)
    if df < 1:
        raise DataError(
            f"no residual degrees of freedom: {len(s)} cells and {rank} parameters; a "
            "cluster-level analysis needs more cells than clusters + periods."
        )
    Q, R = np.linalg.qr(Xw)
    beta = np.linalg.solve(R, Q.T @ (s * sw))
    resid_w = s * sw - Xw @ beta
    sigma2 = float(resid_w @ resid_w) / df
    Rinv = np.linalg.inv(R)
    bread = Rinv @ Rinv.T  # (X'WX)^{-1}
    if vc == "model":
        V = sigma2 * bread
    else:
        h = np.sum(Q * Q, axis=1)  # leverages of the weighted fit
        if np.any(h > 1 - 1e-10):
            raise DataError(
                "`vcov='robust'` (HC2) needs every cell leverage below 1; a cell is fitted "
                "exactly (e.g. a cluster observed in a single period). Use vcov='model'."
            )
        u = Xw * (resid_w / np.sqrt(1.0 - h))[:, None]
        V = bread @ (u.T @ u) @ bread
    V = 0.5 * (V + V.T)
    cells = pd.DataFrame(
        {
            "cluster": [trial_data.clusters[i] for i in ci],
            "period": [trial_data.periods[j] for j in pj],
            "treatment": x,
            "summary": s,
            "weight": w,
        }
    )
    return ClusterSummaryResult(
        params=pd.Series(beta, index=names),
        vcov_matrix=pd.DataFrame(V, index=names, columns=names),
        vcov=vc,
        df=df,
        family=fam,
        link=lk,
        weights=wt,
        summary_statistic=_SUMMARY[(fam, lk)],
        residual_variance=sigma2,
        n_clusters=len(clusters),
        n_cells=len(s),
        cells=cells,
    )



def fit_cluster_summary_frame(
    data: pd.DataFrame,
    *,
    outcome: str,
    cluster: str,
    period: str,
    treatment: str,
    individual: str | None = None,
    family: str = "gaussian",
    link: str | None = None,
    exposure: str | None = None,
    offset: str | None = None,
    trials: str | None = None,
    weights: SummaryWeights = "none",
    vcov: Literal["model", "robust"] | None = None,
    missing: Literal["raise", "drop"] = "raise",
    design: object = None,
) -> ClusterSummaryResult:
    """Cluster-level analysis from a DataFrame: ``steppedwedge.fit(method="cluster-summary")``.

    Parameters
    ----------
    data : pandas.DataFrame
        Trial rows (never modified).
    outcome, cluster, period, treatment, individual, family, exposure, offset, trials
        As :meth:`steppedwedge.data.TrialData.from_frame`.
    link, weights, vcov
        See :func:`fit_cluster_summary` (``vcov=None`` means ``"model"``).
    missing : {"raise", "drop"}
    design : Design, optional

    Returns
    -------
    ClusterSummaryResult

    Examples
    --------
    >>> import pandas as pd
    >>> from steppedwedge.models.cluster_level import fit_cluster_summary_frame
    >>> df = pd.DataFrame({"c": [1, 1, 2, 2, 3, 3, 4, 4], "t": [1, 2] * 4,
    ...                    "x": [0, 1, 0, 1, 0, 0, 0, 0],
    ...                    "y": [1.0, 4.0, 2.0, 4.5, 0.5, 1.0, 1.5, 2.5]})
    >>> res = fit_cluster_summary_frame(df, outcome="y", cluster="c", period="t", treatment="x")
    >>> round(res.estimate, 3)
    2.0
    """
    td = TrialData.from_frame(
        data, outcome=outcome, cluster=cluster, period=period, treatment=treatment,
        individual=individual, family=family, trials=trials, exposure=exposure,
        offset=offset, design=design, missing=missing,
    )
    return fit_cluster_summary(
        td, link=link, weights=weights, vcov="model" if vcov is None else vcov
    )
