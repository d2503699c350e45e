"""The one evaluation task type: a task spec trained for a number of steps, with its evaluation points.

Any `inner_tasks.TaskSpec` fits: the project's own μP and standard models (`inner_tasks.get_spec`)
and flax models as users write them (`evaluation.user_tasks.UserTaskSpec`). A task's
`fingerprint` is everything its baselines' results depend on, so cached baselines are matched by it.

>>> import inner_tasks
>>> t = EvalTask("digits_mlp", inner_tasks.get_spec("mlp", dataset="digits", width=32), 200, points=4)
>>> t.eval_every, t.pair
(50, ('digits', 'mlp'))
>>> t.with_steps(1000).eval_every
250
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import inner_tasks


def _plain(value: Any) -> Any:
    """A JSON-able copy of a spec field (tuples as lists, nested)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


@dataclasses.dataclass(frozen=True)
class EvalTask:
    """`spec` trained for `num_steps` steps; losses are taken at `points` + 1 evenly spaced steps
    (step 0 included). `rows` is how many runs one compiled call vmaps (1: one run per call, for
    convolutions, which vmapped over weights become slow grouped convolutions on CPU)."""

    label: str
    spec: inner_tasks.TaskSpec
    num_steps: int
    points: int = 25
    rows: int = 8
    kind: str = ""

    def __post_init__(self):
        if not isinstance(self.spec, inner_tasks.TaskSpec):
            raise TypeError(f"{self.label}: spec must be an inner_tasks.TaskSpec, got {type(self.spec).__name__}")
        if self.num_steps < 1 or self.points < 1 or self.num_steps % self.points:
            raise ValueError(f"{self.label}: num_steps={self.num_steps} is not a positive multiple of "
                             f"points={self.points}")
        if self.rows < 1:
            raise ValueError(f"{self.label}: rows must be >= 1, got {self.rows}")

    @property
    def eval_every(self) -> int:
        return self.num_steps // self.points

    @property
    def steps(self) -> list[int]:
        return list(range(0, self.num_steps + 1, self.eval_every))

    @property
    def pair(self) -> tuple[str, str]:
        """(dataset, model): what two suites must not share."""
        spec = self.spec
        dataset = getattr(spec, "dataset", None) or ("stdlib_text" if spec.name == "lm" else spec.name)
        return str(dataset), str(getattr(spec, "model", spec.name))

    def make(self) -> inner_tasks.Task:
        return self.spec.make()

    def with_steps(self, steps: int) -> EvalTask:
        """This task at another horizon, with as many points as divide it, up to its own."""
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        points = max(p for p in range(1, min(self.points, steps) + 1) if steps % p == 0)
        return dataclasses.replace(self, num_steps=steps, points=points)

    def fingerprint(self) -> dict[str, Any]:
        """What a baseline run on this task depends on, as plain JSON."""
        fields = {f.name: _plain(getattr(self.spec, f.name)) for f in dataclasses.fields(self.spec)}
        return json.loads(json.dumps({"spec": type(self.spec).__name__, "name": self.spec.name, "fields": fields,
                                      "num_steps": self.num_steps, "points": self.points}))
