"""Single-threaded BLAS for work on many tiny matrices (numpy, scipy, threadpoolctl).

The engines batch thousands of small products and factorisations (``(I, q, q)`` blocks with
``q`` around 20).  Multi-threaded OpenBLAS splits each call over the cores, and at these
sizes the threads' start-up and synchronisation cost more than the arithmetic: a Poisson
``nested+decay`` GLMM of 17 councils x 20 quarters takes about 25% more CPU time with two
BLAS threads than with one, and one worker per core in a simulation oversubscribes the
machine.  :func:`single_threaded_blas` limits BLAS to one thread for the duration of a
block and restores the caller's setting afterwards.

Why our own wrapper around threadpoolctl: ``threadpool_limits`` scans the loaded libraries
on every entry (about 2 ms, as much as a Laplace evaluation), so the controller is built
once and reused; nested entries (an engine called inside a simulation batch) share one
limit, set on the first entry and restored on the last exit.  Only the main thread changes
the limit: OpenBLAS's thread count is process-wide, and a setting changed from other threads
is not reliably seen or restored (measured with OpenBLAS 0.3.30), so in a worker thread (a
threaded executor) the block runs with whatever the process has.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["single_threaded_blas"]

#: Nesting depth, the active limiter and the controller (touched by the main thread only).
_STATE: dict[str, Any] = {"depth": 0, "limiter": None, "controller": None}


def _controller() -> Any:
    """Return the threadpoolctl controller, built on first use (numpy and scipy loaded by then)."""
    if _STATE["controller"] is None:
        from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped,unused-ignore]

        _STATE["controller"] = ThreadpoolController()
    return _STATE["controller"]


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the block with one BLAS thread; the previous limits are restored on the last exit.

    Re-entrant: nested blocks share one limit, set by the first to enter and restored by the
    last to leave.  A no-op outside the main thread (see the module notes).

    Examples
    --------
    >>> import numpy as np
    >>> with single_threaded_blas():
    ...     x = np.ones((30, 30)) @ np.ones((30, 30))
    >>> float(x[0, 0])
    30.0

    References
    ----------
    threadpoolctl documentation, "Limiting the number of threads":
    https://github.com/joblib/threadpoolctl
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _STATE["depth"] == 0:
        _STATE["limiter"] = _controller().limit(limits=1, user_api="blas")
    _STATE["depth"] += 1
    try:
        yield
    finally:
        _STATE["depth"] -= 1
        if _STATE["depth"] == 0:
            _STATE["limiter"].restore_original_limits()
            _STATE["limiter"] = None
