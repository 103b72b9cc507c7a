"""The layered house: no import cycle between files (function-level imports included), the import-linter contract
of pyproject.toml holds, and an upward import added to a copy of the package breaks it."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "distillrl"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def module_files(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package."""
    modules = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that a file imports anywhere (module level or inside a function), each `from a import
    b` resolved to module a.b when that is a module, else to a."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            targets = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and target != "distillrl":
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_file_imports_itself_back_even_through_function_level_imports():
    modules = module_files(PACKAGE)
    graph = {name: imported_modules(name, path, modules) for name, path in modules.items()}
    assert len(graph) > 100 and sum(map(len, graph.values())) > 300  # the whole package was read
    assert cycles(graph) == []
    planted = {**graph, "distillrl.core.errors": graph["distillrl.core.errors"] | {"distillrl.run.trainer"}}
    assert any("distillrl.core.errors" in cycle for cycle in cycles(planted))  # the check sees a cycle


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300,
                          env={"PATH": str(LINT_IMPORTS.parent), "PYTHONPATH": str(root / "src")})  # fmt: skip


def test_the_layers_contract_holds():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Contracts: 3 kept, 0 broken." in done.stdout


def test_an_upward_import_breaks_the_layers_contract(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "src" / "distillrl", ignore=shutil.ignore_patterns("checkpoints", "*.zip"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    errors = tmp_path / "src/distillrl/core/errors.py"
    errors.write_text(errors.read_text() + "\nfrom distillrl.run import trainer  # the foundation naming the loop\n")
    done = lint_imports(tmp_path)
    assert done.returncode == 1, done.stdout[-3000:]
    assert "Layers: each folder imports only the layers below it BROKEN" in done.stdout
    assert "distillrl.core is not allowed to import distillrl.run" in done.stdout
    assert "distillrl.core.errors -> distillrl.run.trainer" in done.stdout
