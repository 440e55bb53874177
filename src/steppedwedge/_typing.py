"""Type aliases shared across the package."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ArrayLike = npt.ArrayLike

#: Anything accepted as ``rng=``: an integer seed, a Generator, a SeedSequence or None.
RNGLike = int | np.integer[Any] | np.random.Generator | np.random.SeedSequence | None

Family = Literal["gaussian", "binomial", "poisson", "negative_binomial"]
RandomStructure = Literal["cluster", "nested", "decay", "nested+decay", "random-slope"]
TimeEffect = Literal["categorical", "linear", "spline", "none"]
EffectType = Literal["immediate", "eti", "tate", "pte"]
Method = Literal["reml", "ml", "laplace", "agq", "gee", "cluster-summary"]
DofMethod = Literal["kenward-roger", "satterthwaite", "between-within", "normal"]
VcovType = Literal["model", "robust", "cr2", "kc", "md", "fg"]
Sampling = Literal["cross-sectional", "cohort"]
