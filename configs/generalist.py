"""Generalist: Celo meta-trained with PES on models as users write them (issue 16's recipe).

Tasks: flax default-init MLPs (`nn.Dense`, LeCun-normal kernels, zero biases) on tabular problems
from sklearn's generators (classification with cross-entropy, regression with MSE; features
standardized or raw and rescaled; weight 3) and on Fashion-MNIST at 8 and 16 px (weight 1).
Widths 16-256 and depths 0-4 here (the families reach 1024 and 8; this CPU recipe keeps the
number of distinct shapes, hence compilations, small), batch 32 or 128, and scale augmentation:
every parameter tensor reparametrized by a factor log-uniform in [0.5, 2], the loss by one in
[0.1, 10]. No dataset bundled with sklearn is used: those are held-out evaluation data.
Estimator: PES, 8 antithetic pairs, σ 0.01, truncation 25, every inner problem 300 steps in
lockstep, so that the optimizer's `num_steps` is each problem's true horizon (Celo's step-size
schedule reads t/num_steps; the lockstep-free schedule gives every slot max_horizon as num_steps
while its problem may end earlier).

Command:  python meta_train.py --config configs/generalist.py --workdir runs/generalist
          (continue a run later from its export: --config.init_from=runs/generalist/lopt.safetensors)
Cost on 2 CPU cores: not measured beyond a 3-step smoke run (a new task shape compiles for
tens of seconds; see the closing note of issue 16). The shipped optimizers' recipes took 0.84 h.
Result: not measured yet; issue 16 tracks the long run and the user-model evaluation
(`python -m evaluation.user_models`).
"""

import ml_collections

from configs.base import base_config

MODEL_AXES = dict(widths=(16, 64, 256), width_weights=(3, 2, 1), depths=(0, 1, 2, 4), depth_weights=(1, 3, 2, 1),
                  batch_sizes=(32, 128), batch_size_weights=(1, 1), activations=("relu", "gelu", "tanh"),
                  activation_weights=(2, 1, 1), max_step_macs=2**22, param_scales=(0.5, 2.0), loss_scales=(0.1, 10.0))


def get_config():
    c = base_config()
    c.num_steps = 2000
    c.family = ml_collections.ConfigDict(dict(name="mixture", members=dict(
        tabular=dict(num_features=(8, 32), num_classes=(2, 10), train_sizes=(1024,), weight=3.0, **MODEL_AXES),
        flax_mlp=dict(datasets=("fashion_mnist",), resolutions=(8, 16), resolution_weights=(2, 1), weight=1.0,
                      **MODEL_AXES),
    )))
    c.lopt = ml_collections.ConfigDict(dict(name="celo", hidden_size=8))
    c.estimator.update(name="pes", num_tasks=8, sigma=0.01, trunc_length=25, min_horizon=300, max_horizon=300,
                       lockstep=True, objective="mean", split="train")
    c.groups.update(num=2, resample_every=100)
    c.outer.update(peak_lr=1e-3, end_lr=1e-4, warmup_steps=50, weight_decay=0.0, clip=1.0)
    c.eval.update(every=250, num_tasks=3, num_steps=300, curve_every=50, adam_lr=1e-3)
    c.log.update(every=10, histograms_every=250)
    c.probe.update(every=500, repeats=4)
    c.checkpoint.update(every=25, keep=3)
    return c
