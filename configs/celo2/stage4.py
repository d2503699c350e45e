"""celo2, stage 4: meta-training under the relative step `celo2_generalist` ships with.

`celo2_generalist` steps each learned tensor by the 1/√N peak times max(RMS(p₀), 1e-3)/0.1, p₀ the
tensor at initialization (`relative_step` 0.1, `relative_to` "init", chosen on `dev` after stage 1
meta-trained θ under absolute steps). This stage continues from stage 3's export under that rule, so
that θ is meta-trained as it is used; everything else is stage 1's (configs/celo2/stage1.py). Under
Celo2's weight reparametrization (weights stored at w/s) the relative step undoes s.

Command:  python meta_train.py --config configs/celo2/stage4.py --workdir runs/celo2/stage4
          python meta_train.py --config configs/celo2/stage4.py --workdir runs/celo2/stage4 --export
Inner steps/s: up to 17,000, about 1,800 at the end (`perf/inner_steps_per_s`, beside the test
suite); 424 s of compilation (new programs for the relative step), no cache flush, at most 30.4k
memory maps.
Cost on 2 CPU cores: 3615 meta-steps in 55 minutes of wall-clock over two sessions (2026-12-07,
beside test and evaluation runs); it continues (`--workdir runs/celo2/stage4`, or from
stage4.safetensors beside this recipe, its export at meta-step 3615, via `--config.init_from`).
Result: under the relative step the held-out meta-loss (training loss over 1000 steps over the
first, the same 3 tasks of the family as stages 1-3) starts at 0.1848 instead of 0.582, the gain
of the rule itself on reparametrized tasks; 3615 meta-steps moved it within 0.1844-0.1850 (0.1845
at the export). On `dev` (zero-tune, `runs/eval/dev_celo2_ns`) its θ at meta-step 1561 was no
better than stage 1's: lower training loss on 3 of 9 tasks (the LM 1.454 → 1.439). Not shipped;
stage 5 continues it with Newton–Schulz on.
"""

import ml_collections

from configs.celo2 import stage3


def get_config() -> ml_collections.ConfigDict:
    c = stage3.get_config()
    c.init_from = "configs/celo2/stage3.safetensors"
    c.lopt.relative_step = 0.1
    c.lopt.relative_to = "init"
    return c
