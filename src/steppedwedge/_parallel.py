"""Seeded, batched execution of independent replicates on any executor.

Every replicate ``b`` gets its own random stream, ``SeedSequence(seed).spawn(n)[b]``, so a
replicate's result depends only on the seed and ``b``: it is the same whether replicates run
serially, on two processes, on a dask cluster or in batches of any size.

Work is shipped to the executor in batches (one task per batch, not per replicate) so the
per-task overhead of process pools and distributed schedulers is paid a few times, not
thousands.  A failure of the executor itself (a killed worker, a broken pool, a scheduler
that goes away) never hangs the run: the replicates of the failed batches are reported as
not run and every finished batch is kept.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from concurrent.futures import TimeoutError as FuturesTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from ._core.blas import single_threaded_blas
from ._typing import RNGLike
from .exceptions import OptionError

__all__ = [
    "BatchOutcome",
    "default_batch_size",
    "make_executor",
    "root_seed_sequence",
    "run_batches",
    "spawn_seeds",
]

T = TypeVar("T")
R = TypeVar("R")


def root_seed_sequence(rng: RNGLike) -> np.random.SeedSequence:
    """Return the root :class:`~numpy.random.SeedSequence` of a seeded run.

    An ``int`` gives ``SeedSequence(rng)`` (so the same integer always gives the same
    streams); a ``SeedSequence`` is used as given; a ``Generator`` contributes 128 bits of
    entropy drawn from it (reproducible from the generator's state, and advancing it);
    ``None`` draws fresh OS entropy.
    """
    if isinstance(rng, np.random.SeedSequence):
        return rng
    if isinstance(rng, np.random.Generator):
        entropy = rng.integers(0, 2**32, size=4, dtype=np.uint64)
        return np.random.SeedSequence([int(e) for e in entropy])
    if rng is None:
        return np.random.SeedSequence()
    if isinstance(rng, bool) or not isinstance(rng, (int, np.integer)):
        raise TypeError(
            "`rng` must be an int seed, a numpy.random.Generator, a SeedSequence or None; "
            f"got {type(rng).__name__}."
        )
    if rng < 0:
        raise OptionError(f"`rng` must be a non-negative integer seed; got {rng}.")
    return np.random.SeedSequence(int(rng))


def spawn_seeds(root: np.random.SeedSequence, n: int) -> list[np.random.SeedSequence]:
    """Spawn ``n`` independent child seed sequences of ``root`` (one per replicate).

    The children are derived from a fresh copy of ``root`` so that calling this twice on
    the same root gives the same children (``SeedSequence.spawn`` itself is stateful).
    """
    fresh = np.random.SeedSequence(
        entropy=root.entropy, spawn_key=root.spawn_key, pool_size=root.pool_size
    )
    return fresh.spawn(n)


def default_batch_size(n_tasks: int, n_workers: int) -> int:
    """About four batches per worker (load balance) and at most 1,000 replicates a batch."""
    n_workers = max(1, n_workers)
    return max(1, min(1000, math.ceil(n_tasks / (4 * n_workers))))


def executor_workers(executor: Executor | None) -> int:
    """Best guess at the number of workers behind ``executor`` (1 when serial)."""
    if executor is None:
        return 1
    n = getattr(executor, "_max_workers", None)
    if isinstance(n, int) and n > 0:
        return n
    client = getattr(executor, "_client", None)  # dask.distributed ClientExecutor
    if client is not None:
        try:
            return max(1, int(sum(client.nthreads().values())))
        except Exception:  # pragma: no cover - scheduler not reachable
            pass
    return os.cpu_count() or 1


@contextmanager
def make_executor(executor: Executor | None, n_jobs: int | None) -> Iterator[Executor | None]:
    """Yield the executor to use: the caller's, a process pool for ``n_jobs > 1``, or None.

    A pool created here is shut down on exit; a caller's executor is left running.
    """
    if executor is not None or n_jobs is None or n_jobs == 1:
        yield executor
        return
    pool = ProcessPoolExecutor(max_workers=n_jobs)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True, slots=True)
class BatchOutcome(Generic[R]):
    """Results of a batched run, in task order.

    ``results[k]`` is the result of task ``k``, or None if its batch never finished; the
    error of each failed batch is kept in ``errors`` as ``(first_task, n_tasks, message)``.
    """

    results: list[R | None]
    errors: list[tuple[int, int, str]]


def _run_batch(func: Callable[[Any, T], R], shared: Any, tasks: Sequence[T]) -> list[R]:
    """Run one batch with single-threaded BLAS.

    Replicates work on tiny matrices, where multi-threaded BLAS only adds overhead and,
    with one worker per core, oversubscribes the machine (threads spinning against each
    other make small fits several times slower).  The limit holds in a process's main thread (the
    process pool's workers); tasks run in threads (a
    ``ThreadPoolExecutor``, dask's worker threads) keep the process's BLAS setting: OpenBLAS
    settings made from other threads are not reliably restored (see ``_core.blas``), so set
    ``OPENBLAS_NUM_THREADS=1`` for threaded executors.
    """
    with single_threaded_blas():
        return [func(shared, task) for task in tasks]


def _progress_bar(total: int, enabled: bool, desc: str) -> Any:
    """Return a tqdm bar if asked for, tqdm is installed and stderr is a terminal; else None."""
    if not enabled or not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        return None
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="rep", leave=False)


def run_batches(
    func: Callable[[Any, T], R],
    shared: Any,
    tasks: Sequence[T],
    *,
    executor: Executor | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    desc: str = "replicates",
    timeout: float | None = None,
) -> BatchOutcome[R]:
    """Apply ``func(shared, task)`` to every task, in batches, on ``executor``.

    Parameters
    ----------
    func : callable
        A picklable (module-level) function; for an executor it and ``shared`` are sent once
        per batch.
    shared : object
        Read-only inputs common to every task (picklable).
    tasks : sequence
        One entry per replicate, e.g. its ``SeedSequence``.
    executor : concurrent.futures.Executor, optional
        None runs serially in this process.
    batch_size : int, optional
        Tasks per submitted batch; default :func:`default_batch_size`.
    progress : bool
        Show a tqdm bar (only if tqdm is installed and stderr is a terminal).
    timeout : float, optional
        Seconds to wait for the executor's batches; batches unfinished by then are
        cancelled and recorded as errors (so a stuck cluster cannot hang the run).

    Returns
    -------
    BatchOutcome
        The results in task order.  An exception raised by ``func`` itself propagates;
        ``func`` should catch and classify per-task errors.  A failure of the executor (a
        batch's future raising, e.g. ``BrokenProcessPool``) leaves that batch's results as
        None and records the error.
    """
    n = len(tasks)
    size = batch_size or default_batch_size(n, executor_workers(executor))
    starts = list(range(0, n, size))
    results: list[R | None] = [None] * n
    errors: list[tuple[int, int, str]] = []
    bar = _progress_bar(n, progress, desc)
    try:
        if executor is None:
            for start in starts:
                chunk = tasks[start : start + size]
                results[start : start + len(chunk)] = _run_batch(func, shared, chunk)
                if bar is not None:
                    bar.update(len(chunk))
            return BatchOutcome(results, errors)
        futures: dict[Future[list[R]], int] = {}
        for start in starts:
            chunk = list(tasks[start : start + size])
            try:
                fut = executor.submit(_run_batch, func, shared, chunk)
            except Exception as exc:  # executor already broken or shut down
                errors.append((start, len(chunk), f"{type(exc).__name__}: {exc}"))
                continue
            futures[fut] = start
        pending = set(futures)
        try:
            for fut in as_completed(futures, timeout=timeout):
                pending.discard(fut)
                start = futures[fut]
                count = min(size, n - start)
                try:
                    out = fut.result()
                except Exception as exc:
                    errors.append((start, count, f"{type(exc).__name__}: {exc}"))
                else:
                    results[start : start + len(out)] = out
                if bar is not None:
                    bar.update(count)
        except FuturesTimeout:
            for fut in pending:
                fut.cancel()
                start = futures[fut]
                count = min(size, n - start)
                errors.append((start, count, f"timed out after {timeout} s"))
    finally:
        if bar is not None:
            bar.close()
    errors.sort()
    return BatchOutcome(results, errors)
