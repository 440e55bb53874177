"""The analysis specification: what :func:`steppedwedge.fit` is told, validated once.

:class:`AnalysisSpec` holds the column roles and every option shared by the estimators
(family and link, the random, time and effect models, the estimation method, the df and
variance rules, the missing-data policy): everything that is not a fitter's own numerics.
:meth:`AnalysisSpec.from_options` checks those options once, resolves their defaults and
refuses the combinations no fitter accepts; a fitter entry ``fit_<name>_spec(data, spec,
**numerics)`` then trusts the spec and turns its roles into arrays with
:meth:`AnalysisSpec.trial_data`.  ``docs/explanation/architecture.rst`` describes the
spec -> fitter -> result flow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .._validation import check_option
from ..data import TrialData
from ..exceptions import OptionError

__all__ = [
    "DESIGN_BASED_METHODS",
    "FAMILIES",
    "METHODS",
    "MIXED_METHODS",
    "IGNORED_OPTIONS",
    "STAGGERED_METHODS",
    "AnalysisSpec",
    "check_decay_scale",
]

#: Outcome families of :func:`steppedwedge.fit`.
FAMILIES = ("gaussian", "binomial", "poisson", "negative_binomial")
#: Likelihood-based mixed models (Gaussian LMM: REML/ML; GLMM: Laplace/AGQ).
MIXED_METHODS = ("reml", "ml", "laplace", "agq")
#: Staggered-rollout estimators on cluster-period summaries.
STAGGERED_METHODS = ("efficient-staggered", "callaway-santanna", "sun-abraham", "imputation")
#: Design-based estimators with randomisation inference.
DESIGN_BASED_METHODS = ("vertical", "hughes", "synthetic-control", "crossover")
#: Every ``method`` of :func:`steppedwedge.fit`.
METHODS = (
    *MIXED_METHODS,
    "gee",
    "cluster-summary",
    "fixed-effects",
    *STAGGERED_METHODS,
    *DESIGN_BASED_METHODS,
)
_DEFAULT_LINK = {"gaussian": "identity", "binomial": "logit"}
#: Staggered-rollout estimators model binary outcomes on the risk-difference scale.
_STAGGERED_LINK = {"gaussian": "identity", "binomial": "identity"}

#: ``sw.fit`` arguments a summary-based estimator would silently ignore, with their defaults.
_SUMMARY_UNUSED: dict[str, Any] = {
    "individual": None,
    "covariates": None,
    "random": "nested",
    "time": "categorical",
    "effect": "immediate",
    "dof": None,
    "vcov": None,
}
#: Model options (with their defaults) the cluster-level estimators have no use for.
_CELL_MODEL: dict[str, Any] = {
    "random": "nested",
    "time": "categorical",
    "knots": None,
    "exposure_window": None,
    "exposure_time": None,
}
#: method -> the ``sw.fit`` options it ignores, refused unless left at these defaults.
IGNORED_OPTIONS: dict[str, dict[str, Any]] = {
    **dict.fromkeys(STAGGERED_METHODS, _SUMMARY_UNUSED),
    **dict.fromkeys(DESIGN_BASED_METHODS, {**_SUMMARY_UNUSED, "offset": None}),
    "fixed-effects": _CELL_MODEL,
    "cluster-summary": {**_CELL_MODEL, "covariates": None, "effect": "immediate"},
}
_UNUSED_HINT = {
    **dict.fromkeys(
        STAGGERED_METHODS,
        "(a design-based estimator on cluster-period summaries); use `estimand=` / "
        "`event_times=` instead.",
    ),
    **dict.fromkeys(
        DESIGN_BASED_METHODS,
        "(a design-based estimator on cluster-period summaries with randomisation "
        "inference); use `weights=`, `n_permutations=`, `allocation=` instead (counts: "
        "`exposure=`, not `offset=`).",
    ),
    "fixed-effects": "(a GLM with cluster and period fixed effects); leave them at their defaults.",
    "cluster-summary": "(a regression of cluster-period summaries on treatment and period); "
    "leave them at their defaults.",
}


def _default_link(family: str, method: str) -> str:
    """Return the link a method uses for ``family`` when none is given."""
    table = _STAGGERED_LINK if method in STAGGERED_METHODS else _DEFAULT_LINK
    return table.get(family, "log")


def check_decay_scale(decay_scale: Any, random: str, design: Any) -> None:
    """Refuse a ``decay_scale`` that is unknown, has no decay to scale, or has no dates.

    Examples
    --------
    >>> check_decay_scale("period", "nested", None)
    >>> check_decay_scale("time", "nested", None)
    Traceback (most recent call last):
    ...
    steppedwedge.exceptions.OptionError: `decay_scale='time'` scales a decaying correlation; \
