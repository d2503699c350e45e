"""The import graph of our own modules: no cycle, and no import against the README's layer table.

Every `import` and `from … import` of the packages below is read with `ast` (top-level, inside
functions and under `TYPE_CHECKING` alike) and resolved to the module it names. The allowed
imports are parsed from the table between the `<!-- layers -->` markers of README.md, so the
README and this check cannot drift apart. Nothing here imports the modules it reads (no jax).
"""

from __future__ import annotations

import ast
import pathlib
import re
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]
OURS = ("lopt", "inner_tasks", "estimators", "outer", "evaluation", "configs", "benchmarks", "meta_train",
        "monitoring", "experiments", "checkpoints")
LAYERS_START, LAYERS_END = "<!-- layers -->", "<!-- /layers -->"
EVERYTHING_ABOVE = "everything above"

Graph = dict[str, dict[str, int]]  # module -> {imported module: first line that imports it}


def parse_layers(readme: str) -> dict[str, frozenset[str]]:
    """{package: the packages it may import}, in the table's order (bottom layer first).

    Rows are `| \\`package\\` | \\`a\\`, \\`b\\` |` or `| \\`package\\` | everything above |`; a package may
    name only packages of earlier rows, so the table itself is an order without cycles."""
    start, end = readme.find(LAYERS_START), readme.find(LAYERS_END)
    if start < 0 or end < start:
        raise ValueError(f"README has no layer table between {LAYERS_START} and {LAYERS_END}")
    allowed: dict[str, frozenset[str]] = {}
    for line in readme[start + len(LAYERS_START):end].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue  # header, separator or prose
        (package,) = re.findall(r"`([\w.]+)`", cells[0])
        if EVERYTHING_ABOVE in cells[1]:
            names = frozenset(allowed)
        else:
            names = frozenset(re.findall(r"`([\w.]+)`", cells[1]))
            below = names - set(allowed)
            if below:
                raise ValueError(f"layer table: {package} may import only packages of earlier rows, not {sorted(below)}")
        if package in allowed:
            raise ValueError(f"layer table: {package} has two rows")
        allowed[package] = names
    if not allowed:
        raise ValueError("the layer table has no rows")
    return allowed


def module_files(root: pathlib.Path, packages: tuple[str, ...]) -> dict[str, pathlib.Path]:
    """{dotted module name: file} of every module of `packages` (packages or top-level modules)."""
    out = {}
    for name in packages:
        if (root / f"{name}.py").is_file():
            out[name] = root / f"{name}.py"
        for path in sorted((root / name).rglob("*.py")) if (root / name).is_dir() else ():
            parts = path.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _resolve(name: str, modules: set[str]) -> str | None:
    """The longest prefix of dotted `name` that is one of `modules`."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in modules:
            return ".".join(parts[:n])
    return None


def import_graph(files: dict[str, pathlib.Path]) -> Graph:
    """Which of `files`' modules each module imports, anywhere in its body."""
    modules = set(files)
    graph: Graph = {}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's own package upwards
                    package = module.split(".") if is_package else module.split(".")[:-1]
                    package = package[:len(package) - node.level + 1]
                    base = ".".join(package + ([base] if base else []))
                # `from pkg import sub` imports the submodule pkg.sub when there is one
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                hit = _resolve(target, modules)
                if hit is not None and hit != module:
                    edges.setdefault(hit, node.lineno)
        graph[module] = edges
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """The import cycles: every strongly connected set of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth is bounded by the number of modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def layer_violations(graph: Graph, allowed: dict[str, frozenset[str]]) -> list[str]:
    """One line per import of another package that the layer table does not allow (and per
    package the table does not list)."""
    problems = []
    for module, edges in sorted(graph.items()):
        package = module.split(".")[0]
        if package not in allowed:
            problems.append(f"{package} is not in the README's layer table")
            continue
        for target, line in sorted(edges.items()):
            other = target.split(".")[0]
            if other != package and other not in allowed[package]:
                problems.append(f"{module} (line {line}) imports {target}, but {package} may import "
                                f"only {sorted(allowed[package]) or 'nothing of ours'}")
    return sorted(set(problems))


def check(root: pathlib.Path, readme: str, packages: tuple[str, ...]) -> tuple[list[list[str]], list[str]]:
    """(cycles, layer violations) of the modules of `packages` under `root`."""
    files = module_files(root, packages)
    graph = import_graph(files)
    return cycles(graph), layer_violations(graph, parse_layers(readme))


def test_our_modules_import_without_cycles_and_along_the_readme_layers():
    files = module_files(ROOT, OURS)
    assert {"lopt", "estimators.pes", "meta_train", "monitoring", "experiments.optimism"} <= set(files)
    allowed = parse_layers((ROOT / "README.md").read_text())
    assert set(OURS) <= set(allowed), f"the README's layer table misses {sorted(set(OURS) - set(allowed))}"
    found_cycles, violations = check(ROOT, (ROOT / "README.md").read_text(), OURS)
    report = [f"import cycle: {' <-> '.join(c)}" for c in found_cycles] + violations
    assert not report, "imports against the README's layers (README.md, Layout):\n" + "\n".join(report)


def test_the_layer_table_keeps_the_core_rules():
    allowed = parse_layers((ROOT / "README.md").read_text())
    assert allowed["lopt"] == frozenset()
    assert not allowed["inner_tasks"] & {"lopt", "estimators"}
    assert allowed["estimators"] == {"lopt", "inner_tasks"}
    assert allowed["evaluation"] == {"lopt", "inner_tasks"}
    assert "configs" not in allowed["outer"] and "outer" in allowed["configs"]


def _write(root: pathlib.Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


SYNTHETIC_README = f"""
{LAYERS_START}
| package | imports only |
|---|---|
| `low` | – |
| `mid` | `low` |
| `top` | everything above |
{LAYERS_END}
"""


def test_the_checker_reports_a_cycle_and_an_upward_import(tmp_path):
    _write(tmp_path, {
        "low/__init__.py": "",
        "low/a.py": "from low import b\n",
        "low/b.py": "def f():\n    from . import c  # function-level, relative\n",
        "low/c.py": "import low.a\nimport numpy\n",
        "mid/__init__.py": "from low.a import x\n",
        "mid/up.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from top import main\n",
        "top.py": "import mid, low\n",
    })
    found_cycles, violations = check(tmp_path, SYNTHETIC_README, ("low", "mid", "top"))
    assert found_cycles == [["low.a", "low.b", "low.c"]]
    assert violations == ["mid.up (line 3) imports top, but mid may import only ['low']"]


def test_the_checker_accepts_a_clean_graph_and_refuses_a_bad_table(tmp_path):
    _write(tmp_path, {"low/__init__.py": "", "low/a.py": "import os\n", "mid/__init__.py": "from low import a\n",
                      "top.py": "from mid import *\nfrom low.a import y\n"})
    assert check(tmp_path, SYNTHETIC_README, ("low", "mid", "top")) == ([], [])
    unlisted = check(tmp_path, SYNTHETIC_README.replace("| `mid` | `low` |\n", ""), ("low", "mid", "top"))[1]
    assert "mid is not in the README's layer table" in unlisted
    upward_table = SYNTHETIC_README.replace("| `low` | – |", "| `low` | `top` |")
    try:
        parse_layers(upward_table)
    except ValueError as e:
        assert "only packages of earlier rows" in str(e)
    else:
        raise AssertionError("a table row naming a later row was accepted")
