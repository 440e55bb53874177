"""Benchmark: closed-form variance-parameter Hessian vs the forward-difference columns.

Run ``python benchmarks/bench_laplace_hessian.py [n_sets]`` (not a test; default 10 data
sets for the columns, 4 x n_sets for the fits).  The
data are the count audit of ``tests/calibration_counts.py`` (17 councils x 20 quarters,
Poisson ``nested+decay`` with the child populations as exposure, null effect), in the
units the fitter builds.  At each data set's optimum (and at a point away from it) the
script times, in the same run with single-threaded BLAS (CPU time, ``time.process_time``,
best of 5 repetitions of 50 calls):

* ``laplace_hessian.variance_hessian``: the 3 variance columns in closed form;
* ``_Objective.jacobian_columns``: forward differences of the exact gradient (a re-solve of
  the modes at ``theta + h e_j`` for the 3 variance parameters in one tiled pass);
* ``_Objective.state``: one evaluation (modes, value, gradient, ``beta`` Hessian);

and prints the medians, the ratio ``jacobian_columns / variance_hessian`` and the largest
difference of the two (relative to each column's largest entry: the forward differences'
own O(h) and mode-tolerance error).  Then whole fits (``sw.fit(..., family="poisson",
random="nested+decay")``, CPU best of 3 per data set, the two alternating): the fitter as
it is against the same fitter with ``_Objective.exact_columns`` replaced by the forward
differences it replaced (``jacobian_columns``; this peer differences once more at the
optimum than the old engine, which reused its last Newton iteration's columns there), with
the largest change of an estimate and of a standard error.  Timings depend on the
machine's load; compare the ratios.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from calibration_counts import ROLES, council_scenario  # noqa: E402

import steppedwedge as sw  # noqa: E402
from steppedwedge._core import laplace as _laplace  # noqa: E402
from steppedwedge._core.families import make_family  # noqa: E402
from steppedwedge._core.laplace import UnitData, _Objective, ar1_factor  # noqa: E402
from steppedwedge._core.laplace_hessian import variance_hessian  # noqa: E402


def _units(seed: int) -> tuple[UnitData, np.ndarray]:
    """The fitter's units of one audit data set and its optimum ``theta``."""
    d = council_scenario(17).draw(0.0, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sw.fit(d, **ROLES, family="poisson", random="nested+decay")
    state = res._state  # type: ignore[attr-defined]
    core = state.core
    return state.ud, np.r_[core.beta, core.sigma]


def _best(fn, n: int = 50, reps: int = 5) -> float:  # type: ignore[no-untyped-def]
    best = math.inf
    for _ in range(reps):
        t0 = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - t0) / n)
    return 1e3 * best


def _one(ud: UnitData, theta: np.ndarray) -> tuple[float, float, float, float]:
    fam = make_family("poisson")
    obj = _Objective(ud, fam, 1)
    p, kv = ud.x.shape[2], ud.n_var
    _, g, _ = obj.state(theta)
    st = obj._last[1]
    sig = obj.split(theta)[1]
    cols = np.arange(p, p + kv)

    def closed() -> np.ndarray:
        fac = ar1_factor(np.tanh(sig[ud.n_comp]), ud.ar1[1], deriv=True)  # type: ignore[index]
        return np.asarray(variance_hessian(ud, fam, st, sig, ar1_factors=fac))

    fd = obj.jacobian_columns(theta, g, cols)
    err = float((np.abs(fd[: p + kv] - closed()) / np.abs(closed()).max(axis=0)).max())
    t_closed = _best(closed)
    t_fd = _best(lambda: obj.jacobian_columns(theta, g, cols))
    t_state = _best(lambda: obj.state(theta))
    return t_closed, t_fd, t_state, err


def _forward(self, theta, g0, cols, st, alpha):  # type: ignore[no-untyped-def]
    """The peer: forward-difference columns where the fitter now takes closed-form ones."""
    return self.jacobian_columns(theta, g0, cols)


def _fits(n_sets: int) -> None:
    sets = [council_scenario(17).draw(0.0, s) for s in range(100, 100 + n_sets)]
    closed = _Objective.exact_columns
    cpu = {"closed": np.full(n_sets, np.inf), "forward": np.full(n_sets, np.inf)}
    est: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
    for rep in range(3):
        for i, d in enumerate(sets):
            for kind in ("closed", "forward") if (i + rep) % 2 else ("forward", "closed"):
                _laplace._Objective.exact_columns = closed if kind == "closed" else _forward
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t0 = time.process_time()
                    res = sw.fit(d, **ROLES, family="poisson", random="nested+decay")
                    cpu[kind][i] = min(cpu[kind][i], time.process_time() - t0)
                core = res._state.core  # type: ignore[attr-defined]
                h = core.hessian[np.ix_(core.free, core.free)]
                est[kind, i] = np.r_[core.beta, core.sigma], np.sqrt(np.diag(np.linalg.inv(h)))
    _laplace._Objective.exact_columns = closed
    med = {k: 1e3 * float(np.median(v)) for k, v in cpu.items()}
    ratio = med["forward"] / med["closed"]
    print(f"fits ({n_sets} sets): closed form {med['closed']:.1f} ms, forward differences "
          f"{med['forward']:.1f} ms (medians); ratio {ratio:.2f}")  # fmt: skip
    d_est = max(np.abs(est["closed", i][0] - est["forward", i][0]).max() for i in range(n_sets))
    d_se = max(
        (np.abs(est["closed", i][1] - est["forward", i][1]) / est["forward", i][1]).max()
        for i in range(n_sets)
        if est["closed", i][1].size == est["forward", i][1].size
    )
    print(f"largest change: estimate {d_est:.1e}, standard error {d_se:.1e} (relative)")


def main(n_sets: int = 10) -> None:
    rows = []
    with threadpool_limits(1):
        for seed in range(100, 100 + n_sets):
            ud, theta = _units(seed)
            p = ud.x.shape[2]
            off = theta.copy()
            off[p:] = [0.3, 0.15, math.atanh(0.9)]  # a point away from the optimum
            for th in (theta, off):
                if th[p + 1] > 1e-5:  # gamma > 0 (phi identified)
                    rows.append(_one(ud, th))
    t = np.array(rows)
    med = np.median(t, axis=0)
    print(f"{len(rows)} points (audit nested+decay, 17 x 20, q = 21, p = 21), 1 BLAS thread")
    print(f"variance_hessian   {med[0]:.3f} ms (median)")
    print(f"jacobian_columns   {med[1]:.3f} ms (median)")
    print(f"state evaluation   {med[2]:.3f} ms (median)")
    print(f"ratio jacobian_columns / variance_hessian: {np.median(t[:, 1] / t[:, 0]):.2f}")
    print(f"largest |forward - closed| / column scale: {t[:, 3].max():.2e}")
    with threadpool_limits(1):
        _fits(4 * n_sets)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
