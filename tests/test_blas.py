"""``_core.blas.single_threaded_blas``: one BLAS thread inside, the caller's limits after."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from steppedwedge._core.blas import single_threaded_blas


def _blas_threads() -> list[int]:
    return [int(lib["num_threads"]) for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_one_thread_inside_and_the_callers_limit_restored() -> None:
    np.ones((4, 4)) @ np.ones((4, 4))  # BLAS loaded
    with threadpool_limits(limits=2, user_api="blas"):  # a caller's own setting
        before = _blas_threads()
        if not before or any(n != 2 for n in before):
            pytest.skip("BLAS cannot run two threads here (one core)")
        with single_threaded_blas():
            assert all(n == 1 for n in _blas_threads())
            with single_threaded_blas():  # nested: still one thread
                assert all(n == 1 for n in _blas_threads())
            assert all(n == 1 for n in _blas_threads())  # the inner exit did not restore
        assert _blas_threads() == before


def test_a_worker_thread_leaves_the_limits_alone() -> None:
    """Outside the main thread the block is a no-op (OpenBLAS settings are process-wide)."""
    np.ones((4, 4)) @ np.ones((4, 4))
    before = _blas_threads()
    seen: list[list[int]] = []

    def worker() -> None:
        with single_threaded_blas():
            seen.append(_blas_threads())

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [before]
    assert _blas_threads() == before


def test_an_error_inside_still_restores() -> None:
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        if not before or any(n != 2 for n in before):
            pytest.skip("BLAS cannot run two threads here (one core)")
        try:
            with single_threaded_blas():
                raise ValueError("boom")
        except ValueError:
            pass
        assert _blas_threads() == before
