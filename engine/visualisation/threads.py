"""BLAS on one thread while an optimisation loop runs.

The loop alternates ONNX Runtime passes (on its own thread pool) with small numpy matrix
products (the resizes). Multi-threaded BLAS on those products fights the runtime's pool
and any other process for the cores: on a loaded 2-core host one resize took 54 ms with
OpenBLAS's threads and 10 ms on one. The limit is process-wide (BLAS has one thread
count), so it is reference-counted: concurrent loops keep it until the last one ends,
and the count in force before the first is restored.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from threadpoolctl import threadpool_limits

_lock = threading.Lock()
_holders = 0
_limit: Any = None


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    global _holders, _limit
    with _lock:
        if _holders == 0:
            _limit = threadpool_limits(limits=1, user_api="blas")
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _limit is not None:
                _limit.restore_original_limits()
                _limit = None
