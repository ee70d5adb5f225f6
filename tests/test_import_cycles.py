"""No import cycle in the project's packages, counting imports inside functions and under TYPE_CHECKING.

Dependencies point one way: commands -> library subpackages -> shared AWS access, errors and records. A cycle is
reported with every module on it, so a new one names what to move.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"mlinfra": ROOT / "cli", "mlinfra_infra": ROOT / "infra", "mlinfra_drift": ROOT / "drift"}


def modules(package: str, folder: Path) -> dict[str, Path]:
    found = {}
    for path in sorted(folder.rglob("*.py")):
        parts = [package, *path.relative_to(folder).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph(known: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its body (a package counts as its __init__)."""
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            candidates: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                candidates = [f"{module}.{alias.name}" for alias in node.names] + [module]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            for candidate in candidates:
                target = candidate
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            advanced = False
            for target in edges:
                if target not in index:
                    index[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph.get(target, ())))))
                    advanced = True
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_counts_imports_inside_functions(tmp_path: Path) -> None:
    (tmp_path / "one.py").write_text("def f():\n    from pkg import two\n")
    (tmp_path / "two.py").write_text("from pkg.one import f\n")
    graph = import_graph({"pkg.one": tmp_path / "one.py", "pkg.two": tmp_path / "two.py"})
    assert cycles(graph) == [["pkg.one", "pkg.two"]]


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_cycle(package: str) -> None:
    known: dict[str, Path] = {}
    for name, folder in PACKAGES.items():
        known.update(modules(name, folder))
    graph = import_graph(known)
    mine = [c for c in cycles(graph) if any(m == package or m.startswith(package + ".") for m in c)]
    assert mine == [], "import cycles (move what both sides need below them): " + "; ".join(
        " <-> ".join(c) for c in mine
    )


def test_no_module_over_600_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for folder in PACKAGES.values()
        for path in folder.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 600
    }
    assert long == {}


def test_cli_top_level_holds_the_click_layer_and_shared_access_only() -> None:
    top = sorted(p.name for p in (ROOT / "cli").glob("*.py"))
    assert len(top) <= 12, top


def test_the_cli_subpackages_depend_one_way() -> None:
    """Subpackage to subpackage too: e.g. registry/ may use stacks/ and models/, never the other way round."""
    known = modules("mlinfra", PACKAGES["mlinfra"])
    graph = import_graph(known)

    def package(module: str) -> str:
        parts = module.split(".")
        return parts[1] if len(parts) > 2 else module  # top-level modules stand alone

    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        packages.setdefault(package(module), set()).update(package(t) for t in targets if package(t) != package(module))
    assert cycles(packages) == []
    assert "registry" in packages["serving"] and "serving" not in packages.get("registry", set())