random='nested' has none. Use random='decay' or 'nested+decay'.
    """
    check_option("decay_scale", decay_scale, ("period", "time"))
    if decay_scale == "time" and "decay" not in random:
        raise OptionError(
            f"`decay_scale='time'` scales a decaying correlation; random={random!r} has none. "
            "Use random='decay' or 'nested+decay'."
        )
    if decay_scale == "time" and design is None:
        raise OptionError(
            "`decay_scale='time'` needs `design=`, a Design with period lengths or dates "
            "(e.g. Design.from_start_dates(..., 'starts', window=...)): its period mid-points "
            "give the decay distances."
        )


@dataclass(frozen=True)
class AnalysisSpec:
    """Column roles and shared options of one analysis, validated (build with :meth:`from_options`).

    Attributes
    ----------
    outcome, cluster, period, treatment : str
        Column names of the roles.
    individual, exposure, offset, trials : str or None
        Optional roles: individual id (cohorts), count exposure, log-scale offset, binomial
        trials.
    family : str
        ``"gaussian"``, ``"binomial"``, ``"poisson"`` or ``"negative_binomial"``.
    link : str
        The link, default resolved (identity for Gaussian, logit for binomial, log for
        counts); ``link_given`` is what the caller passed (None for the default).
    covariates : str or None
        Right-hand-side covariate formula, as given.
    random, time, effect : str
        Random-effects structure, secular-trend model and treatment-effect model.
    knots : tuple of float or None
        Interior spline knots (``time="spline"``).
    exposure_window : tuple of int or None
        ``(e1, e2)`` of the time-averaged exposure-time effect.
    exposure_time : int or None
        ``e`` of the point exposure-time effect.
    method : str
        Estimation method, default resolved (``"reml"`` Gaussian, ``"laplace"`` otherwise);
        ``method_given`` is what the caller passed.
    dof, vcov : str, float or None
        Denominator df rule and variance estimator; None leaves the fitter's default.
    missing : str
        ``"raise"`` or ``"drop"``.
    decay_scale : str
        ``"period"`` or ``"time"``.
    design : Design or None
        The design the rows are checked against (not part of equality).

    Examples
    --------
    >>> from steppedwedge.models.spec import AnalysisSpec
    >>> spec = AnalysisSpec.from_options(
    ...     outcome="y", cluster="ward", period="month", treatment="arm", family="poisson"
    ... )
    >>> spec.link, spec.method
    ('log', 'laplace')
    >>> spec.replace(family="binomial").link
    'logit'
    >>> spec.describe()
    "poisson GLMM (laplace), link='log', random='nested', time='categorical', effect='immediate'"
    """

    outcome: str
    cluster: str
    period: str
    treatment: str
    individual: str | None = None
    family: str = "gaussian"
    link: str = "identity"
    link_given: str | None = None
    exposure: str | None = None
    offset: str | None = None
    trials: str | None = None
    covariates: str | None = None
    random: str = "nested"
    time: str = "categorical"
    knots: tuple[float, ...] | None = None
    effect: str = "immediate"
    exposure_window: tuple[int, int] | None = None
    exposure_time: int | None = None
    method: str = "reml"
    method_given: str | None = None
    dof: str | float | None = None
    vcov: str | None = None
    missing: str = "raise"
    decay_scale: str = "period"
    design: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def from_options(
        cls,
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
        covariates: str | None = None,
        random: str = "nested",
        time: str = "categorical",
        knots: Sequence[float] | None = None,
        effect: str = "immediate",
        exposure_window: tuple[int, int] | None = None,
        exposure_time: int | None = None,
        method: str | None = None,
        dof: str | float | None = None,
        vcov: str | None = None,
        missing: str = "raise",
        decay_scale: str = "period",
        design: Any = None,
    ) -> AnalysisSpec:
        """Validate the shared options of :func:`steppedwedge.fit` and resolve their defaults.

        Parameters are those of :func:`steppedwedge.fit` (see there).  Checked here, once:
        the family, the method (and that it suits the family), ``decay_scale``, the link and
        the exposure/offset/trials roles of Gaussian mixed models, and the options that a
        fixed-effects, staggered or design-based estimator would silently ignore.  The
        fitter checks its own options (e.g. which ``random`` structures it supports).

        Returns
        -------
        AnalysisSpec

        Raises
        ------
        OptionError
            An unknown value, or an option that does not apply to the method or family.

        Examples
        --------
        >>> from steppedwedge.models.spec import AnalysisSpec
        >>> AnalysisSpec.from_options(
        ...     outcome="y", cluster="c", period="t", treatment="x", method="laplace"
        ... )
        Traceback (most recent call last):
        ...
        steppedwedge.exceptions.OptionError: method='laplace' is for non-Gaussian mixed \
