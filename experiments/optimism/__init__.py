"""Optimistic meta-gradients (Flennerhag et al., NeurIPS 2023) reproduced at CPU scale.

Every meta-learner here is the library's `lopt.online_meta`; the rest is the experiment:

| module | what |
|---|---|
| `run` | the command: `python -m experiments.optimism.run reproduce [--quick]` (every table and plot of RESULTS.md) or `... online --workdir DIR` (one run with TensorBoard events) |
| `convex` | (a1) online meta-learning of the update on the Lessard–Recht–Packard function and controls, the fairness ablation, (a2) averaged AdaGrad; float64 |
| `mlp` | (b) element-wise learning rates meta-learned online on a Fashion-MNIST 8×8 MLP, with baselines |
| `online_run` | `OnlineSetup`, its `PRESETS` and `run`: one (b) run with TensorBoard logging |
| `report` | tables and plots of the results |

Results, commands and costs: experiments/optimism/RESULTS.md. Tests: tests/test_optimism.py.
"""
