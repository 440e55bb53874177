"""Monte-Carlo power of a stepped-wedge analysis: simulate, analyse, count rejections.

:func:`simulate_power` draws ``n_sims`` datasets with :func:`steppedwedge.simulate` (or a
user's data-generating function), analyses each with the planned analysis and returns a
:class:`SimulatedPowerResult`.  Replicate ``b`` always uses the random stream
``SeedSequence(seed).spawn(n_sims)[b]``, so results do not depend on the executor, the
number of workers or the batch size.  The data-generating model is validated once into a
:class:`~steppedwedge.simulate._spec.SimulationSpec`; the replicates run in
``_sim_worker`` and the result class is in ``_sim_result``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._parallel import make_executor, root_seed_sequence, run_batches, spawn_seeds
from .._typing import ArrayLike, RNGLike
from .._validation import check_positive_int, check_probability
from .._warnings import caller_stacklevel
from ..exceptions import DataError, DesignError, OptionError, SteppedWedgeWarning
from ..simulate import Level
from ..simulate._draw import DrawArrays
from ..simulate._spec import SimulationSpec
from ..variance import VarianceComponents
from ._fast_lmm import fast_lmm_plan
from ._sim_result import SimulatedPowerResult
from ._sim_worker import (
    _COLUMNS,
    _FRAME_ROLES,
    USABLE,
    _check_first,
    _fit_roles,
    _Job,
    _known_variance_analysis,
    _Redraw,
    _replicate,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..randomise import Allocation

__all__ = ["NullSimulationPlan", "SimulatedPowerResult", "null_simulation_plan", "simulate_power"]


def simulate_power(
    design: Any,
    *,
    effect: float | None = None,
    variance: VarianceComponents | None = None,
    cluster_size: ArrayLike | None = None,
    family: str = "gaussian",
    link: str | None = None,
    baseline: float | ArrayLike | None = None,
    time_effects: Any = None,
    effect_curve: Any = None,
    sampling: str = "cross-sectional",
    churn: float | None = None,
    dispersion: float | None = None,
    level: Level | None = None,
    dgp: Callable[[np.random.Generator], pd.DataFrame] | None = None,
    analysis: Mapping[str, Any] | Callable[[Any], Any] | str | None = None,
    allocation: Allocation | None = None,
    true_value: float | None = None,
    n_sims: int = 1000,
    alpha: float = 0.05,
    rng: RNGLike = None,
    executor: Executor | None = None,
    n_jobs: int | None = None,
    progress: bool = True,
    batch_size: int | None = None,
    fast: bool = True,
    timeout: float | None = None,
) -> SimulatedPowerResult:
    """Monte-Carlo power, type-I error, bias, RMSE and coverage of a planned analysis.

    Parameters
    ----------
    design : Design
        The design (an ``(I, T)`` treatment matrix is also accepted).
    effect, variance, cluster_size, family, link, baseline, time_effects, effect_curve, \
