"""Generalist, stage 7: stage 6 (configs/generalist_progress.py) over inner horizons 300-3000.

Every earlier stage ran its inner problems for 300 steps, while the user-model suite trains for
300-5000: the stage-5 file's 5000-step Fashion-MNIST MLP ended at 0.514 against tuned Adam's 0.350
(and the stage-2 file with the step priors at 0.381). Here each task group draws its own horizon at
every redraw (`groups.horizons`: 300, 1000 or 3000, weights 2:1:1); the group's slots run it in
lockstep and Celo is told it as `num_steps`, so its schedule (t/num_steps) is each problem's true
one. A group lives 150 meta-steps of 25-step truncations, 3750 inner steps per slot, so a
3000-step problem runs about once per draw.

Command:  python meta_train.py --config configs/generalist_horizons.py --workdir runs/generalist7 \\
              --config.init_from=checkpoints/exports/generalist6_step3301.safetensors
Cost on 2 CPU cores: 3576 meta-steps in 57 min. Result: held-out (300-step draws) 0.273 →
0.28-0.41, noisy; not yet on the user-model suite (checkpoints/exports/README.md).
"""

from configs import generalist_progress


def get_config():
    c = generalist_progress.get_config()
    c.groups.update(horizons=(300, 1000, 3000), horizon_weights=(2, 1, 1))
    return c
