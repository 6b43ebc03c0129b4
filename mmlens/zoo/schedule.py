"""The learning-rate schedule both shipped models train with."""

import math
from collections.abc import Callable


def warmup_cosine(steps: int) -> Callable[[int], float]:
    """LambdaLR factor: linear warm-up over 5 % of `steps`, then cosine decay to 10 %."""
    warmup = max(1, steps // 20)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor
