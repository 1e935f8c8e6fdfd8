"""Adam (Kingma & Ba), as torch.optim.Adam with its defaults, for gradient ascent in numpy."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


class Adam:
    """``ascend(p, g)`` moves ``p`` up the gradient ``g`` (in place) and returns it."""

    def __init__(
        self,
        shape: tuple[int, ...],
        lr: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        dtype: Any = np.float32,
    ) -> None:
        self.lr = lr
        self.b1, self.b2 = betas
        self.eps = eps
        self.m = np.zeros(shape, dtype)
        self.v = np.zeros(shape, dtype)
        self.t = 0

    def ascend(self, p: NDArray[Any], g: NDArray[Any]) -> NDArray[Any]:
        self.t += 1
        self.m *= self.b1
        self.m += (1.0 - self.b1) * g
        self.v *= self.b2
        self.v += (1.0 - self.b2) * (g * g)
        step = self.lr / (1.0 - self.b1**self.t)
        denom = np.sqrt(self.v / (1.0 - self.b2**self.t)) + self.eps
        p += step * self.m / denom
        return p
