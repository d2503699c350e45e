"""The test-suite ledger: every look at the `test` suite appends rows to a committed Markdown
table, so that any choice made on it is visible.

A run appends a row marked `started` before it runs anything and a row with its results when it
ends; a `started` row without a results row is an interrupted run (its results.json, rewritten
after every task, was still a look). A row holds the date (UTC), each learned optimizer with its tensor digest, the command, the win
counts (zero-tune and equal tuning, training and validation loss) and the output directory. The
file is rewritten atomically; a file that is not a ledger is refused before anything runs.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "ledger.md"
>>> check(path)
>>> append(path, {"date": "2026-12-07", "lopts": "x (ab12)", "command": "cmd", "zero_tune": "1/2, 0/2",
...               "tuned": "2/2, 1/2", "out": "runs/eval/test"})
>>> path.read_text().splitlines()[-1]
'| 2026-12-07 | x (ab12) | `cmd` | 1/2, 0/2 | 2/2, 1/2 | runs/eval/test |'
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from typing import Mapping

LEDGER = pathlib.Path(__file__).resolve().parent / "test_ledger.md"
TITLE = "# Test-suite ledger"
COLUMNS = ("date", "lopts", "command", "zero_tune", "tuned", "out")
HEADER = (f"{TITLE}\n\nEvery run of `python -m evaluation.evaluate --suite test` appends a row here "
          "(`evaluation.ledger`). The `test` suite only confirms a candidate about to ship; designs are chosen "
          "on `dev`. Wins are tasks where the learned optimizer's mean final loss is below the best tuned "
          "baseline's, as training loss, validation loss; a run logs a `started` row first and its results "
          "row when it ends.\n\n"
          "| date (UTC) | learned optimizers (tensor digest) | command | zero-tune wins (train, valid) | "
          "equal-tuning wins (train, valid) | output |\n|---|---|---|---|---|---|\n")


class LedgerError(ValueError):
    """The ledger file exists but is not a ledger (refused rather than overwritten)."""


def check(path: str | os.PathLike) -> None:
    """Raises LedgerError unless `path` is absent or a ledger this module wrote."""
    path = pathlib.Path(path)
    if path.exists() and not path.read_text(errors="replace").startswith(TITLE):
        raise LedgerError(f"{path} is not a test-suite ledger (it does not start with {TITLE!r}); refusing to "
                          "append to it")


def append(path: str | os.PathLike, row: Mapping[str, str]) -> None:
    """Appends one row (keys `COLUMNS`), creating the ledger with its header if absent."""
    path = pathlib.Path(path)
    check(path)
    text = path.read_text() if path.exists() else HEADER
    cells = [str(row[c]).replace("|", "\\|").replace("\n", " ") for c in COLUMNS]
    cells[2] = f"`{cells[2]}`"
    text = text.rstrip("\n") + "\n| " + " | ".join(cells) + " |\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ledger.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would make the result private
    os.replace(tmp, path)
