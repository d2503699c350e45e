"""Evaluation of learned optimizers: every path turns (architecture, θ, task) into an optax
optimizer with `optimizer_for`, so a task states its parametrization in one place
(`inner_tasks.Task.parametrization`, `Task.mup_options()`).

| module | what |
|---|---|
| `evaluation.evaluate` | `python -m evaluation.evaluate --suite NAME --lopt A[,B…]`: learned optimizers against the baselines users run, tuned per task, zero-tune and with equal tuning |
| `evaluation.suites` | `SUITES`: the suites as data (`dev` for choosing, `test` for confirming, the project's own models) |
| `evaluation.tasks` | `EvalTask`: the one task type (any `inner_tasks.TaskSpec`, a horizon, evaluation points) |
| `evaluation.baselines` | `BASELINES`: Adam and AdamW (constant and warmup + cosine), SGD-momentum, Lion, and their grids |
| `evaluation.runner` | the one runner: a grid of runs vmapped in one compiled program, losses on fixed samples |
| `evaluation.protocol` | tuning per metric, the two protocols, the verdicts (wins, speed-up, failures) |
| `evaluation.tables`, `evaluation.plots` | results.md and the figures |
| `evaluation.reuse`, `evaluation.ledger` | tuned baselines reused by task fingerprint; the `test` suite's ledger |
| `evaluation.user_tasks`, `evaluation.user_data` | flax default-init models as users write them (MLP, residual LayerNorm MLP, convnets, GRU, autoencoder, transformer LM) on offline data meta-training never reads |
| `evaluation.learned` | `optimizer_for`: a learned optimizer (architecture, θ) for a task |
| `evaluation.speedup` | VeLO's speed-up metric and its converse at the baseline's final loss |
| `evaluation.heldout` | `Evaluator`: held-out tasks during meta-training, logged to TensorBoard |
| `evaluation.in_family` | `python -m evaluation.in_family`: variants of a learned optimizer on fresh draws of a meta-training recipe's own family |
| `evaluation.report` | `python -m evaluation.report`: model cards and figures for shipped optimizers |

`optimizer_for` (from `evaluation.learned`) is re-exported here and `Evaluator` from
`evaluation.heldout` on first use (`from evaluation import Evaluator`); the other submodules are
imported by name (`from evaluation import evaluate`). The package itself imports no other, so `python -m evaluation.evaluate` runs
its module once and sets its XLA flags before anything starts the backend.

>>> import jax, inner_tasks, lopt
>>> arch = lopt.LearnableAdam()
>>> theta = arch.init(jax.random.key(0))
>>> quad = inner_tasks.get_task("quadratic", dim=4)
>>> quad.parametrization, quad.mup_options()
('sp', {})
>>> opt = optimizer_for(arch, theta, quad, num_steps=10)
>>> params = quad.init(jax.random.key(1))
>>> updates, state = opt.update(params, opt.init(params), params)
>>> jax.tree.map(jax.numpy.shape, updates) == jax.tree.map(jax.numpy.shape, params)
True
"""

from __future__ import annotations

from evaluation.learned import optimizer_for


def __getattr__(name: str):
    if name == "Evaluator":  # lazily: heldout imports this module (and matplotlib)
        from evaluation.heldout import Evaluator
        return Evaluator
    raise AttributeError(f"module 'evaluation' has no attribute {name!r}")


__all__ = ["optimizer_for", "Evaluator"]
