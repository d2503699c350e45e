"""The generalist mixture with convnets and byte-level LMs, in task-shape buckets: the throughput recipe.

Stage 9's recipe (configs/celo_generalist/stage9.py: flax default-init MLPs on generated tabular data
and Fashion-MNIST, PES, horizons 300/1000/3000) continued from the shipped `celo_generalist`, with
standard-parametrized convnets (8-16 px Fashion-MNIST) and transformer LMs over the Python standard
library's bytes added at weight 0.5 each, and 16 task-shape buckets (`groups.buckets`), so the run
compiles at most 16 estimator programs and reuses them on every redraw. `:mlp_only` drops the convnets
and LMs: the MLP-only mixture that `benchmarks.meta_throughput` compares it with.

Command:  python meta_train.py --config configs/mixture.py --workdir runs/mixture
          python meta_train.py --config configs/mixture.py:mlp_only --workdir runs/mixture_mlp
Inner steps/s: 7,638, its estimator on its first task draw (a tabular task) after compilation
(`python -m benchmarks.meta_throughput --parts recipes`, 2026-12-07, 2 cores at load ~6).
Cost on 2 CPU cores: 4051 meta-steps in 2 hours, 453 inner steps/s compile included, beside the
MLP-only run for its first 30 minutes: 231 against its 569 inner steps/s over the same 30
minutes (40.6%; benchmarks/RESULTS.md, issue 28). It emptied JAX's caches once, at 72 minutes,
under the memory-map threshold then in force (0.6 of the limit; now 0.8).
Result: a throughput and stability recipe; its export is not shipped.
"""

import ml_collections

from configs.celo_generalist import stage9

MEMBERS = ("all", "mlp_only")
CONV = dict(datasets=("fashion_mnist",), resolutions=(8, 16), channels=(8, 16, 32), depths=(2, 3),
            batch_sizes=(32, 64, 128), activations=("relu", "gelu", "tanh"), parametrization="sp", weight=0.5)
LM = dict(widths=(16, 32, 64), depths=(1, 2), contexts=(16, 32), batch_sizes=(4, 8), head_dim=16,
          parametrization="sp", weight=0.5)


def get_config(members: str = "all") -> ml_collections.ConfigDict:
    if members not in MEMBERS:
        raise ValueError(f"configs/mixture.py:{members}: unknown members; valid: {MEMBERS}")
    c = stage9.get_config()
    c.init_from = "celo_generalist"
    if members == "all":
        c.family.members.conv = ml_collections.ConfigDict(CONV)
        c.family.members.lm = ml_collections.ConfigDict(LM)
    c.groups.buckets = 16
    c.checkpoint.update(every=100, keep=2)
    return c
