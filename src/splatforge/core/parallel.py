"""One process-wide lock around Numba's parallel kernels, so two threads may render at once.

Numba runs `parallel=True` kernels on a threading layer: TBB or OpenMP when one loads, else its
own "workqueue" layer, which aborts the whole process when two Python threads launch parallel
kernels at the same time ("Concurrent access has been detected"). That happens on machines
without an OpenMP runtime or TBB (macOS without libomp, slim containers) as soon as the viewer
renders a still on viser's threads while `train --viewer` trains on its own.

Every parallel kernel is therefore wrapped by `serialized`: its calls from Python take one
re-entrant lock. The kernels already use every core, so two at once would only take turns (or,
under TBB and OpenMP, oversubscribe the cores); an uncontended lock costs well under a
microsecond per call. A kernel called from other Numba code must be given unwrapped
(`.kernel`).
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable

KERNEL_LOCK = threading.RLock()

__all__ = ["KERNEL_LOCK", "serialized"]


def serialized(kernel: Callable[..., Any]) -> Callable[..., Any]:
    """`kernel` (a Numba dispatcher) called under KERNEL_LOCK; the dispatcher stays at `.kernel`."""

    @functools.wraps(kernel)
    def call(*args: Any, **kwargs: Any) -> Any:
        with KERNEL_LOCK:
            return kernel(*args, **kwargs)

    call.kernel = kernel  # type: ignore[attr-defined]
    return call
