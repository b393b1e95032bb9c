"""The one softmax both sides use, so the parity gate and the service compute probabilities alike."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """N×K logits -> N×K probabilities (float64), computed stably."""
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)
