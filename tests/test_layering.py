"""The layout is the architecture: data/models <- training <- api/cli/lab, and app/evaluation read runs.

The import graph is read from the source (every ``import``, including those inside functions, so a lazy import
cannot hide a dependency; ``if TYPE_CHECKING:`` blocks are skipped), then closed transitively: a module may not
reach a forbidden layer through another module either. Also here: no function in src/ is over 60 lines.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

TOP = ("mnistlab.cli", "mnistlab.api", "mnistlab.lab", "mnistlab.app")
# module prefix -> layers it must never import, directly or through others
FORBIDDEN = {
    "mnistlab.errors": ("mnistlab.",),
    "mnistlab.testhooks": ("mnistlab.",),
    "mnistlab.fileio": ("mnistlab.data", "mnistlab.models", "mnistlab.training", "mnistlab.runs", *TOP),
    "mnistlab.data": ("mnistlab.models", "mnistlab.training", "mnistlab.runs", "mnistlab.inference", *TOP),
    "mnistlab.models": ("mnistlab.data", "mnistlab.training", "mnistlab.runs", "mnistlab.inference", *TOP),
    "mnistlab.inference": (
        "mnistlab.training",
        "mnistlab.runs",
        "mnistlab.evaluation",
        "mnistlab.recipes",
        *TOP,
    ),
    "mnistlab.runs": ("mnistlab.training", "mnistlab.recipes", *TOP),
    "mnistlab.runcheck": ("mnistlab.training", "mnistlab.runs", "mnistlab.recipes", *TOP),
    "mnistlab.evaluation": ("mnistlab.training", *TOP),
    "mnistlab.app": ("mnistlab.training", "mnistlab.cli", "mnistlab.api", "mnistlab.lab"),
    "mnistlab.training": TOP,
    "mnistlab.lab": ("mnistlab.cli", "mnistlab.api", "mnistlab.app"),
    "mnistlab.api": ("mnistlab.cli", "mnistlab.lab", "mnistlab.app"),
}
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


def _skip_type_checking(tree: ast.AST) -> list[ast.AST]:
    """All nodes, minus the bodies of ``if TYPE_CHECKING:`` blocks (annotations only, never run)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return [n for n in ast.walk(tree) if id(n) not in skipped]


def _with_parents(name: str) -> set[str]:
    """Importing a.b.c runs a/__init__ and a/b/__init__ too."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(MODULES)


@cache
def direct_imports(module: str) -> frozenset[str]:
    out: set[str] = set()
    for node in _skip_type_checking(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out |= _with_parents(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out |= _with_parents(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names} & set(MODULES)
    return frozenset(out - {module})


@cache
def reachable(module: str) -> frozenset[str]:
    seen, todo = set(), [module]
    while todo:
        for dep in direct_imports(todo.pop()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return frozenset(seen)


def _under(name: str, prefix: str) -> bool:
    return name == prefix.rstrip(".") or name.startswith(prefix if prefix.endswith(".") else prefix + ".")


@pytest.mark.parametrize("layer", list(FORBIDDEN))
def test_layer_does_not_reach_the_layers_above_it(layer):
    bad = sorted(
        f"{module} -> {dep}"
        for module in MODULES
        if _under(module, layer)
        for dep in reachable(module)
        if any(_under(dep, f) for f in FORBIDDEN[layer])
    )
    assert not bad, "\n".join(bad)


def test_the_checker_sees_lazy_imports():
    """report.py imports the runs module inside a function: the graph must still have the edge."""
    assert "mnistlab.runs" in direct_imports("mnistlab.evaluation.report")
    assert "mnistlab.training.fit" in reachable("mnistlab.api")


def test_config_and_fileio_load_without_torch():
    """The CLI reads the config's declarations; a base module that dragged torch in would slow every command."""
    code = "import sys, mnistlab.config, mnistlab.fileio; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_function_in_src_is_over_60_lines():
    long = [
        f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in MODULES.values()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, "\n".join(long)


def test_scratch_engine_imports_only_numpy():
    """mnistlab.scratch is the NumPy-only teaching engine: no torch, and nothing else of mnistlab."""
    code = (
        "import sys, mnistlab.scratch\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'torch'"
        " or (m.startswith('mnistlab.') and not m.startswith('mnistlab.scratch')))\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"mnistlab.scratch imports {out.stdout.strip()}"
