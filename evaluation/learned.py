"""`optimizer_for`: the one way evaluation turns (architecture, θ, task) into an optax optimizer,
so that a task states its parametrization in one place (`inner_tasks.Task.mup_options()`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optax

    import inner_tasks


def optimizer_for(arch: Any, theta: Any, task: inner_tasks.Task, num_steps: int,
                  **options: Any) -> optax.GradientTransformationExtraArgs:
    """The learned optimizer `arch` at θ for `task`, told the run's length: on a μP task with the
    task's `roles=` and `fan_in=` (as in meta-training), on a standard one without them. `options`
    are the user's further arguments to `arch.optimizer` (e.g. Celo2's `weight_decay=`).

    Static in the task (its spec decides), so it may be called under `jax.jit` with the task traced."""
    return arch.optimizer(theta, num_steps=num_steps, **task.mup_options(), **options)