sampling, churn, dispersion, level
        The data-generating model, as in :func:`steppedwedge.simulate` (``effect`` on the
        link scale; real per-cluster, per-period sizes and per-cluster baselines allowed).
        Not needed when ``dgp`` is given.
    dgp : callable, optional
        A user's data-generating function ``dgp(rng) -> DataFrame`` replacing
        :func:`~steppedwedge.simulate` (picklable for process pools; see Notes).
    analysis : dict, callable or "known-variance", optional
        What to fit to each dataset: options of :func:`steppedwedge.fit` (default ``{}``,
        its defaults); a callable ``analysis(data)`` returning a result with ``estimate``,
        ``std_error``, ``pvalue`` (optionally ``df``, ``conf_int(confidence_level=)``,
        ``converged``, ``singular``), a mapping with those keys or a tuple ``(estimate,
        std_error, p_value[, conf_low, conf_high])``; or ``"known-variance"``: GLS of the
        cell means with the true variance components and a z-test (Gaussian only).
    allocation : Allocation, optional
        Re-randomise every replicate from the admissible set of
        :func:`steppedwedge.randomise` (each cluster keeps its sizes and baseline in its
        drawn sequence; ``design`` must be ``allocation.design``; see Notes).
    true_value : float, optional
        The estimand, for bias, RMSE and coverage.  Default ``effect`` (times the mean of
        ``effect_curve`` over the exposure times when a curve is given).
    n_sims : int, default 1000
        Number of replicates.
    alpha : float, default 0.05
        Two-sided size of the test; intervals for coverage are at level ``1 - alpha``.
    rng : int, numpy.random.Generator, SeedSequence or None
        Root seed; replicate ``b`` uses ``SeedSequence(rng).spawn(n_sims)[b]``.
    executor : concurrent.futures.Executor, optional
        Where to run replicates (a process pool, dask or Ray executor); default serial.
    n_jobs : int, optional
        Without ``executor``: ``n_jobs > 1`` runs on a process pool of that size.
    progress : bool, default True
        Show a progress bar (only when tqdm is installed and stderr is a terminal).
    batch_size : int, optional
        Replicates per task sent to the executor; results do not depend on it.
    fast : bool, default True
        Gaussian cross-sectional data, plain :func:`steppedwedge.fit` options: draw and fit
        the cell statistics, giving the results of refitting the rows (``False``) faster.
    timeout : float, optional
        Seconds to wait for an executor's results (unfinished replicates are ``"not-run"``).

    Returns
    -------
    SimulatedPowerResult

    Raises
    ------
    OptionError
        Invalid inputs, or the analysis rejects the first dataset (checked before the run).
    DataError
        A ``dgp`` fails on the first replicate or returns the wrong columns.

    Warns
    -----
    SteppedWedgeWarning
        The executor fails mid-run (the replicates that did not run are ``"not-run"``).

    Notes
    -----
    Power is reported among usable replicates and with failures counted as non-rejections,
    with Clopper-Pearson intervals.  Re-randomised replicates, the fast path, ``dgp``
    requirements and parallel or distributed runs (dask, Ray) are described in
    :doc:`/explanation/simulated_power`.

    References
    ----------
    .. [1] Baio G, Copas A, Ambler G, et al. (2015). Sample size calculation for a stepped
       wedge trial. Trials 16:354.

    Examples
    --------
    >>> import numpy as np
    >>> import steppedwedge as sw
    >>> from steppedwedge.planning.simulation import simulate_power
    >>> x = np.triu(np.ones((4, 5)), k=1)  # 4 clusters, one per sequence
    >>> vc = sw.VarianceComponents(sigma2=1.0, tau2=0.05)
    >>> res = simulate_power(x, effect=0.5, variance=vc, cluster_size=20,
    ...                      analysis="known-variance", n_sims=200, rng=1, progress=False)
    >>> res.n_usable
    200
    >>> 0.5 < res.power < 1.0
    True
    """
    given = SimulationSpec.pick(locals())  # the data-generating keywords, as given
    t0 = time.perf_counter()
    n_sims = check_positive_int("n_sims", n_sims)
    alpha = check_probability("alpha", alpha)
    model = _model_iv(dgp, analysis, given)
    job, truth, label = _simulate_power_iv(
        design,
        model,
        given,
        dgp=dgp,
        analysis=analysis,
        true_value=true_value,
        alpha=alpha,
        fast=bool(fast),
        allocation=allocation,
    )
    batch_size, timeout = _run_options(executor, n_jobs, batch_size, timeout)
    root = root_seed_sequence(rng)
    outcome = _run(job, spawn_seeds(root, n_sims), executor, n_jobs, batch_size, progress, timeout)
    return SimulatedPowerResult(
        replicates=_replicate_frame(job, outcome.results, alpha),
        alpha=alpha,
        n_sims=n_sims,
        true_value=truth,
        seed=_seed_record(root),
        analysis=label,
        executor_errors=_executor_errors(outcome.errors, n_sims),
        elapsed=time.perf_counter() - t0,
        allocation_clusters=None if job.redraw is None else tuple(job.redraw.allocation.clusters),
        n_admissible=None if job.redraw is None else int(job.redraw.allocation.n_admissible),
    )


def _model_iv(dgp: Any, analysis: Any, given: dict[str, Any]) -> SimulationSpec | None:
    """Validate the data-generating model (None with a user's ``dgp``)."""
    _check_model_given(
        dgp, effect=given["effect"], variance=given["variance"], cluster_size=given["cluster_size"]
    )
    if dgp is not None:
        return None
    if given["level"] is None and analysis == "known-variance":
        given = {**given, "level": "cluster-period"}  # its GLS works on cell means
    return SimulationSpec.from_options(**given)


def _run(
    job: _Job,
    seeds: list[np.random.SeedSequence],
    executor: Executor | None,
    n_jobs: int | None,
    batch_size: int | None,
    progress: bool,
    timeout: float | None,
) -> Any:
    """Check replicate 0 here, then run every replicate on the executor (in batches)."""
    _check_first(job, seeds[0])
    with make_executor(executor, n_jobs) as ex:
        return run_batches(
            _replicate,
            job,
            seeds,
            executor=ex,
            batch_size=batch_size,
            progress=progress,
            desc="simulate_power",
            timeout=timeout,
        )


def _seed_record(root: np.random.SeedSequence) -> tuple[int, ...]:
    """Return the entropy of the root seed (``SeedSequence(entropy)`` reproduces the run)."""
    entropy = root.entropy
    return tuple(int(e) for e in np.atleast_1d(entropy)) if entropy is not None else ()


def _check_model_given(dgp: Any, **model: Any) -> None:
    """Check that a ``dgp`` is callable, or that the built-in model has its inputs."""
    if dgp is not None:
        if not callable(dgp):
            raise OptionError(
                f"`dgp` must be a callable dgp(rng) -> DataFrame; got {type(dgp).__name__}."
            )
        return
    missing = [name for name, value in model.items() if value is None]
    if missing:
        raise OptionError(
            f"{', '.join('`' + m + '`' for m in missing)} must be given (or a `dgp`)."
        )


def _run_options(
    executor: Any, n_jobs: Any, batch_size: Any, timeout: Any
) -> tuple[int | None, float | None]:
    """Check the executor options; return the checked ``batch_size`` and ``timeout``."""
    if executor is not None and not isinstance(executor, Executor):
        raise OptionError(
            "`executor` must be a concurrent.futures.Executor or None; got "
            f"{type(executor).__name__}."
        )
    if n_jobs is not None:
        n_jobs = check_positive_int("n_jobs", n_jobs)
        if executor is not None and n_jobs > 1:
            raise OptionError("give either `executor` or `n_jobs`, not both.")
    if batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size)
    if timeout is not None:
        timeout = float(timeout)
        if not timeout > 0:
            raise OptionError(f"`timeout` must be a positive number of seconds; got {timeout!r}.")
    return batch_size, timeout


