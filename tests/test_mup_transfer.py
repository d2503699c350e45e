"""μP width transfer: μAdam's best learning rate holds from width 64 to 1024; standard Adam's shifts.

Stated grid and protocol: Fashion-MNIST 8×8 MLP with two hidden layers, batch 128, 200 Adam steps,
seeds {0, 1}; the score is the mean training loss over the last 40 steps averaged over seeds
(non-finite counts as worst). Learning rates are powers of two: 2^-6 … 2^0 for μAdam (μP model,
hidden-weight updates × 1/fan_in) and 2^-11 … 2^-5 for Adam on the standard model.
Measured: μP best 2^-3 at both widths; standard 2^-7 at width 64 and 2^-9 at width 1024.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import inner_tasks

STEPS, SEEDS, WIDTHS = 200, 2, (64, 1024)
GRIDS = {"mup": 2.0 ** np.arange(-6, 1), "sp": 2.0 ** np.arange(-11, -4)}


def scale_by_tree(mults) -> optax.GradientTransformation:
    """Multiplies each update leaf by a fixed per-tensor factor."""
    return optax.GradientTransformation(
        lambda params: optax.EmptyState(),
        lambda updates, state, params=None: (jax.tree.map(lambda u, m: u * m, updates, mults), state),
    )


def grid_scores(parametrization: str, width: int) -> np.ndarray:
    task = inner_tasks.get_task(
        "mlp", dataset="fashion_mnist", resolution=8, width=width, depth=2, batch_size=128,
        parametrization=parametrization,
    )
    mup = parametrization == "mup"
    mults = jax.tree.map(lambda r, f: 1.0 / f if (mup and r == "hidden") else 1.0, task.roles, task.fan_in)

    def score(lr, key):
        curve = inner_tasks.train(task, optax.chain(optax.adam(lr), scale_by_tree(mults)), STEPS, key)
        return curve.train_loss[-STEPS // 5 :].mean()

    run = jax.jit(jax.vmap(jax.vmap(score, in_axes=(None, 0)), in_axes=(0, None)))
    losses = run(jnp.asarray(GRIDS[parametrization]), jax.random.split(jax.random.key(0), SEEDS)).mean(axis=1)
    return np.where(np.isfinite(losses), np.asarray(losses), np.inf)


@pytest.mark.slow  # about 2 minutes of training; run with -m slow
def test_mup_best_learning_rate_transfers_across_width(fashion_mnist_dir):
    best = {}
    for param in GRIDS:
        for width in WIDTHS:
            scores = grid_scores(param, width)
            best[param, width] = int(np.argmin(scores))
            print(f"{param} width {width}: best lr 2^{np.log2(GRIDS[param][best[param, width]]):.0f}", scores.round(3))
            # The optimum is inside the grid, so the argmin is a real optimum, not an edge.
            assert 0 < best[param, width] < len(GRIDS[param]) - 1, (param, width, scores)
    shift_mup = abs(best["mup", 64] - best["mup", 1024])
    shift_sp = abs(best["sp", 64] - best["sp", 1024])
    assert shift_mup <= 1, best  # same or adjacent grid point
    assert shift_sp >= 1 and shift_sp > shift_mup, best  # the standard parametrization shifts
