"""The outer optimizer: AdamW with linear warmup and cosine decay after global-norm clipping.
Steps without a usable meta-gradient are skipped whole by the loop (`outer.loop.outer_step`).

>>> s = OuterOptimizer(peak_lr=3e-3, end_lr=1e-3, warmup_steps=10)
>>> tx, schedule = s.build(num_steps=200)
>>> round(float(schedule(10)), 9)
0.003
"""

from __future__ import annotations

import dataclasses

import optax


@dataclasses.dataclass(frozen=True)
class OuterOptimizer:
    """The outer optimizer's settings (`config.outer`)."""

    peak_lr: float = 3e-3
    end_lr: float = 1e-3
    warmup_steps: int = 10
    weight_decay: float = 1e-4
    clip: float = 1.0
    b1: float = 0.9
    b2: float = 0.999

    def schedule(self, num_steps: int) -> optax.Schedule:
        """Linear warmup from 0 to peak_lr, then cosine decay to end_lr at num_steps."""
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0, peak_value=self.peak_lr, warmup_steps=self.warmup_steps, decay_steps=num_steps,
            end_value=self.end_lr,
        )

    def build(self, num_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
        """(transformation, learning-rate schedule) for a run of num_steps meta-steps."""
        schedule = self.schedule(num_steps)
        tx = optax.chain(
            optax.clip_by_global_norm(self.clip),
            optax.adamw(schedule, b1=self.b1, b2=self.b2, weight_decay=self.weight_decay),
        )
        return tx, schedule