models; Gaussian outcomes use method='reml' (default) or 'ml', or method='gee' / \
'cluster-summary'.
        """
        check_option("family", family, FAMILIES)
        resolved = ("reml" if family == "gaussian" else "laplace") if method is None else method
        check_option("method", resolved, METHODS)
        spec = cls(
            outcome=outcome, cluster=cluster, period=period, treatment=treatment,
            individual=individual, family=family,
            link=_default_link(family, resolved) if link is None else link, link_given=link,
            exposure=exposure, offset=offset, trials=trials, covariates=covariates,
            random=random, time=time, knots=None if knots is None else tuple(knots),
            effect=effect, exposure_window=exposure_window, exposure_time=exposure_time,
            method=resolved, method_given=method, dof=dof, vcov=vcov, missing=missing,
            decay_scale=decay_scale, design=design,
        )  # fmt: skip
        spec._check_decay_scale()
        spec._check_method_family()
        spec._check_unused()
        spec._check_effect_options()
        return spec

    # ------------------------------------------------------------------ validation
    def _check_decay_scale(self) -> None:
        check_option("decay_scale", self.decay_scale, ("period", "time"))
        if self.decay_scale != "period" and self.method not in MIXED_METHODS:
            raise OptionError(
                f"`decay_scale={self.decay_scale!r}` is available for mixed models "
                f"(method='reml', 'ml', 'laplace' or 'agq') only; got method={self.method!r}."
            )
        check_decay_scale(self.decay_scale, self.random, self.design)

    def _check_method_family(self) -> None:
        """Gaussian mixed models are REML/ML, with the identity link and no count roles."""
        method, family = self.method, self.family
        if family == "gaussian" and method in ("laplace", "agq"):
            raise OptionError(
                f"method={method!r} is for non-Gaussian mixed models; Gaussian outcomes use "
                "method='reml' (default) or 'ml', or method='gee' / 'cluster-summary'."
            )
        if family != "gaussian" and method in ("reml", "ml"):
            raise OptionError(
                f"method={method!r} is for Gaussian outcomes; family={family!r} mixed models "
                "use method='laplace' (default) or 'agq', or method='gee' / 'cluster-summary'."
            )
        if family != "gaussian" or method not in ("reml", "ml"):
            return
        if self.link_given not in (None, "identity"):
            raise OptionError(
                f"Gaussian mixed models use the identity link; got link={self.link_given!r}."
            )
        for name in ("exposure", "offset", "trials"):
            if getattr(self, name) is not None:
                raise OptionError(
                    f"`{name}` is for count or binomial outcomes; it cannot be used with "
                    "family='gaussian'."
                )

    def _check_unused(self) -> None:
        """Refuse options the method ignores (:data:`IGNORED_OPTIONS`) unless at defaults."""
        if self.method == "fixed-effects":
            self._check_fixed_effects()
        unused = IGNORED_OPTIONS.get(self.method, {})
        bad = ", ".join(f"`{k}`" for k, v in unused.items() if getattr(self, k) != v)
        if bad:
            raise OptionError(
                f"{bad} do(es) not apply to method={self.method!r} {_UNUSED_HINT[self.method]}"
            )

    def _check_effect_options(self) -> None:
        """Refuse ``knots``, ``exposure_window`` and ``exposure_time`` where nothing reads them.

        Each belongs to one choice of ``time`` or ``effect``; given with another, the fit would
        silently ignore it.
        """
        uses = (
            ("knots", self.knots, self.time == "spline", "time='spline'", f"time={self.time!r}"),
            (
                "exposure_window",
                self.exposure_window,
                self.effect in ("eti", "tate"),
                "effect='eti' or 'tate'",
                f"effect={self.effect!r}",
            ),
            (
                "exposure_time",
                self.exposure_time,
                self.effect == "pte",
                "effect='pte'",
                f"effect={self.effect!r}",
            ),
        )
        for name, value, used, needs, got in uses:
            if value is not None and not used:
                raise OptionError(
                    f"`{name}` is used only with {needs}; got {got}, which would ignore it. "
                    f"Drop `{name}` or set {needs.split(' or ')[0]}."
                )

    def _check_fixed_effects(self) -> None:
        if self.individual is not None or self.design is not None:
            raise OptionError(
                "`individual` and `design` are not used by method='fixed-effects'; drop them."
            )
        canonical = _default_link(self.family, self.method)
        if self.link_given not in (None, canonical):
            raise OptionError(
                f"method='fixed-effects' uses the canonical link of family={self.family!r}; "
                f"got link={self.link_given!r}."
            )
        if self.trials is not None:
            raise OptionError(
                "method='fixed-effects' needs individual binary rows; `trials` (aggregated "
                "events/trials) is not supported there: use method='laplace' or 'gee'."
            )

    # ------------------------------------------------------------------ use
    def replace(self, **changes: Any) -> AnalysisSpec:
        """Return a spec with some options changed, validated again.

        ``link`` and ``method`` given as None (or left at their defaults) are resolved
        again for the new family.

        Parameters
        ----------
        **changes
            Any :meth:`from_options` argument.

        Returns
        -------
        AnalysisSpec

        Examples
        --------
        >>> from steppedwedge.models.spec import AnalysisSpec
        >>> spec = AnalysisSpec.from_options(outcome="y", cluster="c", period="t", treatment="x")
        >>> spec.replace(method="ml").method
        'ml'
        """
        names = {f.name for f in dataclasses.fields(self)} - {"link_given", "method_given"}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise OptionError(f"AnalysisSpec has no option(s) {unknown}; known: {sorted(names)}.")
        given = {name: getattr(self, name) for name in names}
        given.update(link=self.link_given, method=self.method_given)
        given.update(changes)
        return AnalysisSpec.from_options(**given)

    def roles(self) -> dict[str, str | None]:
        """Return the column of each role (``outcome``, ..., ``trials``; None if unused).

        Returns
        -------
        dict

        Examples
        --------
        >>> from steppedwedge.models.spec import AnalysisSpec
        >>> AnalysisSpec.from_options(outcome="y", cluster="c", period="t", treatment="x")\
