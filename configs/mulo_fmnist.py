"""μLO_M recipe (Thérien et al. 2024) scaled to 2 CPU cores: μP MLPs of several widths on Fashion-MNIST.

The paper meta-trains small_fc_lopt on ImageNet-32 3-layer MLPs of widths {128, 512, 1024} with PES
(truncation 50, 8 antithetic pairs, σ = 0.01), horizons log-uniform over [100, 1000], the mean
training loss as meta-objective, and AdamW warmed up to 3e-3 then cosine-decayed to 1e-3 with
global-norm clipping at 1.0, for 5000 steps. Here: Fashion-MNIST 8×8, widths {32, 64, 128},
depths {1, 2}, batch 128, 3 task groups, and 1000 outer steps; everything else as in the paper.

Command:  python meta_train.py --config configs/mulo_fmnist.py --workdir runs/mulo_fmnist
Inner steps/s: 331, its estimator on its first task draw (an mlp task) after compilation
(`python -m benchmarks.meta_throughput --parts recipes`, 2026-12-07, 2 cores at load ~6).
Cost on 2 CPU cores: 1.2 s per outer step on a quiet machine (measured over 12 steps), about 30
minutes for 1000 steps; measured 1 h 30 min for the full run on 2 cores shared with two other
meta-training runs and tests (2026-12-05). It resumes from its workdir if stopped.
Measured (seed 0): the held-out meta-loss (3 unseen MLPs, 1000 steps each) falls from 18.6 at the
initialization to 0.284 at step 100, 0.222 at 200 and 0.214-0.216 from step 400 to the end;
eval/lopt_over_adam (against Adam at lr 3e-3, untuned) from 369 to 0.73-0.75.
"""

from configs.base import base_config


def get_config():
    c = base_config()
    c.num_steps = 1000
    c.family.update(datasets=("fashion_mnist",), resolutions=(8,), widths=(32, 64, 128), depths=(1, 2),
                    activations=("relu",), batch_sizes=(128,), parametrization="mup")
    c.lopt.update(name="mulo", hidden_size=32)
    c.estimator.update(name="pes", num_tasks=8, sigma=0.01, trunc_length=50, min_horizon=100, max_horizon=1000,
                       objective="mean", split="train")
    c.groups.update(num=3, resample_every=150)
    c.outer.update(peak_lr=3e-3, end_lr=1e-3, warmup_steps=100, weight_decay=1e-4, clip=1.0)
    c.eval.update(every=100, num_tasks=3, num_steps=1000, curve_every=50, adam_lr=3e-3)
    c.log.update(every=10, histograms_every=100)
    c.probe.update(every=100, repeats=8)
    c.checkpoint.update(every=25, keep=3)
    return c
