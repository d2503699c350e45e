"""Generalist, stage 6: stage 5 (configs/generalist_priors.py) with Celo's progress feature learned.

A scale-free (Adam-like) step keeps its size after a small dataset is memorized, and the validation
loss then climbs: the user-model suite's breast_cancer, iris and linnerud MLPs end above tuned
Adam, which avoids it by picking a tiny learning rate. `lopt.Celo(progress_feature=True)` lets
the step size see each tensor's gradient progress (log10 of recent over first gradient RMS), so
that it can shrink as the gradients do, as SGD's step does. Its weight starts at zero (the
stage-5 optimizer, unchanged): fixing it by hand at 0.25-1 decade per decade made the geometric
mean of final/initial validation loss on 30 fresh draws of this family worse (mean log ratio
-2.38 at 0, -2.14 at 0.25, -2.01 at 0.5, -1.67 at 1; 4, 4, 4 and 5 tasks above their start),
so it is left to meta-training. Measured with (12 min on 2 cores, beside a meta-training run):
    python -m evaluation.in_family --config configs/generalist_progress.py \
        --lopt checkpoints/exports/generalist2_priors.safetensors --progress_init 0,0.25,0.5,1 --tasks 30

Command:  python meta_train.py --config configs/generalist_progress.py --workdir runs/generalist6 \\
              --config.init_from=checkpoints/exports/generalist5_step1131.safetensors
Cost on 2 CPU cores: 3301 meta-steps in 42 min. Result: the progress weight moved to 0.003;
user-model suite 5 of 10 wins, 3 of 30 runs above initial (checkpoints/exports/README.md).
"""

from configs import generalist_priors


def get_config():
    c = generalist_priors.get_config()
    c.lopt.progress_feature = True
    return c
