"""Evaluation suites as data: named lists of `EvalTask`s.

| suite | what it is for |
|---|---|
| `dev` | choosing designs and constants; look as often as you like (`--quick`: a subset in about 10 minutes) |
| `test` | confirming a candidate about to ship; every run is logged in `evaluation/test_ledger.md` (`--part 1`, `--part 2`: two halves of about 35 and 40 minutes on 2 cores) |
| `digits`, `quick`, `heldout`, `fmnist_mlp`, `conv`, `lm`, `width_mup`, `width_sp` | the project's own μP/standard models (`inner_tasks`) at sizes and horizons meta-training did not use |

Recurrent models run one run per compiled call (`rows=1`): vmapped over 8 runs, XLA:CPU (jaxlib
0.10.2) sporadically deadlocked in the GRU's nested loops (0% CPU, the result never ready).

`dev` and `test` hold flax models with flax's default initialization, as users write them
(`evaluation.user_tasks`), on offline data meta-training never reads: sklearn's bundled datasets
(evaluation data only), Fashion-MNIST 28×28, the licence texts in /usr/share/common-licenses and
the Perl modules of Debian's perl-base. They share no (dataset, model) pair, and `test` has model
kinds `dev` lacks (a normalized convnet, a recurrent LM). Both have data-rich long runs (a
Fashion-MNIST 28×28 MLP for 5000 steps, a convnet for 2000, a byte-level transformer LM for 2000),
a residual LayerNorm model, a recurrent model, an autoencoder, and small tabular classification
and regression.

>>> sorted({t.pair for t in SUITES["dev"].tasks} & {t.pair for t in SUITES["test"].tasks})
[]
>>> [t.label for t in SUITES["dev"].select(quick=True)][:2]
['iris_mlp_w64_d2', 'diabetes_mlp_w256_d2']
>>> [t.label for t in SUITES["test"].select(part=2)]
['fmnist28_convnorm_c4_c8', 'perl_transformer_w32_d2']
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import inner_tasks
from evaluation.tasks import EvalTask
from evaluation.user_tasks import UserTaskSpec


class SuiteError(ValueError):
    """An unknown suite or task name."""


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    tasks: tuple[EvalTask, ...]
    quick: tuple[str, ...] = ()
    ledger: bool = False
    description: str = ""
    parts: tuple[tuple[str, ...], ...] = ()  # a partition of the tasks, each part run by its own command


    def __post_init__(self):
        labels = [t.label for t in self.tasks]
        if len(set(labels)) != len(labels):
            raise ValueError(f"suite {self.name!r}: task labels are not unique")
        unknown = sorted(set(self.quick) - set(labels))
        if unknown:
            raise ValueError(f"suite {self.name!r}: quick subset names unknown tasks {unknown}")
        if self.parts and sorted(sum(self.parts, ())) != sorted(labels):
            raise ValueError(f"suite {self.name!r}: its parts must hold every task exactly once")

    def select(self, names: Sequence[str] | None = None, quick: bool = False,
               part: int | None = None) -> tuple[EvalTask, ...]:
        """The suite's tasks: all, its quick subset, its `part` (1-based), or the named ones (in the suite's order)."""
        by_label = {t.label: t for t in self.tasks}
        if quick and not self.quick:
            raise SuiteError(f"suite {self.name!r} has no quick subset")
        if part is not None:
            if names or quick:
                raise SuiteError("choose one of a part, the quick subset or named tasks")
            if not self.parts:
                raise SuiteError(f"suite {self.name!r} has no parts")
            if not 1 <= part <= len(self.parts):
                raise SuiteError(f"suite {self.name!r} has parts 1..{len(self.parts)}, got {part}")
            return tuple(t for t in self.tasks if t.label in self.parts[part - 1])
        if names:
            unknown = [n for n in names if n not in by_label]
            if unknown:
                raise SuiteError(f"unknown tasks {unknown} in suite {self.name!r}; it has {list(by_label)}")
            return tuple(t for t in self.tasks if t.label in names)
        return tuple(t for t in self.tasks if t.label in self.quick) if quick else self.tasks


def user(label: str, model: str, dataset: str, steps: int, batch: int | None = 64, rows: int = 8, kind: str = "",
         context: int = 64, **model_kwargs) -> EvalTask:
    """A flax default-init model on user data (`UserTaskSpec`), 25 evaluation points."""
    spec = UserTaskSpec(model=model, model_kwargs=model_kwargs, dataset=dataset, batch_size=batch,
                        valid_batch=None if batch is None else 64, context=context)
    return EvalTask(label, spec, steps, rows=rows, kind=kind)


def _mlp(label, dataset, width, depth, steps, **kw) -> EvalTask:
    return user(label, "mlp", dataset, steps, widths=(width,) * depth, **kw)


DEV = Suite("dev", (
    _mlp("iris_mlp_w64_d2", "iris", 64, 2, 300, kind="tabular classification, 120 rows"),
    _mlp("diabetes_mlp_w256_d2", "diabetes", 256, 2, 1000, kind="tabular regression, 353 rows"),
    user("digits_resmlp_w64_d2", "resmlp", "digits", 1000, width=64, depth=2, kind="residual LayerNorm MLP"),
    user("digits_gru_h64", "gru", "digits", 1000, hidden=64, rows=1, kind="recurrent classifier (image rows)"),
    _mlp("digits_mlp_w512_d2", "digits", 512, 2, 1000, kind="wide MLP"),
    user("fmnist28_ae_128_32", "ae", "fashion_mnist", 1000, widths=(128, 32), kind="autoencoder"),
    _mlp("fmnist28_mlp_w128_d2", "fashion_mnist", 128, 2, 5000, kind="data-rich long run"),
    user("fmnist28_conv_c4_c8", "conv", "fashion_mnist", 2000, batch=32, rows=1, channels=(4, 8), hidden=32,
         kind="convnet"),
    user("licenses_transformer_w32_d2", "lm", "licenses", 2000, batch=16, rows=4, context=32, width=32, depth=2,
         heads=2, kind="byte-level transformer LM"),
), quick=("iris_mlp_w64_d2", "diabetes_mlp_w256_d2", "digits_resmlp_w64_d2", "digits_gru_h64"),
    description="for choosing designs and constants")

TEST = Suite("test", (
    _mlp("wine_mlp_w128_d2", "wine", 128, 2, 500, kind="tabular classification, 142 rows"),
    _mlp("breast_cancer_mlp_w256_d3", "breast_cancer", 256, 3, 1000, kind="tabular classification, 455 rows"),
    _mlp("linnerud_mlp_w32_d2", "linnerud", 32, 2, 300, batch=None, kind="tabular regression, 16 rows, full batch"),
    user("diabetes_resmlp_w64_d2", "resmlp", "diabetes", 1000, width=64, depth=2, kind="residual LayerNorm regression"),
    user("digits_ae_64_16", "ae", "digits", 1000, widths=(64, 16), kind="autoencoder"),
    user("licenses_gru_lm_h64", "gru", "licenses", 1000, batch=16, rows=1, context=32, hidden=64,
         kind="recurrent LM"),
    user("fmnist28_resmlp_w64_d2", "resmlp", "fashion_mnist", 5000, width=64, depth=2,
         kind="data-rich long run, residual LayerNorm MLP"),
    user("fmnist28_convnorm_c4_c8", "convnorm", "fashion_mnist", 2000, batch=32, rows=1, channels=(4, 8),
         kind="normalized convnet"),
    user("perl_transformer_w32_d2", "lm", "perl", 2000, batch=16, rows=4, context=32, width=32, depth=2, heads=2,
         kind="byte-level transformer LM"),
), ledger=True, description="confirms a candidate about to ship; every run is logged",
    # Two halves of about 35 and 40 minutes on 2 cores (celo_generalist with every baseline; the
    # tasks' wall_s in evaluation/results/test.json).
    parts=(("wine_mlp_w128_d2", "breast_cancer_mlp_w256_d3", "linnerud_mlp_w32_d2", "diabetes_resmlp_w64_d2",
            "digits_ae_64_16", "licenses_gru_lm_h64", "fmnist28_resmlp_w64_d2"),
           ("fmnist28_convnorm_c4_c8", "perl_transformer_w32_d2")))


def _mlp_mup(label: str, width: int, depth: int = 2, resolution: int = 8, steps: int = 1000, points: int = 10,
             dataset: str = "fashion_mnist", **kw) -> EvalTask:
    spec = inner_tasks.get_spec("mlp", dataset=dataset, resolution=resolution, width=width, depth=depth, **kw)
    return EvalTask(label, spec, steps, points=points)


def _conv_mup(label: str, channels: int, depth: int, resolution: int, steps: int = 1000, **kw) -> EvalTask:
    spec = inner_tasks.get_spec("conv", dataset="fashion_mnist", resolution=resolution, channels=channels,
                                depth=depth, **kw)
    return EvalTask(label, spec, steps, points=10, rows=1)


def _lm_mup(label: str, width: int, depth: int, context: int = 64, steps: int = 1000, batch_size: int = 16,
            **kw) -> EvalTask:
    spec = inner_tasks.get_spec("lm", width=width, depth=depth, num_heads=width // 16, context=context,
                                batch_size=batch_size, **kw)
    return EvalTask(label, spec, steps, points=10, rows=4)


def _width_sweep(parametrization: str) -> tuple[EvalTask, ...]:
    return tuple(_mlp_mup(f"fmnist8_mlp_w{w}_d2_{parametrization}", w, steps=500,
                          parametrization=parametrization) for w in (64, 128, 256, 512, 1024))


_OWN = {  # the project's own models; μP unless a task says otherwise; batch 128 (LMs 16)
    "digits": (_mlp_mup("digits_mlp_w32_d2", 32, dataset="digits", steps=200, points=4),
               _mlp_mup("digits_mlp_w64_d1", 64, depth=1, dataset="digits", steps=200, points=4)),
    "quick": (_mlp_mup("fmnist8_mlp_w32_d2", 32, steps=300, points=6),
              _mlp_mup("fmnist8_mlp_w128_d2", 128, steps=300, points=6),
              _mlp_mup("fmnist8_mlp_w128_d3_tanh", 128, depth=3, steps=300, points=6, activation="tanh")),
    # Sizes and horizons configs/mulo_mup.py's meta-training never saw (it trains Fashion-MNIST
    # MLPs at 8 and 16 px, widths 16-64, depths 1-3, 8 px convnets and width-32 LMs, 100-500 steps).
    "heldout": (_mlp_mup("mlp_w512_d2 (8x width)", 512, steps=500),
                _mlp_mup("mlp_w1024_d2 (16x width)", 1024, steps=500),
                _mlp_mup("mlp_w64_d6 (2x depth)", 64, depth=6),
                _mlp_mup("mlp28_w64_d2 (28x28)", 64, resolution=28),
                _mlp_mup("mlp_w64_d2_gelu (activation)", 64, activation="gelu"),
                _mlp_mup("mlp_w128_d3_tanh (activation)", 128, depth=3, activation="tanh"),
                _conv_mup("conv8_c32_d3 (convnet)", 32, 3, 8, batch_size=64),
                _lm_mup("lm_w64_d2_ctx32 (byte LM)", 64, 2, context=32, batch_size=8),
                _mlp_mup("mlp_w32_d2 (5x horizon)", 32, steps=2500),
                _mlp_mup("mlp16_w64_d3 (5x horizon)", 64, depth=3, resolution=16, steps=2500)),
    "width_mup": _width_sweep("mup"),
    "width_sp": _width_sweep("sp"),
    "fmnist_mlp": (_mlp_mup("fmnist8_mlp_w128_d2", 128), _mlp_mup("fmnist8_mlp_w1024_d2", 1024),
                   _mlp_mup("fmnist8_mlp_w128_d4", 128, depth=4),
                   _mlp_mup("fmnist28_mlp_w512_d2", 512, resolution=28, steps=2000)),
    "conv": (_conv_mup("fmnist8_conv_c16_d2", 16, 2, 8), _conv_mup("fmnist16_conv_c32_d3", 32, 3, 16)),
    "lm": (_lm_mup("lm_w32_d1_ctx32", 32, 1, context=32), _lm_mup("lm_w64_d2_ctx64", 64, 2)),
}

SUITES: dict[str, Suite] = {"dev": DEV, "test": TEST,
                            **{n: Suite(n, tasks, description="the project's own models") for n, tasks in _OWN.items()}}


def get(name: str) -> Suite:
    if name not in SUITES:
        raise SuiteError(f"unknown suite {name!r}; valid: {list(SUITES)}")
    return SUITES[name]