def _replicate_frame(job: _Job, results: list[Any], alpha: float) -> pd.DataFrame:
    """Build the per-replicate table (replicates the executor lost are ``"not-run"``)."""
    rows = [r if r is not None else (*(math.nan,) * 6, "not-run", "", None) for r in results]
    frame = pd.DataFrame(rows, columns=[*_COLUMNS, "status", "message", "sequences"])
    frame.insert(0, "replicate", np.arange(len(rows)))
    if job.redraw is None:
        frame = frame.drop(columns="sequences")
    else:
        frame.insert(
            frame.columns.get_loc("sequences"), "allocation", _allocation_index(job, frame)
        )
    usable = frame["status"].isin(USABLE)
    frame.insert(frame.columns.get_loc("status"), "rejected", usable & (frame["p_value"] < alpha))
    table: pd.DataFrame = frame
    return table


def _executor_errors(failed: list[tuple[int, int, str]], n_sims: int) -> tuple[str, ...]:
    """Describe the batches the executor lost, warning once when there are any."""
    errors = tuple(
        f"replicates {start}..{start + count - 1}: {msg}" for start, count, msg in failed
    )
    if errors:
        n_lost = sum(count for _, count, _ in failed)
        warnings.warn(
            f"the executor failed: {n_lost} of {n_sims} replicates did not run "
            f"({errors[0]}); the result uses the {n_sims - n_lost} that finished.",
            SteppedWedgeWarning,
            stacklevel=caller_stacklevel(),
        )
    return errors


