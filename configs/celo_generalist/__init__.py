"""The recipes behind the shipped `celo_generalist`, one file per stage of its `--config.init_from`
chain (stages 1, 2, 4, 5 and 9), with the learned-optimizer file each stage starts from beside it.

The table of stage, command, cost and result is `configs/celo_generalist/README.md`.
"""
