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


def test_concurrent_blocks_share_one_limit() -> None:
    """Threads overlapping in time: the limit holds until the last one leaves.

    (No outer ``threadpool_limits`` here: OpenBLAS ignores a worker thread's setting while
    the main thread holds an explicit one.)
    """
    np.ones((4, 4)) @ np.ones((4, 4))
    before = _blas_threads()
    both_in, first_out, done = threading.Barrier(2), threading.Event(), threading.Event()
    seen: dict[str, list[int]] = {}

    def first() -> None:
        with single_threaded_blas():
            both_in.wait()
        first_out.set()

    def second() -> None:
        with single_threaded_blas():
            both_in.wait()
            first_out.wait()
            seen["after the first left"] = _blas_threads()
        done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert done.is_set()
    assert all(n == 1 for n in seen["after the first left"])
    assert _blas_threads() == before


def test_an_error_inside_still_restores() -> None:
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        try:
            with single_threaded_blas():
                raise ValueError("boom")
        except ValueError:
            pass
        assert _blas_threads() == before
