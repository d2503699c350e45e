"""μLO architecture on the standard parametrization: the `mulo_sp` pretrained file.

The same recipe as configs/mulo_mup.py (same family axes, estimator, outer optimizer and seed),
with every model in standard parametrization and the learned optimizer run without μP
multipliers: the μLO paper's comparison point, whose updates are expected to go wrong as width
grows beyond the meta-training widths.

Command:  python meta_train.py --config configs/mulo_sp.py --workdir runs/mulo_sp
Inner steps/s: 950, its estimator on its first task draw (an mlp task) after compilation
(`python -m benchmarks.meta_throughput --parts recipes`, 2026-12-07, 2 cores at load ~6).
Cost on 2 CPU cores: 500 meta-steps in 0.84 h, measured side by side with configs/mulo_mup.py.
Expected (measured, seed 0): held-out meta-loss 10609 at the initialization (the untrained
optimizer blows up standard-parametrized models), 0.35 at step 250 and 0.34 at step 500; on
depth-2 MLPs its final training loss rises from 0.48 at width 64 to 1.71 at width 1024, against
0.45 to 0.41 for mulo_mup (evaluation/RESULTS.md, width sweep).
"""

from configs import mulo_mup


def get_config():
    return mulo_mup.get_config(parametrization="sp")
