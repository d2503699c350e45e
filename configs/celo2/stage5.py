"""celo2, stage 5: meta-training with Newton–Schulz on (Celo2 rather than Celo2-base).

On `dev`, adopting `newton_schulz=True` on the shipped θ (meta-trained without it) lowered the
zero-tune training loss on 7 of 9 tasks, the 5000-step Fashion-MNIST MLP 0.2115 → 0.1183
(evaluation/RESULTS.md, "Celo2's defaults"). This stage meta-trains θ as it is then used:
stage 4's recipe (the relative step at init, r 0.1) with orthogonalized directions, from stage
4's export (configs/celo2/stage4.safetensors, meta-step 3615).

Command:  python meta_train.py --config configs/celo2/stage5.py --workdir runs/celo2/stage5
          python meta_train.py --config configs/celo2/stage5.py --workdir runs/celo2/stage5 --export
Cost on 2 CPU cores: not measured yet (running).
Result: not measured yet.
"""

import ml_collections

from configs.celo2 import stage4


def get_config() -> ml_collections.ConfigDict:
    c = stage4.get_config()
    c.init_from = "configs/celo2/stage4.safetensors"
    c.lopt.newton_schulz = True
    return c