def _allocation_index(job: _Job, frame: pd.DataFrame) -> pd.Series:
    """Row of ``allocation.admissible`` drawn by each replicate (<NA> if not enumerable)."""
    assert job.redraw is not None
    allocation = job.redraw.allocation
    index_of: dict[bytes, int] | None = None
    if allocation.n_admissible <= int(allocation.options["max_enumerate"]):
        adm = np.asarray(allocation.admissible, dtype=np.int8)
        index_of = {row.tobytes(): k for k, row in enumerate(adm)}
    out = [
        pd.NA
        if seq is None or index_of is None
        else index_of.get(np.asarray(seq, dtype=np.int8).tobytes(), pd.NA)
        for seq in frame["sequences"]
    ]
    return pd.Series(out, index=frame.index, dtype="Int64")


def _simulate_power_iv(
    design: Any,
    model: SimulationSpec | None,
    given: Mapping[str, Any],
    *,
    dgp: Any,
    analysis: Any,
    true_value: Any,
    alpha: float,
    fast: bool = True,
    allocation: Any = None,
) -> tuple[_Job, float | None, str]:
    """Build the worker job of :func:`simulate_power`; return it, the true value and a label.

    ``model`` is the validated data-generating model (None with a ``dgp``); ``given`` holds
    its keywords as given (with a ``dgp``, ``effect``, ``family`` and ``sampling`` still
    tell the analysis what to fit and the true value).
    """
    spec = None if model is None else model.arrays(design)
    truth = _true_value(true_value, given["effect"], model, spec)
    kind, payload, fit_roles, label = _analysis_job(
        analysis,
        spec,
        family=given["family"],
        sampling=given["sampling"],
        fast=fast and dgp is None,
        alpha=alpha,
    )
    redraw = None
    if allocation is not None:
        if model is None or spec is None:
            raise OptionError(
                "`allocation` re-randomises the built-in data-generating model; it cannot be "
                "combined with a `dgp` (draw the allocation inside your `dgp` instead)."
            )
        redraw = _redraw_iv(
            allocation,
            design,
            spec,
            kind=kind,
            fit_options=dict(analysis or {}) if kind in ("fast-lmm", "fit") else None,
            model=model.evaluated(spec),
        )
        label += f"; allocations re-drawn from {allocation.n_admissible} admissible"
    job = _Job(
        spec=spec,
        dgp=dgp,
        kind=kind,
        analysis=payload,
        alpha=alpha,
        fit_roles=fit_roles,
        redraw=redraw,
    )
    return job, truth, label


def _true_value(
    true_value: Any, effect: Any, model: SimulationSpec | None, spec: DrawArrays | None
) -> float | None:
    """Return the estimand's true value: given, or the model's (time-averaged) effect."""
    if true_value is not None:
        truth = float(true_value)
        if not math.isfinite(truth):
            raise OptionError(f"`true_value` must be finite; got {true_value!r}.")
        return truth
    if effect is None:
        return None
    if model is not None and spec is not None and model.effect_curve is not None:
        exposed = spec.exposure_time[spec.observed & (spec.exposure_time > 0)]
        max_e = int(exposed.max()) if exposed.size else 0
        curve_vals = [
            float(np.mean(spec.xc[(spec.exposure_time == e) & spec.observed]))
            for e in range(1, max_e + 1)
        ]
        return float(effect) * float(np.mean(curve_vals)) if curve_vals else float(effect)
    return float(effect)


