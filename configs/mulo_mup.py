"""μLO on a μP mixture of MLPs, convnets and byte-level LMs: the `mulo_mup` pretrained file.

The μLO_M recipe (Thérien et al. 2024) scaled to 2 CPU cores. The paper meta-trains small_fc_lopt
on ImageNet-32 MLPs of widths {128, 512, 1024} with PES (truncation 50, 8 antithetic pairs,
σ = 0.01), horizons log-uniform over [100, 1000] and the mean training loss as meta-objective,
with AdamW warmed up to 3e-3 and cosine-decayed, clipped at global norm 1. Here the family mixes
Fashion-MNIST MLPs at 8×8 and 16×16 of widths {16, 32, 64} and depths {1, 2, 3} (weight 3),
small convnets at 8×8 (weight 1) and byte-level transformer LMs on the standard library's
source (weight 1), all μP; horizons are log-uniform over [100, 500].

Command:  python meta_train.py --config configs/mulo_mup.py --workdir runs/mulo_mup
Inner steps/s: 1,440, its estimator on its first task draw (an mlp task) after compilation
(`python -m benchmarks.meta_throughput --parts recipes`, 2026-12-07, 2 cores at load ~6).
Cost on 2 CPU cores: 500 meta-steps in 0.84 h of wall-clock, measured side by side with
configs/mulo_sp.py on the same 2 cores (3–10 s per step, depending on which task shapes the
groups hold; LM groups are the dearest); it resumes from its workdir if stopped.
Expected (measured, seed 0): the held-out meta-loss (`eval/heldout_meta_loss`) falls from 6.9 at
the initialization to 0.39 at step 250 and 0.38 at step 500; the export beats per-task-tuned
Adam's final training loss on 7 of the 10 tasks of `python -m evaluation.evaluate --suite
heldout` (lopt/pretrained/mulo_mup.md). `configs/mulo_sp.py` is the same recipe under the
standard parametrization.
"""

import ml_collections

from configs.base import base_config


def family(parametrization: str) -> ml_collections.ConfigDict:
    """The meta-training mixture; evaluation widths 8× and 16× the widest (64) are 512 and 1024."""
    members = dict(
        mlp=dict(datasets=("fashion_mnist",), resolutions=(8, 16), widths=(16, 32, 64), depths=(1, 2, 3),
                 activations=("relu",), batch_sizes=(128,), parametrization=parametrization, weight=3.0),
        conv=dict(datasets=("fashion_mnist",), resolutions=(8,), channels=(8, 16), depths=(2,),
                  activations=("relu",), batch_sizes=(64,), parametrization=parametrization, weight=1.0),
        lm=dict(widths=(32,), depths=(1,), contexts=(32,), batch_sizes=(8,), parametrization=parametrization,
                weight=1.0),
    )
    return ml_collections.ConfigDict(dict(name="mixture", members=members))


def get_config(parametrization: str = "mup"):
    c = base_config()
    c.num_steps = 500
    c.family = family(parametrization)
    c.lopt.update(name="mulo", hidden_size=32)
    c.estimator.update(name="pes", num_tasks=8, sigma=0.01, trunc_length=50, min_horizon=100, max_horizon=500,
                       objective="mean", split="train")
    c.groups.update(num=2, resample_every=100)
    c.outer.update(peak_lr=3e-3, end_lr=1e-3, warmup_steps=100, weight_decay=1e-4, clip=1.0)
    c.eval.update(every=250, num_tasks=3, num_steps=500, curve_every=50, adam_lr=3e-3)
    c.log.update(every=10, histograms_every=250)
    c.probe.update(every=250, repeats=8)
    c.checkpoint.update(every=25, keep=3)
    return c
