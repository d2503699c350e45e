"""Jitted functions of an estimator, with one program cache per estimator class.

jax 0.10.2 compares the treedefs of two registered dataclasses of the same layout (PES and
ES-Single, and their states) as equal while their hashes differ, so one shared `jax.jit` cache can
hand one class the program traced for the other (estimators/NOTES.md has the reproduction).
`PerClassJit` keeps one jitted function per set of node classes of its first argument.

>>> import jax, inner_tasks, lopt
>>> from estimators import LOProblem, PES, ESSingle, Truncation
>>> problem = LOProblem(task=inner_tasks.get_task("quadratic", dim=4), arch=lopt.LearnableAdam())
>>> trunc = Truncation(trunc_length=5, min_horizon=10, max_horizon=50)
>>> init = PerClassJit(lambda est, theta, key: est.init(theta, key))
>>> init.program(PES(problem=problem, trunc=trunc)) is init.program(ESSingle(problem=problem, trunc=trunc))
False
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax

MAX_PROGRAMS = 24  # compiled programs one PerClassJit function keeps (a run's task buckets must fit)


def node_classes(tree: Any) -> tuple[type, ...]:
    """The class of every node of `tree`'s pytree structure (leaves aside), depth first."""
    classes, stack = [], [jax.tree.structure(tree)]
    while stack:
        treedef = stack.pop()
        data = treedef.node_data()
        if data is not None:
            classes.append(data[0])
            stack.extend(reversed(treedef.children()))
    return tuple(classes)


class PerClassJit:
    """`jax.jit(fn, **jit_kwargs)` with one program cache per `node_classes` of fn's first
    argument (an estimator). One shared cache is unsafe: jax 0.10.2 compares the treedefs of two
    registered dataclasses of the same layout (PES and ES-Single, their states) as equal while
    their hashes differ, so a cache can hand one class the program traced for the other
    (estimators/NOTES.md). `program(first)` is the jitted function for first's classes.

    Each function keeps at most `max_programs` compiled programs: a long meta-training run draws
    new task shapes every few hundred steps, and every compiled program holds its machine code
    (memory maps) until the process ends; two generalist runs died at meta-step ~1900 and ~2400
    with "LLVM compilation error: Cannot allocate memory". When a function's cache is full it is
    emptied before the next call, which then compiles again."""

    def __init__(self, fn: Callable, max_programs: int = MAX_PROGRAMS, **jit_kwargs: Any):
        if max_programs < 1:
            raise ValueError(f"max_programs must be >= 1, got {max_programs}")
        self.fn, self.jit_kwargs, self.programs, self.max_programs = fn, jit_kwargs, {}, max_programs
        functools.update_wrapper(self, fn)  # name, docstring and signature of fn

    def program(self, first: Any) -> Callable:
        classes = node_classes(first)
        if classes not in self.programs:  # a fresh function object: jax also caches traces by function
            fn = self.fn
            self.programs[classes] = jax.jit(functools.wraps(fn)(lambda *a, **k: fn(*a, **k)), **self.jit_kwargs)
        return self.programs[classes]

    def __call__(self, first: Any, *args: Any, **kwargs: Any) -> Any:
        program = self.program(first)
        if program._cache_size() >= self.max_programs:
            program.clear_cache()
        return program(first, *args, **kwargs)
