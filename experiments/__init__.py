"""Experiments built on the library: each package reproduces one study with one command and keeps
its results beside it (`RESULTS.md`). Nothing in the library imports them.

| package | what |
|---|---|
| `experiments.optimism` | optimistic meta-gradients (Flennerhag et al., 2023) at CPU scale, through `lopt.online_meta`: `python -m experiments.optimism.run reproduce` |
"""
