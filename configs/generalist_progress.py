"""Generalist, stage 6: stage 5 (configs/generalist_priors.py) with Celo's progress feature learned.

A scale-free (Adam-like) step keeps its size after a small dataset is memorized, and the validation
loss then climbs: the user-model suite's breast_cancer, iris and linnerud MLPs end above tuned
Adam, which avoids it by picking a tiny learning rate. `lopt.Celo(progress_feature=True)` lets
the step size see each tensor's gradient progress (log10 of recent over first gradient RMS), so
that it can shrink as the gradients do, as SGD's step does. Its weight starts at zero (the
stage-5 optimizer, unchanged): fixing it by hand at 0.25-1 decade per decade made the geometric
mean of final/initial validation loss on 30 meta-training-family tasks worse (-2.38 at 0, -2.14,
-2.01, -1.67), so it is left to meta-training.

Command:  python meta_train.py --config configs/generalist_progress.py --workdir runs/generalist6 \\
              --config.init_from=checkpoints/exports/generalist5_step1131.safetensors
Cost on 2 CPU cores and result: checkpoints/exports/README.md, stage 6.
"""

from configs import generalist_priors


def get_config():
    c = generalist_priors.get_config()
    c.lopt.progress_feature = True
    return c
