"""Pausing Python's cyclic garbage collector around allocation-heavy, cycle-free work.

Loading a group of models, scheduling it and validating a large plan each allocate
from 10^5 to millions of small objects that outlive the step and form no reference
cycles. The collections their allocation triggers walk every object of the process
and free nothing (up to a second on a 64-subnet load, a fifth of a 100,000-tile
validation, 40-ms outliers in OPS), so these steps run with the collector paused.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator

logger = logging.getLogger(__name__)

__all__ = ["collector_paused"]


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic collector for the block; restore whatever state it had."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
