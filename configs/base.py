"""Defaults shared by every recipe: each `configs/<name>.py` starts from `base_config()` and
changes what it needs. Every key is listed here, so a misspelt override fails before anything
compiles (`--config.estimator.sigmaa=…` is an error).

Sections (see meta_train.py for how each becomes a typed value):
  family     the inner-task family (inner_tasks.FAMILIES name plus its axes), or name="mixture"
             with members={family name: its axes and a weight} (see configs/mulo_mup.py)
  init_from  a learned-optimizer file or shipped name whose theta starts the run ("" = init)
  lopt       the learned-optimizer architecture (lopt.ARCHITECTURES name plus its settings)
  estimator  the meta-gradient estimator (estimators.ESTIMATORS name), truncation and objective
  groups     how many task specs (shapes) feed each meta-step, and how often each is redrawn
  outer      AdamW with linear warmup and cosine decay, global-norm clipping
  eval       held-out tasks trained with the current learned optimizer and with Adam
  log, probe, checkpoint   TensorBoard cadence, variance probe, checkpoint cadence and keep-N
  mesh       devices the particle axis is sharded over: 0 = every device JAX sees (the largest
             count dividing the particles), N = exactly N; may change when a run resumes
"""

import ml_collections

from estimators.protocol import DEFAULT_MAX_LOSS


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.num_steps = 200  # outer (meta) steps
    # A learned-optimizer file or shipped name to start from (its architecture must match config.lopt);
    # "" starts from the architecture's init. The export records the chain of files it continues.
    c.init_from = ""
    c.family = ml_collections.ConfigDict(dict(
        name="mlp", datasets=("fashion_mnist",), resolutions=(8,), widths=(32, 64), depths=(1, 2),
        activations=("relu",), batch_sizes=(128,), parametrization="mup",
    ))
    c.lopt = ml_collections.ConfigDict(dict(name="mulo", hidden_size=32))
    c.estimator = ml_collections.ConfigDict(dict(
        name="pes", num_tasks=8, sigma=0.01,
        trunc_length=20, min_horizon=100, max_horizon=500, lockstep=False,
        objective="mean", split="train", normalize=True, max_loss=DEFAULT_MAX_LOSS,
        # full_es only
        strategy="open_es", fitness_shaping="default", population_size=16, horizon=200,
        # bmg only
        target_steps=5, matching="sqdist", target_lr=0.1,
    ))
    # horizons: each group draws its inner horizon from these (weights: horizon_weights) at every
    # redraw; lockstep truncated estimators only; () keeps estimator.max_horizon for every group.
    # buckets: K > 0 draws K (task shape, horizon) buckets once per run and every redraw reuses one
    # with fresh data, so at most K estimator programs are ever compiled (outer.groups); 0: off
    c.groups = ml_collections.ConfigDict(dict(num=2, resample_every=100, horizons=(), horizon_weights=(), buckets=0))
    c.outer = ml_collections.ConfigDict(dict(
        peak_lr=3e-3, end_lr=1e-3, warmup_steps=10, weight_decay=1e-4, clip=1.0, b1=0.9, b2=0.999,
    ))
    c.eval = ml_collections.ConfigDict(dict(
        every=100, num_tasks=2, num_steps=300, curve_every=25, adam_lr=3e-3, family=ml_collections.ConfigDict(),
    ))
    c.log = ml_collections.ConfigDict(dict(every=10, histograms_every=50))
    c.probe = ml_collections.ConfigDict(dict(every=100, repeats=8))
    c.checkpoint = ml_collections.ConfigDict(dict(every=50, keep=3))
    c.mesh = ml_collections.ConfigDict(dict(particles=0))
    return c