def _analysis_job(
    analysis: Any,
    spec: DrawArrays | None,
    *,
    family: Any,
    sampling: Any,
    fast: bool,
    alpha: float,
) -> tuple[str, Any, dict[str, Any], str]:
    """Return the analysis kind, its payload, the sw.fit column roles and a label."""
    if analysis == "known-variance":
        if spec is None:
            raise OptionError(
                "analysis='known-variance' needs the built-in data-generating model, not a `dgp`."
            )
        if spec.family != "gaussian":
            raise OptionError("analysis='known-variance' is for family='gaussian' only.")
        if spec.level != "cluster-period":
            raise OptionError(
                "analysis='known-variance' works on cluster-period means; leave `level` unset."
            )
        payload = _known_variance_analysis(spec, alpha)
        return "known-variance", payload, {}, "GLS with known variance components, z-test"
    if analysis is None or isinstance(analysis, Mapping):
        return _fit_job(dict(analysis or {}), spec, family, sampling, fast, alpha)
    if callable(analysis):
        return "callable", analysis, {}, getattr(analysis, "__name__", type(analysis).__name__)
    raise OptionError(
        "`analysis` must be a dict of sw.fit options, a callable analysis(data) or "
        f"'known-variance'; got {analysis!r}."
    )


def _fit_job(
    options: dict[str, Any],
    spec: DrawArrays | None,
    family: Any,
    sampling: Any,
    fast: bool,
    alpha: float,
) -> tuple[str, Any, dict[str, Any], str]:
    """Analyse by :func:`steppedwedge.fit` options (the cell fast path when it applies)."""
    reserved = [k for k in options if k in _FRAME_ROLES]
    if reserved:
        raise OptionError(
            f"`analysis` must not set the column roles {reserved}: simulated data use "
            "fixed column names."
        )
    fit_roles = _fit_roles(spec, family, sampling)
    for key in ("family", "link"):
        if key in options:
            fit_roles.pop(key, None)
    label = "sw.fit(" + ", ".join(f"{k}={v!r}" for k, v in options.items()) + ")"
    plan = fast_lmm_plan(spec, options, alpha) if fast else None
    if plan is None:
        return "fit", options, fit_roles, label
    label += (
        f" [random={plan.random!r}, method={'reml' if plan.reml else 'ml'!r}, "
        f"dof={plan.dof!r}] on simulated cell statistics"
    )
    return "fast-lmm", plan, fit_roles, label


def _redraw_iv(
    allocation: Any,
    design: Any,
    spec: DrawArrays,
    *,
    kind: str,
    fit_options: Any,
    model: SimulationSpec,
) -> _Redraw:
    """Check that ``allocation`` randomised ``design``'s clusters; map rows to its columns."""
    from ..design import Design  # noqa: PLC0415 - avoid an import cycle at module load
    from ..randomise import Allocation  # noqa: PLC0415

    if not isinstance(allocation, Allocation):
        raise OptionError(
            "`allocation` must be an Allocation from sw.randomise(...); got "
            f"{type(allocation).__name__}."
        )
    if not isinstance(design, Design):
        raise DesignError(
            "with `allocation`, `design` must be a Design whose rows are the randomised "
            "clusters: pass `design=allocation.design`."
        )
    labels = list(spec.clusters)
    position = {c: k for k, c in enumerate(allocation.clusters)}
    unknown = [c for c in labels if c not in position]
    if unknown or len(labels) != len(position):
        raise DesignError(
            f"the rows of `design` must be the clusters `allocation` randomised "
            f"({', '.join(map(repr, allocation.clusters))}); got "
            f"{', '.join(map(repr, labels))}. Pass `design=allocation.design`."
        )
    ref = allocation.design
    same = (
        design.n_periods == ref.n_periods
        and design.n_sequences == ref.n_sequences
        and np.array_equal(design.sequence_matrix, ref.sequence_matrix, equal_nan=True)
        and np.array_equal(design.sequence_sizes, ref.sequence_sizes)
    )
    if not same:
        raise DesignError(
            "`design` does not have the sequences `allocation` was drawn for: pass "
            "`design=allocation.design`."
        )
    return _Redraw(
        allocation=allocation,
        column_of_row=np.array([position[c] for c in labels], dtype=np.intp),
        sequence_matrix=np.array(ref.sequence_matrix, dtype=float),
        clusters=tuple(labels),
        periods=spec.periods,
        model=model,
        fit_options=None if fit_options is None else dict(fit_options),
    )


