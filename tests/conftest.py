"""Shared pytest configuration: hypothesis profiles and common fixtures."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# "ci" (the default, also on a clean developer machine): derandomised -- the same examples
# every run, no example database -- so a test run never fails at random.  "dev" draws fresh
# random examples (HYPOTHESIS_PROFILE=dev, or pytest --hypothesis-seed=N) to explore;
# "nightly" explores harder.  A failure found there becomes an @example or a fixed test.
settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("nightly", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, seeded generator for each test."""
    return np.random.default_rng(20261126)


@pytest.fixture(autouse=True)
def _matplotlib_agg(monkeypatch: pytest.MonkeyPatch) -> None:
    """Use a non-interactive backend whenever a test imports matplotlib."""
    monkeypatch.setenv("MPLBACKEND", "Agg")


# Reference-generating scripts (numpy scripts beside the R scripts) are not test modules;
# several share a basename (make_data.py), which --doctest-modules would collide on.
collect_ignore_glob = ["reference/*"]
