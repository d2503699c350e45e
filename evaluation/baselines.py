"""The baselines users run, as one table: each a hyperparameter grid over one of three compiled
optimizer families, every hyperparameter traced so that a whole grid runs in one program.

| baseline | optimizer | schedule | tuned on |
|---|---|---|---|
| `adam` | `optax.adam` | constant | learning rate 1e-4 … 1e-1 (7 half-decades) |
| `adam_cos` | `optax.adam` | 5% linear warmup from 0, cosine decay to 0 | the same |
| `adamw` | `optax.adamw` (decoupled decay, scaled by the learning rate) | constant | the same × weight decay {1e-4, 1e-2, 1e-1} |
| `adamw_cos` | `optax.adamw` | warmup + cosine | the same × weight decay |
| `sgd` | `optax.sgd`, momentum 0.9 | constant | learning rate 1e-3 … 1 |
| `lion` | `optax.lion`, no weight decay | constant | learning rate 1e-5 … 1e-2 |

A row of hyperparameters is `(learning rate, weight decay, cosine)` (`cosine` 1.0 for warmup +
cosine, 0.0 for constant), so Adam and AdamW, constant and scheduled, share one program: with
weight decay 0 `optax.adamw` adds exactly zero and is Adam.

>>> [b.name for b in BASELINES.values()]
['adam', 'adam_cos', 'adamw', 'adamw_cos', 'sgd', 'lion']
>>> len(BASELINES["adamw_cos"].rows())
21
>>> BASELINES["adam_cos"].rows()[0]
(0.0001, 0.0, 1.0)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import optax

WARMUP_FRACTION = 0.05


def half_decades(lo: float, hi: float) -> tuple[float, ...]:
    """Log-spaced points from 10**lo to 10**hi in half-decade steps (lo, hi multiples of 0.5)."""
    return tuple(float(f"{10.0 ** (e / 2):.3g}") for e in range(round(2 * lo), round(2 * hi) + 1))


def check_grid(name: str, grid: Sequence[float]) -> tuple[float, ...]:
    """The grid as floats; an empty grid or a value that is not finite and positive is a ValueError."""
    values = tuple(float(g) for g in grid)
    if not values or not all(math.isfinite(g) and g > 0 for g in values):
        raise ValueError(f"grid {name!r} must be non-empty, finite and positive, got {list(grid)}")
    return values


def warmup_cosine(num_steps: int) -> optax.Schedule:
    """The users' schedule, peak 1: linear warmup from 0 over 5% of the run, cosine decay to 0."""
    warmup = max(1, round(WARMUP_FRACTION * num_steps))
    return optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup, max(num_steps, warmup + 1), 0.0)


def scheduled(lr: jax.Array, cosine: jax.Array, num_steps: int) -> optax.Schedule:
    """`lr` times warmup + cosine where `cosine` is 1, constant `lr` where it is 0 (both traceable)."""
    shape = warmup_cosine(num_steps)
    return lambda count: lr * jnp.where(cosine > 0.5, shape(count), 1.0)


def adam_family(hp: jax.Array, num_steps: int) -> optax.GradientTransformation:
    lr, wd, cosine = hp[0], hp[1], hp[2]
    return optax.adamw(scheduled(lr, cosine, num_steps), weight_decay=wd)


def sgd_family(hp: jax.Array, num_steps: int) -> optax.GradientTransformation:
    return optax.sgd(scheduled(hp[0], hp[2], num_steps), momentum=0.9)


def lion_family(hp: jax.Array, num_steps: int) -> optax.GradientTransformation:
    return optax.lion(scheduled(hp[0], hp[2], num_steps), weight_decay=0.0)


FAMILIES = {"adam": adam_family, "sgd": sgd_family, "lion": lion_family}


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A baseline: a family, a schedule, and the grids it is tuned on."""

    name: str
    family: str
    cosine: bool
    lrs: tuple[float, ...]
    weight_decays: tuple[float, ...] = (0.0,)
    description: str = ""

    def rows(self) -> list[tuple[float, float, float]]:
        """Every (learning rate, weight decay, cosine) of the grid, learning rate fastest."""
        return [(lr, wd, float(self.cosine)) for wd in self.weight_decays for lr in self.lrs]

    def make(self, hp: Any, num_steps: int) -> optax.GradientTransformation:
        """This baseline's optimizer at one row of hyperparameters (concrete or traced)."""
        return FAMILIES[self.family](jnp.asarray(hp, jnp.float32), num_steps)

    def grid(self) -> dict[str, list[float]]:
        out = {"learning_rate": list(self.lrs)}
        if self.weight_decays != (0.0,):
            out["weight_decay"] = list(self.weight_decays)
        return out


ADAM_LRS = half_decades(-4, -1)
WEIGHT_DECAYS = (1e-4, 1e-2, 1e-1)
BASELINES: dict[str, Baseline] = {b.name: b for b in (
    Baseline("adam", "adam", False, ADAM_LRS, description="Adam, constant learning rate"),
    Baseline("adam_cos", "adam", True, ADAM_LRS, description="Adam, 5% warmup + cosine to 0"),
    Baseline("adamw", "adam", False, ADAM_LRS, WEIGHT_DECAYS, description="AdamW, constant learning rate"),
    Baseline("adamw_cos", "adam", True, ADAM_LRS, WEIGHT_DECAYS, description="AdamW, 5% warmup + cosine to 0"),
    Baseline("sgd", "sgd", False, half_decades(-3, 0), description="SGD, momentum 0.9, constant"),
    Baseline("lion", "lion", False, half_decades(-5, -2), description="Lion, constant, no weight decay"),
)}
# The untuned reference users start from: AdamW with warmup + cosine at its common defaults (learning
# rate 1e-3, optax's weight decay 1e-4), run on the evaluation seeds, never tuned.
UNTUNED = Baseline("adamw_cos_default", "adam", True, (1e-3,), (1e-4,),
                   description="AdamW, 5% warmup + cosine to 0, learning rate 1e-3, weight decay 1e-4, untuned")
# The learned optimizer's learning-rate multiplier under equal tuning: as many points as Adam's grid, centred on 1.
LEARNED_MULTIPLIERS = half_decades(-1.5, 1.5)
assert len(LEARNED_MULTIPLIERS) == len(ADAM_LRS)


def resolve(names: Sequence[str] | None) -> list[Baseline]:
    """The named baselines in table order (None: all); an unknown name is a ValueError."""
    if names is None:
        return list(BASELINES.values())
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; valid: {list(BASELINES)}")
    return [b for b in BASELINES.values() if b.name in names]
