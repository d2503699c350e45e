"""The README's first example runs as written and trains: the shipped default optimizer, loaded
with only `num_steps`, lowers a default-init flax MLP's loss."""

import pathlib
import re

import jax
import optax

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def first_python_block() -> str:
    match = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert match, "README.md has no python example"
    return match.group(1)


def test_readme_first_example_runs_and_lowers_the_loss():
    code = first_python_block()
    assert 'lopt.load("' in code and "num_steps=" in code
    ns: dict = {}
    exec(compile(code, str(README), "exec"), ns)
    model, x, y = ns["model"], ns["x"], ns["y"]
    loss = lambda p: float(optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean())
    initial = loss(model.init(jax.random.key(1), x))
    final = loss(ns["params"])
    assert final < 0.5 * initial, (initial, final)
    assert int(jax.tree.leaves(ns["state"])[0]) == 300  # the optimizer counted every step
