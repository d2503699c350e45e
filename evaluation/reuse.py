"""Tuned baselines reused from an earlier user-model run.

The tuned baselines of a user-model run do not depend on the learned optimizer: the same tasks,
grid, tuning seed and evaluation seeds give the same curves. `--baselines_from DIR` therefore
takes each baseline's tuning and evaluation runs from DIR/results.json and runs only the learned
optimizer, after checking that everything the baselines depend on matches (`HEADER_KEYS`, and per
task its model, data, horizon and evaluation interval); the full suite then costs a candidate its
own runs (about 10 of 41 minutes on 2 CPU cores). A mismatch is one clear error, raised before
anything runs.

>>> stored = {"seeds": 1, "eval_seeds": [1], "tune_seed": 0, "tuning_metric": "valid", "grid": [0.1],
...           "points_per_run": 3, "baselines": ["adam"], "tasks": {"t": {"kwargs": {}, "num_steps": 30,
...           "eval_every": 10, "optimizers": {"learned": {}, "adam": {"lr": 0.1}}}}}
>>> header = {k: stored[k] for k in HEADER_KEYS}
>>> pick(stored, header, {"t": ({}, 30, 10)}, ["adam"])
{'t': {'adam': {'lr': 0.1}}}
"""

from __future__ import annotations

import copy
import json
import pathlib
from typing import Any, Mapping, Sequence

HEADER_KEYS = ("seeds", "eval_seeds", "tune_seed", "tuning_metric", "grid", "points_per_run")


class BaselineReuseError(ValueError):
    """The stored run cannot stand in for this run's baselines (missing, corrupted or mismatched)."""


def read(path: str | pathlib.Path) -> dict:
    """The results.json of an earlier run (`path`: its directory or the file itself)."""
    path = pathlib.Path(path)
    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        raise BaselineReuseError(f"--baselines_from: no results.json at {path}")
    try:
        stored = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BaselineReuseError(f"--baselines_from: {file} is not valid JSON ({e})") from None
    if not isinstance(stored, dict) or not isinstance(stored.get("tasks"), dict) \
            or not all(k in stored for k in HEADER_KEYS + ("baselines",)):
        raise BaselineReuseError(f"--baselines_from: {file} is not the results.json of a user-model run")
    return stored


def pick(stored: Mapping[str, Any], header: Mapping[str, Any], tasks: Mapping[str, tuple[dict, int, int]],
         names: Sequence[str]) -> dict[str, dict[str, dict]]:
    """{task label: {baseline: its stored entry}} for `names`, after checking `header` (this run's
    HEADER_KEYS) and each task's (kwargs, num_steps, eval_every) against the stored run."""
    for key in HEADER_KEYS:
        if stored[key] != header[key]:
            raise BaselineReuseError(f"--baselines_from: the stored run has {key}={stored[key]!r}, this run "
                                     f"{header[key]!r}; its baselines would not be comparable")
    missing = [n for n in names if n not in stored["baselines"]]
    if missing:
        raise BaselineReuseError(f"--baselines_from: the stored run has no tuned {missing} (it has "
                                 f"{list(stored['baselines'])})")
    out = {}
    for label, (kwargs, num_steps, eval_every) in tasks.items():
        entry = stored["tasks"].get(label)
        if entry is None:
            raise BaselineReuseError(f"--baselines_from: the stored run has no task {label!r} (it has "
                                     f"{list(stored['tasks'])})")
        here = {"kwargs": kwargs, "num_steps": num_steps, "eval_every": eval_every}
        for key, value in here.items():
            if entry.get(key) != value:
                raise BaselineReuseError(f"--baselines_from: task {label!r} differs in {key}: stored "
                                         f"{entry.get(key)!r}, here {value!r}")
        out[label] = {n: copy.deepcopy(entry["optimizers"][n]) for n in names}
    return out
