"""Reading a job's stored result the way the service does."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.artifacts import AttributionMap, unpack
from jobs.store import JobStore


def result_values(store: JobStore, job_id: str) -> NDArray[Any] | None:
    """The first attribution's values of a stored result, or None when there is none."""
    packed = store.get_artifacts(job_id)
    if packed is None:
        return None
    artifacts, _ = unpack(packed)
    for a in artifacts:
        if isinstance(a, AttributionMap):
            return np.asarray(a.values)
    return None