.roles()["cluster"]
        'c'
        """
        names = ("outcome", "cluster", "period", "treatment", "individual")
        counts = ("exposure", "offset", "trials")
        return {n: getattr(self, n) for n in (*names, *counts)}

    def trial_data(self, data: pd.DataFrame, **from_frame_options: Any) -> TrialData:
        """Validate ``data`` for this analysis: :meth:`TrialData.from_frame` with the roles.

        Parameters
        ----------
        data : pandas.DataFrame
            The rows (never modified).
        **from_frame_options
            Further :meth:`TrialData.from_frame` options of the fitter (``kind``,
            ``covariates`` column names, ``size``, ``allow_reversal``, ...).

        Returns
        -------
        TrialData

        Examples
        --------
        >>> import pandas as pd
        >>> from steppedwedge.models.spec import AnalysisSpec
        >>> df = pd.DataFrame({"c": [0, 0, 1, 1], "t": [0, 1, 0, 1], "x": [0, 1, 0, 0],
        ...                    "y": [1.0, 2.0, 0.5, 0.7]})
        >>> spec = AnalysisSpec.from_options(outcome="y", cluster="c", period="t", treatment="x")
        >>> spec.trial_data(df).n_clusters
        2
        """
        return TrialData.from_frame(
            data,
            **self.roles(),  # type: ignore[arg-type]
            family=self.family,
            missing=self.missing,  # type: ignore[arg-type]
            design=self.design,
            **from_frame_options,
        )

    def describe(self) -> str:
        """One line naming the model, for summaries.

        Returns
        -------
        str

        Examples
        --------
        >>> from steppedwedge.models.spec import AnalysisSpec
        >>> AnalysisSpec.from_options(outcome="y", cluster="c", period="t", treatment="x")\
.describe()
        "Gaussian LMM (reml), random='nested', time='categorical', effect='immediate'"
        """
        if self.method in MIXED_METHODS:
            kind = "Gaussian LMM" if self.family == "gaussian" else f"{self.family} GLMM"
        else:
            kind = f"{self.family} {self.method}"
        link = "" if self.family == "gaussian" else f", link={self.link!r}"
        model = f"random={self.random!r}, time={self.time!r}, effect={self.effect!r}"
        if self.method in STAGGERED_METHODS or self.method in DESIGN_BASED_METHODS:
            model = "cluster-period summaries"
        scale = f", decay_scale={self.decay_scale!r}" if self.decay_scale != "period" else ""
        return f"{kind} ({self.method}){link}, {model}{scale}"
