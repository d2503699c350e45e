"""Generalist: Celo meta-trained with PES on models as users write them (issue 16's recipe).

Tasks (weights in parentheses): flax default-init MLPs (`nn.Dense`, LeCun-normal kernels, zero
biases) on tabular problems from sklearn's generators (3: classification with cross-entropy,
regression with MSE; features standardized or raw and rescaled; 128, 256 or 1024 training rows,
so that over-fitting happens inside meta-training as it does on small real datasets) and on
Fashion-MNIST at 8 and 16 px (1). Widths 16-256, depths 0-8, batch 32-128, and scale
augmentation: every parameter tensor reparametrized by a factor log-uniform in [0.5, 2], the loss
by one in [0.1, 10]. Adding standard-parametrized 8 px convnets and byte-level LMs at weight 0.5
each ran at 144 inner steps/s (6.6 s a meta-step) against 36,000 (0.07 s) for these MLPs on the
same 2 shared cores, so they are left to a GPU run. No dataset bundled with sklearn and no licence
text is used: those are the user-model suite's held-out data.
Meta-objective: the mean normalized loss on *validation* batches over the 300-step horizon (the
user-model suite judges validation loss; a training-loss objective taught the first run to
over-fit small datasets). Estimator: PES, 8 antithetic pairs, σ 0.01, truncation 25, inner
problems in lockstep, so that the optimizer's `num_steps` is each problem's true horizon (Celo's
step-size schedule reads t/num_steps).

Command:  python meta_train.py --config configs/generalist.py --workdir runs/generalist2 \
              --config.init_from=checkpoints/exports/generalist_step1900.safetensors
Cost on 2 CPU cores: 3000 meta-steps in about 27 min (shared with other jobs; 3,000-36,000 inner
steps/s, the depth-8 draws and each new shape's compilation are the slow parts).
Result: see lopt/pretrained/celo_generalist.md (the continuation chain, its compute and its
user-model evaluation). The first run (step-1900 export in checkpoints/exports/) used an earlier
version of this recipe: training-loss objective, depths 0-4, 1024 training rows; 27 min on 2
cores, held-out 0.427 → 0.357.
"""

import ml_collections

from configs.base import base_config

MODEL_AXES = dict(widths=(16, 64, 256), width_weights=(3, 2, 1), depths=(0, 1, 2, 4, 8),
                  depth_weights=(1, 3, 2, 1, 1), batch_sizes=(32, 64, 128), batch_size_weights=(1, 1, 1),
                  activations=("relu", "gelu", "tanh"), activation_weights=(2, 1, 1), max_step_macs=2**22,
                  param_scales=(0.5, 2.0), loss_scales=(0.1, 10.0))


def get_config():
    c = base_config()
    c.num_steps = 3000
    c.family = ml_collections.ConfigDict(dict(name="mixture", members=dict(
        tabular=dict(num_features=(4, 8, 16, 32, 64), num_classes=(2, 3, 5, 10), train_sizes=(128, 256, 1024),
                     weight=3.0, **MODEL_AXES),
        flax_mlp=dict(datasets=("fashion_mnist",), resolutions=(8, 16), resolution_weights=(2, 1), weight=1.0,
                      **MODEL_AXES),
    )))
    c.lopt = ml_collections.ConfigDict(dict(name="celo", hidden_size=8))
    c.estimator.update(name="pes", num_tasks=8, sigma=0.01, trunc_length=25, min_horizon=300, max_horizon=300,
                       lockstep=True, objective="mean", split="valid")
    c.groups.update(num=2, resample_every=150)
    c.outer.update(peak_lr=1e-3, end_lr=1e-4, warmup_steps=50, weight_decay=0.0, clip=1.0)
    c.eval.update(every=250, num_tasks=3, num_steps=300, curve_every=50, adam_lr=1e-3)
    c.log.update(every=10, histograms_every=250)
    c.probe.update(every=500, repeats=4)
    c.checkpoint.update(every=25, keep=3)
    return c
