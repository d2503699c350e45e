"""The demo CLI, its config checks, and the README's two commands staying in step with CI."""

import json
import pathlib
import re
import subprocess
import sys

import pytest

import meta_train
from configs import demo

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _tiny_config():
    c = demo.get_config()
    c.family.datasets = ("digits",)
    c.family.widths = (16,)
    c.train.num_steps = 40
    c.train.eval_every = 20
    return c


def test_run_trains_and_writes_curve(tmp_path, capsys):
    curve = meta_train.run(_tiny_config(), str(tmp_path))
    out = capsys.readouterr().out
    assert "task: MLPSpec(dataset='digits'" in out and out.count("\n") >= 5
    record = json.loads((tmp_path / "curve.json").read_text())
    assert record["valid_step"] == [0, 20, 40] and len(record["train_loss"]) == 40
    assert record["valid_loss"][-1] < record["valid_loss"][0] == pytest.approx(float(curve.valid_loss[0]))


@pytest.mark.parametrize(
    "field, value, match",
    [
        (("family", "name"), "resnet", "unknown family 'resnet'"),
        (("family", "activations"), ("relu", "swish9"), "valid: .*gelu"),
        (("train", "optimizer"), "adagrad2", "unknown optimizer"),
        (("train", "learning_rate"), -1.0, "must be positive"),
        (("train", "eval_every"), 7, "multiple of eval_every"),
    ],
)
def test_bad_config_values_fail_clearly(field, value, match):
    c = _tiny_config()
    c[field[0]][field[1]] = value
    with pytest.raises(ValueError, match=match):
        meta_train.run(c, None)


def test_cli_rejects_unknown_config_keys():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "meta_train.py"), f"--config={ROOT / 'configs/demo.py'}", "--config.train.lr=1"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode != 0 and "lr" in proc.stderr


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(apt-get[^\n]*)\n```", text)


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one():
    commands = _readme_commands()
    assert len(commands) == 2
    main_cmd, test_cmd = commands
    assert "meta_train.py --config configs/" in main_cmd and "pytest" in test_cmd
    assert test_cmd in (ROOT / ".ci/run").read_text()
    config = re.search(r"--config (configs/\S+\.py)", main_cmd).group(1)
    assert (ROOT / config).is_file()
