"""celo2, stage 3: stage 1's optimizer meta-trained under the shipped horizon rule, with and without
the bounded magnitude correction.

Stage 1 meta-trained θ under a constant 1e-3 peak; `celo2_generalist` ships it with the 1/√T peak
chosen on `dev` afterwards (`horizon_exponent` 0.5). This stage continues from stage 1's export
under the rule users get, at stage 1's outer step (stage 2's 10× larger one raised the held-out
meta-loss: benchmarks/RESULTS.md and the card), and measures the learned magnitude correction
(`Celo2.magnitude_correction`, a per-tensor factor in [1/2, 2], zero-initialized) against none:
two runs from the same θ, the same seed and the same task draws, side by side on the same cores.
Everything else is stage 1's (configs/celo2/stage1.py).

Command:  python meta_train.py --config configs/celo2/stage3.py --workdir runs/celo2/stage3
          python meta_train.py --config configs/celo2/stage3.py --workdir runs/celo2/stage3_magnitude \
              --config.lopt.magnitude_correction=True
          (each then again with --export)
Inner steps/s: 740-20,000 (`perf/inner_steps_per_s`; median about 1,500 with both runs and
evaluations on the cores); 68 s of compilation for the first run (its 20 programs were in the
persistent cache from stage 2), 849 s for the second (the correction's programs were new).
Cost on 2 CPU cores (2026-12-07, the two runs side by side, beside evaluations; paused 25 min
for the test look): 4326 and 3410 meta-steps in 1 h 49 min of wall-clock each, 63 and 62
minutes of process CPU time; no cache flush, at most 38.6k memory maps.
Result: not shipped; neither run moved the held-out meta-loss (training loss over 1000 steps
over the first, 3 tasks of the family, evaluated every 250 meta-steps). Without the correction it
stayed at 0.5816-0.5824 (0.5820 at the start); with it, it rose steadily to 0.5835, while the
correction's weights moved only to about -0.01 (a step factor of about 0.98): on this recipe the
bounded magnitude correction does not help, and is left off. stage3.safetensors beside this
recipe is the first run's export (meta-step 4326), the point a later continuation starts from
(`--config.init_from`).
"""

import ml_collections

from configs.celo2 import stage1


def get_config() -> ml_collections.ConfigDict:
    c = stage1.get_config()
    c.init_from = "configs/celo2/stage1.safetensors"
    c.lopt.horizon_exponent = 0.5
    c.lopt.magnitude_correction = False
    return c
