"""Tuned baselines reused from an earlier evaluation.

Tuned baselines do not depend on the learned optimizer: the same task (its `EvalTask.fingerprint`),
grids, tuning seed and evaluation seeds give the same runs. `--baselines_from DIR` takes them
from DIR/results.json after checking all of that, and runs only the learned optimizers. A
mismatch, a missing task or baseline, or a file that is not an evaluation's results is one clear
error, raised before anything runs.

>>> stored = {"version": RESULTS_VERSION, "tune_seed": 0, "eval_seeds": [1], "grids": {"adam": {}},
...           "baselines": ["adam"], "tasks": {"t": {"fingerprint": {"a": 1}, "baselines": {"adam": {"x": 1}}}}}
>>> header = {k: stored[k] for k in HEADER_KEYS}
>>> pick(stored, header, {"t": {"a": 1}}, ["adam"])
{'t': {'adam': {'x': 1}}}
"""

from __future__ import annotations

import copy
import json
import pathlib
from typing import Any, Mapping, Sequence

RESULTS_VERSION = 2  # results.json layout; bump when the same runs would be stored differently
HEADER_KEYS = ("version", "tune_seed", "eval_seeds", "grids")


class BaselineReuseError(ValueError):
    """The stored run cannot stand in for this run's baselines (missing, corrupted or mismatched)."""


def read(path: str | pathlib.Path) -> dict:
    """The results.json of an earlier evaluation (`path`: its directory or the file itself)."""
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
        raise BaselineReuseError(f"--baselines_from: {file} is not the results.json of an evaluation "
                                 f"(results version {RESULTS_VERSION})")
    return stored


def pick(stored: Mapping[str, Any], header: Mapping[str, Any], fingerprints: Mapping[str, dict],
         names: Sequence[str]) -> dict[str, dict[str, dict]]:
    """{task label: {baseline: its stored entry}} for `names`, after checking `header` (this run's
    HEADER_KEYS) and each task's fingerprint against the stored run."""
    for key in HEADER_KEYS:
        if stored[key] != header[key]:
            raise BaselineReuseError(f"--baselines_from: the stored run has {key}={stored[key]!r}, this run "
                                     f"{header[key]!r}; its baselines would not be comparable")
    missing = [n for n in names if n not in stored["baselines"]]
    if missing:
        raise BaselineReuseError(f"--baselines_from: the stored run has no tuned {missing} (it has "
                                 f"{list(stored['baselines'])})")
    out = {}
    for label, fingerprint in fingerprints.items():
        entry = stored["tasks"].get(label)
        if not isinstance(entry, dict) or not isinstance(entry.get("baselines"), dict):
            raise BaselineReuseError(f"--baselines_from: the stored run has no task {label!r} (it has "
                                     f"{list(stored['tasks'])})")
        if entry.get("fingerprint") != fingerprint:
            raise BaselineReuseError(f"--baselines_from: task {label!r} differs from the stored one (model, data, "
                                     f"horizon or evaluation points): stored {entry.get('fingerprint')!r}, "
                                     f"here {fingerprint!r}")
        lacking = [n for n in names if n not in entry["baselines"]]
        if lacking:
            raise BaselineReuseError(f"--baselines_from: task {label!r} has no stored runs of {lacking}")
        out[label] = {n: copy.deepcopy(entry["baselines"][n]) for n in names}
    return out


def untuned(stored: Mapping[str, Any], fingerprints: Mapping[str, dict]) -> dict[str, dict]:
    """{task label: its stored untuned-reference runs} for the tasks of `fingerprints` whose stored
    entry has them and the same fingerprint (results written before the reference existed have none)."""
    out = {}
    for label, fingerprint in fingerprints.items():
        entry = stored["tasks"].get(label)
        if isinstance(entry, dict) and entry.get("fingerprint") == fingerprint and isinstance(entry.get("untuned"), dict):
            out[label] = copy.deepcopy(entry["untuned"])
    return out