# the real trials' null simulation
# ======================================================================================


@dataclass(frozen=True, eq=False)
class NullSimulationPlan:
    """Inputs of a simulation of a real trial under its real randomisation scheme.

    Built by :func:`null_simulation_plan`.  Everything is aligned with the rows of
    :attr:`design` (``allocation.design``): row ``i`` of :attr:`cluster_size` and entry ``i``
    of :attr:`baseline` belong to cluster ``design.clusters[i]``.

    Attributes
    ----------
    design : Design
        The design with the real cluster labels (``allocation.design``).
    allocation : Allocation
        The restricted (stratified) randomisation; replicates re-draw from its admissible set.
    cluster_size : numpy.ndarray
        ``(I, T)`` individuals per cluster and period (0 = none).
    baseline : numpy.ndarray
        ``(I,)`` control probability of each cluster.
    """

    design: Any
    allocation: Any
    cluster_size: np.ndarray = field(repr=False)
    baseline: np.ndarray = field(repr=False)

    def simulate_power(
        self,
        analysis: Mapping[str, Any] | Callable[[Any], Any] | None = None,
        *,
        odds_ratio: float = 1.0,
        tau2: float = 0.0,
        n_sims: int = 1000,
        rng: RNGLike = None,
        **options: Any,
    ) -> SimulatedPowerResult:
        """Run :func:`simulate_power` with the plan's allocation, sizes and baselines.

        Parameters
        ----------
        analysis : dict or callable, optional
            Default ``{"random": "cluster", "dof": "normal"}``: the random-intercept logistic
            GLMM with period effects and a Wald z test, as the evaluators' ``glmer(y ~ treatment
            + period + (1 | cluster))`` (``sw.fit``'s own GLMM default is a t test with
            I - 2 df, which is conservative with 5 clusters).
        odds_ratio : float, default 1.0
            True treatment odds ratio (1: the null, so the rejection rate is the type-I error).
        tau2 : float, default 0.0
            Cluster random-intercept variance added on top of the per-cluster baselines
            (logit scale).  0: the baselines are the only between-cluster differences.
        n_sims : int, default 1000
        rng : int, Generator, SeedSequence or None
        **options
            Other :func:`simulate_power` options (``n_jobs``, ``executor``, ``progress``,
            ``batch_size``, ``alpha``, ``time_effects``...).

        Returns
        -------
        SimulatedPowerResult
        """
        if not (isinstance(odds_ratio, (int, float)) and odds_ratio > 0):
            raise OptionError(f"`odds_ratio` must be a positive number; got {odds_ratio!r}.")
        return simulate_power(
            self.design,
            effect=math.log(odds_ratio),
            variance=VarianceComponents(sigma2=1.0, tau2=tau2),
            cluster_size=self.cluster_size,
            family="binomial",
            baseline=self.baseline,
            level="cluster-period",
            allocation=self.allocation,
            analysis={"random": "cluster", "dof": "normal"} if analysis is None else analysis,
            n_sims=n_sims,
            rng=rng,
            **options,
        )


