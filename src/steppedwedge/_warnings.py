"""One helper that issues the library's warnings at the caller's line.

A hard-coded ``stacklevel`` points at whichever internal module happens to sit that many frames
up, so the same warning is attributed to ``models/gee.py`` from one entry point and to the user's
script from another.  :func:`warn` walks the stack instead and attributes the warning to the
first frame outside the ``steppedwedge`` package (the user's line), as pandas' ``find_stack_level``
does.
"""

from __future__ import annotations

import inspect
import os
import warnings

from .exceptions import SteppedWedgeWarning

__all__ = ["warn", "caller_stacklevel"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def caller_stacklevel() -> int:
    """Return the ``stacklevel`` that points :func:`warnings.warn` at the first non-library frame.

    To be passed by the library function that calls :func:`warnings.warn` itself
    (``warnings.warn(msg, cat, stacklevel=caller_stacklevel())``).  Test files are outside the
    package, so a warning raised under pytest points at the test's line.
    """
    frame = inspect.currentframe()
    level = 0
    try:
        # count the library frames from the one calling warnings.warn up to the user's frame
        f = frame.f_back if frame is not None else None
        while f is not None:
            filename = os.path.abspath(f.f_code.co_filename)
            if not filename.startswith(_PACKAGE_DIR + os.sep):
                break
            level += 1
            f = f.f_back
    finally:
        del frame
    return level + 1


def warn(message: str, category: type[Warning] = SteppedWedgeWarning) -> None:
    """Issue ``message`` as ``category``, attributed to the first frame outside the library.

    Parameters
    ----------
    message : str
        The warning text: what happened, and what to do about it.
    category : type of Warning, default SteppedWedgeWarning
        Use a subclass of :class:`~steppedwedge.SteppedWedgeWarning`.

    Examples
    --------
    >>> import warnings
    >>> from steppedwedge._warnings import warn
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn("a boundary fit")
    >>> caught[0].message.args[0]
    'a boundary fit'
    """
    warnings.warn(message, category, stacklevel=caller_stacklevel())
