"""Generalist, stage 8: stage 7 (configs/generalist_horizons.py) with ψ's weights meta-trained 10× faster.

Through stages 4-7 the weights of Celo's per-tensor step features barely moved: the depth weight
reached -0.025 in 1475 meta-steps and the progress weight 0.003 in 3301, while PES at σ 0.01
perturbs each by 0.01, a 1% change of a step that the other ~300 perturbed weights' noise drowns.
`lopt.Celo(step_gain=10)` stores ψ's weights divided by 10 (same steps), so PES perturbs them
by 0.1 and the outer Adam moves them 10× as fast. The user-model screen of stage 7 shows what they
should learn: on iris, breast_cancer and diabetes its validation loss reaches 0.031, 0.20 and 0.64
early (tuned Adam ends at 0.108, 0.173, 0.704) and then climbs as the training set is memorized, which
a step that shrinks with the gradients (the progress feature) would stop. Horizons 300/1000/3000 in
equal parts, so that more problems run long enough to memorize their 128-1024 training rows.

Command:  python meta_train.py --config configs/generalist_gain.py --workdir runs/generalist8 \\
              --config.init_from=checkpoints/exports/generalist7_step3576.safetensors
Cost on 2 CPU cores: see checkpoints/exports/README.md. Result: see checkpoints/exports/README.md.
"""

from configs import generalist_horizons


def get_config():
    c = generalist_horizons.get_config()
    c.lopt.step_gain = 10.0
    c.groups.horizon_weights = (1, 1, 1)
    return c