def null_simulation_plan(
    trial: Any,
    *,
    counts: pd.DataFrame | None = None,
    follow_up: str = "18M",
    rng: RNGLike = 0,
) -> NullSimulationPlan:
    """Allocation, per-cluster per-period sizes and baselines of a council trial's null simulation.

    The evaluators of the Family Safeguarding trial checked their random-intercept GLMM by
    simulating 10,000 trials under the null: councils re-drawn to waves within the readiness
    strata, outcomes Bernoulli with each council's baseline probability, the real numbers of
    children per council and period.  This gathers those inputs from a
    :class:`~steppedwedge.datasets.SyntheticTrial` (or any object with the same
    ``start_dates``, ``window``, ``readiness``, ``allowed_waves``, ``baseline_risk``,
    ``age_range`` and ``events``).

    Parameters
    ----------
    trial : SyntheticTrial
        E.g. :func:`steppedwedge.datasets.make_fs_like`.
    counts : pandas.DataFrame, optional
        Children per council and period, columns ``cluster, period, children`` (as
        :meth:`~steppedwedge.cohort.ReferralCohort.counts` returns, periods labelled as in
        the design from the start dates).  Default: the referral cohort of ``trial.events``
        (first referral per child in the window, aged up to the trial's upper age; unborn
        children included when the age range starts at 0).
    follow_up : str, default "18M"
        Follow-up of the default referral cohort.
    rng : int, Generator or None, default 0
        Seed of the one allocation the plan holds (it fixes only the order of the design's
        rows: every replicate re-draws its own allocation).

    Returns
    -------
    NullSimulationPlan

    Examples
    --------
    >>> import steppedwedge as sw
    >>> from steppedwedge.planning.simulation import null_simulation_plan
    >>> fs = sw.datasets.make_fs_like(n_children=3000, rng=1)
    >>> plan = null_simulation_plan(fs)
    >>> plan.allocation.n_admissible, plan.cluster_size.shape
    (12, (5, 6))
    >>> bool(2900 < plan.cluster_size.sum() <= 3000)  # children in the referral cohort
    True
    >>> res = plan.simulate_power(n_sims=4, rng=2, progress=False)
    >>> res.n_sims, sorted(res.estimates.columns)[:2]
    (4, ['allocation', 'conf_high'])
    """
    from ..cohort import cohort_from_events  # noqa: PLC0415 - keeps module import light
    from ..design import Design  # noqa: PLC0415
    from ..randomise import randomise  # noqa: PLC0415

    needed = ("start_dates", "window", "readiness", "allowed_waves", "baseline_risk")
    missing = [a for a in needed if not hasattr(trial, a)]
    if missing:
        raise OptionError(
            f"`trial` must describe a council trial (a SyntheticTrial); it lacks {missing}."
        )
    design = Design.from_start_dates(dict(trial.start_dates), "starts", window=trial.window)
    names = list(design.clusters)
    councils = pd.DataFrame({"cluster": names, "readiness": [trial.readiness[c] for c in names]})
    allocation = randomise(
        design,
        councils,
        strata="readiness",
        allowed_sequences={k: list(v) for k, v in trial.allowed_waves.items()},
        rng=rng,
        alpha=None,
    )
    if counts is None:
        low, high = getattr(trial, "age_range", (None, None))
        cohort = cohort_from_events(
            trial.events,
            design=design,
            child="child_id",
            council="council",
            referral="referral_date",
            outcome_date="looked_after_date",
            birth_date="birth_date",
            follow_up=follow_up,
            age_range=(None if not low else low, high),
        )
        counts = cohort.counts()
    if not isinstance(counts, pd.DataFrame) or not {"cluster", "period", "children"} <= set(
        counts.columns
    ):
        raise DataError("`counts` must be a DataFrame with columns cluster, period, children.")
    table = counts.pivot_table(index="cluster", columns="period", values="children", aggfunc="sum")
    final = allocation.design
    unknown = [c for c in table.index if c not in set(final.clusters)]
    if unknown:
        raise DataError(f"`counts` has clusters not in the trial: {unknown}.")
    bad_periods = [p for p in table.columns if p not in set(final.periods)]
    if bad_periods:
        raise DataError(f"`counts` has periods not in the design: {bad_periods}.")
    size = table.reindex(index=list(final.clusters), columns=list(final.periods)).fillna(0.0)
    return NullSimulationPlan(
        design=final,
        allocation=allocation,
        cluster_size=size.to_numpy(dtype=float),
        baseline=np.array([float(trial.baseline_risk[c]) for c in final.clusters]),
    )
