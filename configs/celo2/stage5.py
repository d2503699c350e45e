"""celo2, stage 5: meta-training with Newton–Schulz on (Celo2 rather than Celo2-base).

On `dev`, adopting `newton_schulz=True` on the shipped θ (meta-trained without it) lowered the
zero-tune training loss on 7 of 9 tasks, the 5000-step Fashion-MNIST MLP 0.2115 → 0.1183
(evaluation/RESULTS.md, "Celo2's defaults"). This stage meta-trains θ as it is then used:
stage 4's recipe (the relative step at init, r 0.1) with orthogonalized directions, from stage
4's export (configs/celo2/stage4.safetensors, meta-step 3615).

Command:  python meta_train.py --config configs/celo2/stage5.py --workdir runs/celo2/stage5
          python meta_train.py --config configs/celo2/stage5.py --workdir runs/celo2/stage5 --export
Inner steps/s: up to 9,500, 400-3,100 beside evaluations (`perf/inner_steps_per_s`; Newton–Schulz
makes each inner step dearer).
Cost on 2 CPU cores: 1891 meta-steps in about 70 minutes of running wall-clock (2026-12-08, paused
while evaluations and the test suite ran, beside one the rest); it continues (`--workdir
runs/celo2/stage5`, or from stage5.safetensors beside this recipe, its export at meta-step 1891,
via `--config.init_from`).
Result so far: with orthogonalization the held-out meta-loss (the same 3 family tasks as stages
1-4) starts at 0.1877, against 0.1845 for stage 4's θ without it; 1891 meta-steps kept it within
0.1874-0.1877. Not shipped.
"""

import ml_collections

from configs.celo2 import stage4


def get_config() -> ml_collections.ConfigDict:
    c = stage4.get_config()
    c.init_from = "configs/celo2/stage4.safetensors"
    c.lopt.newton_schulz = True
    return c
