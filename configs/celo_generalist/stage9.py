"""celo_generalist, stage 9 (shipped): stage 5's optimizer with a learned, progress-gated weight decay.

Continues from stage5.safetensors (beside this recipe), adopted by `--config.init_from` into
`Celo(decay_gate=True, step_gain=3)`. Stage 5's skip weight on the parameter feature p/rms(p) is a
learned decoupled weight decay; here it is multiplied per tensor by 10^(−κ·progress), progress
being log10 of the tensor's recent gradient RMS over its peak (≤ 0), so the decay grows once a small
dataset is memorized and stays small while a large one is still being learned. κ starts at 0
(stage 5 exactly) and is meta-trained with ψ's weights at `step_gain` 3 (stored divided by 3, so
they move 3× as fast); each task group draws its inner horizon from 300/1000/3000 steps (equal
weights) so that problems run long enough to memorize their 128-1024 rows; outer lr 2e-4 → 2e-5.

Command:  python meta_train.py --config configs/celo_generalist/stage9.py --workdir runs/celo_generalist/stage9
          the shipped file is the run stopped at step 4950 of 6000 and exported with its card:
          python -m evaluation.report card --name celo_generalist --workdir runs/celo_generalist/stage9 \\
              --recipe configs/celo_generalist/stage9.py --notes evaluation/cards/celo_generalist.md
Inner steps/s: 6,578, its estimator on its first task draw (a tabular task) after compilation
(`python -m benchmarks.meta_throughput --parts recipes`, 2026-12-07, 2 cores at load ~6).
Cost on 2 CPU cores: 4950 meta-steps in 62 min, beside evaluations.
Result: lopt/pretrained/celo_generalist.safetensors (sha256 ff80761e0617…, 12456 meta-steps in
all); κ 0 → 0.21; held-out meta-loss 0.285 → 0.316 (noisy). Measured as users would (its card,
`python -m evaluation.evaluate --suite dev|test`): validation loss below the best tuned baseline on
2 of 9 `dev` and 1 of 9 `test` tasks, training loss above it on all 18; no run non-finite.
"""

import ml_collections

from configs.base import base_config

MODEL_AXES = dict(widths=(16, 64, 256, 512), width_weights=(3, 2, 2, 1), depths=(0, 1, 2, 4, 6, 8),
                  depth_weights=(1, 2, 2, 2, 1, 2), batch_sizes=(32, 64, 128), batch_size_weights=(1, 1, 1),
                  activations=("relu", "gelu", "tanh"), activation_weights=(2, 1, 1), max_step_macs=2**23,
                  param_scales=(0.5, 2.0), loss_scales=(0.1, 10.0))


def get_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.num_steps = 6000
    c.init_from = "configs/celo_generalist/stage5.safetensors"
    c.family = ml_collections.ConfigDict(dict(name="mixture", members=dict(
        tabular=dict(num_features=(4, 8, 16, 32, 64), num_classes=(2, 3, 5, 10), train_sizes=(128, 256, 1024),
                     weight=3.0, **MODEL_AXES),
        flax_mlp=dict(datasets=("fashion_mnist",), resolutions=(8, 16), resolution_weights=(2, 1), weight=1.0,
                      **MODEL_AXES),
    )))
    c.lopt = ml_collections.ConfigDict(dict(name="celo", hidden_size=8, model_features=True, width_power=1.0,
                                            depth_power=1.0, decay_gate=True, decay_gate_init=0.0, step_gain=3.0))
    c.estimator.update(name="pes", num_tasks=8, sigma=0.01, trunc_length=25, min_horizon=300, max_horizon=300,
                       lockstep=True, objective="mean", split="valid")
    c.groups.update(num=2, resample_every=150, horizons=(300, 1000, 3000), horizon_weights=(1, 1, 1))
    c.outer.update(peak_lr=2e-4, end_lr=2e-5, warmup_steps=50, weight_decay=0.0, clip=1.0)
    c.eval.update(every=250, num_tasks=3, num_steps=300, curve_every=50, adam_lr=1e-3)
    c.log.update(every=10, histograms_every=250)
    c.probe.update(every=500, repeats=4)
    c.checkpoint.update(every=25, keep=3)
    return c
