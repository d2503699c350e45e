"""μLO architecture on the standard parametrization: the `mulo_sp` pretrained file.

The same recipe as configs/mulo_mup.py (same family axes, estimator, outer optimizer and seed),
with every model in standard parametrization and the learned optimizer run without μP
multipliers: the μLO paper's comparison point, whose updates are expected to go wrong as width
grows beyond the meta-training widths.

Command:  python meta_train.py --config configs/mulo_sp.py --workdir runs/mulo_sp
Cost on 2 CPU cores: see lopt/pretrained/mulo_sp.md (compute spent, measured).
Expected: at meta-training widths it matches mulo_mup; see the width sweep in
benchmarks/RESULTS.md for what happens at 8× and 16× width.
"""

from configs import mulo_mup


def get_config():
    return mulo_mup.get_config(parametrization="sp")
