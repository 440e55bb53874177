"""Numerical kernels: numpy/scipy only (and threadpoolctl for their BLAS threads), no pandas.

Everything here works on plain arrays shaped by cluster (``I``), period (``T``) and fixed
effect (``p``).  The layers above (design, models, inference, planning) turn user objects into these
arrays; this layer never imports from the rest of the package.
"""
