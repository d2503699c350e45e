"""Evaluation suites: fixed lists of inner tasks, each trained for a fixed number of steps.

>>> from evaluation.suites import SUITES
>>> [t.label for t in SUITES["digits"]]
['digits_mlp_w32_d2', 'digits_mlp_w64_d1']
>>> SUITES["heldout"][0].spec().width
512
"""

from __future__ import annotations

import dataclasses
from typing import Any

import inner_tasks


@dataclasses.dataclass(frozen=True)
class SuiteTask:
    """One evaluation task: `inner_tasks.get_task(task, **dict(kwargs))` trained for num_steps."""

    label: str
    task: str
    kwargs: tuple[tuple[str, Any], ...]
    num_steps: int
    eval_every: int

    def __post_init__(self):
        if isinstance(self.kwargs, dict):
            object.__setattr__(self, "kwargs", tuple(sorted(self.kwargs.items())))
        if self.num_steps < 1 or self.eval_every < 1 or self.num_steps % self.eval_every:
            raise ValueError(f"{self.label}: num_steps={self.num_steps} is not a positive multiple of "
                             f"eval_every={self.eval_every}")

    def spec(self) -> inner_tasks.TaskSpec:
        return inner_tasks.get_spec(self.task, **dict(self.kwargs))

    def make(self) -> inner_tasks.Task:
        return inner_tasks.get_task(self.task, **dict(self.kwargs))

    def with_steps(self, steps: int) -> SuiteTask:
        """This task with num_steps=steps and the eval_every dividing it that best keeps the point count."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        points = self.num_steps // self.eval_every
        every = min((d for d in range(1, steps + 1) if steps % d == 0), key=lambda d: (abs(steps // d - points), -d))
        return dataclasses.replace(self, num_steps=steps, eval_every=every)


def _mlp(label: str, width: int, depth: int = 2, resolution: int = 8, steps: int = 1000, every: int = 100,
         dataset: str = "fashion_mnist", **kw) -> SuiteTask:
    kwargs = dict(dataset=dataset, resolution=resolution, width=width, depth=depth, **kw)
    return SuiteTask(label, "mlp", kwargs, steps, every)


def _conv(label: str, channels: int, depth: int, resolution: int, steps: int = 1000, **kw) -> SuiteTask:
    kwargs = dict(dataset="fashion_mnist", resolution=resolution, channels=channels, depth=depth, **kw)
    return SuiteTask(label, "conv", kwargs, steps, 100)


def _lm(label: str, width: int, depth: int, context: int = 64, steps: int = 1000, batch_size: int = 16,
        **kw) -> SuiteTask:
    kwargs = dict(width=width, depth=depth, num_heads=width // 16, context=context, batch_size=batch_size, **kw)
    return SuiteTask(label, "lm", kwargs, steps, 100)


def _width_sweep(parametrization: str) -> tuple[SuiteTask, ...]:
    return tuple(_mlp(f"fmnist8_mlp_w{w}_d2_{parametrization}", w, steps=500, every=50,
                      parametrization=parametrization) for w in (64, 128, 256, 512, 1024))


# Models use their spec's defaults (μP; batch 128, LMs 16) unless a task says otherwise.
SUITES: dict[str, tuple[SuiteTask, ...]] = {
    "digits": (
        _mlp("digits_mlp_w32_d2", 32, dataset="digits", steps=200, every=50),
        _mlp("digits_mlp_w64_d1", 64, depth=1, dataset="digits", steps=200, every=50),
    ),
    "quick": (
        _mlp("fmnist8_mlp_w32_d2", 32, steps=300, every=50),
        _mlp("fmnist8_mlp_w128_d2", 128, steps=300, every=50),
        _mlp("fmnist8_mlp_w128_d3_tanh", 128, depth=3, steps=300, every=50, activation="tanh"),
    ),
    # Tasks that configs/mulo_mup.py's meta-training never saw. It trains on Fashion-MNIST MLPs at
    # 8 and 16 px (widths 16-64, depths 1-3, relu), 8 px convnets (8-16 channels, depth 2, batch
    # 64) and width-32 one-layer LMs with context 32, for horizons of 100 to 500 steps.
    "heldout": (
        _mlp("mlp_w512_d2 (8x width)", 512, steps=500, every=50),
        _mlp("mlp_w1024_d2 (16x width)", 1024, steps=500, every=50),
        _mlp("mlp_w64_d6 (2x depth)", 64, depth=6),
        _mlp("mlp28_w64_d2 (28x28)", 64, resolution=28),
        _mlp("mlp_w64_d2_gelu (activation)", 64, activation="gelu"),
        _mlp("mlp_w128_d3_tanh (activation)", 128, depth=3, activation="tanh"),
        _conv("conv8_c32_d3 (convnet)", 32, 3, 8, batch_size=64),
        _lm("lm_w64_d2_ctx32 (byte LM)", 64, 2, context=32, batch_size=8),
        _mlp("mlp_w32_d2 (5x horizon)", 32, steps=2500, every=250),
        _mlp("mlp16_w64_d3 (5x horizon)", 64, depth=3, resolution=16, steps=2500, every=250),
    ),
    # μP against standard parametrization as width grows (the width-sweep figure).
    "width_mup": _width_sweep("mup"),
    "width_sp": _width_sweep("sp"),
    "fmnist_mlp": (
        _mlp("fmnist8_mlp_w32_d2", 32),
        _mlp("fmnist8_mlp_w128_d2", 128),
        _mlp("fmnist8_mlp_w512_d2", 512),
        _mlp("fmnist8_mlp_w1024_d2", 1024),
        _mlp("fmnist8_mlp_w128_d4", 128, depth=4),
        _mlp("fmnist28_mlp_w128_d2", 128, resolution=28, steps=2000, every=200),
        _mlp("fmnist28_mlp_w512_d2", 512, resolution=28, steps=2000, every=200),
        _mlp("fmnist28_mlp_w1024_d2", 1024, resolution=28, steps=2000, every=200),
    ),
    "conv": (
        _conv("fmnist8_conv_c16_d2", 16, 2, 8),
        _conv("fmnist8_conv_c32_d3", 32, 3, 8),
        _conv("fmnist16_conv_c32_d3", 32, 3, 16),
        _conv("fmnist28_conv_c32_d3", 32, 3, 28),
    ),
    "lm": (
        _lm("lm_w32_d1_ctx32", 32, 1, context=32),
        _lm("lm_w64_d2_ctx64", 64, 2),
        _lm("lm_w128_d2_ctx64", 128, 2),
    ),
}
