"""No import circle anywhere in `src/divrec`: the module graph of every import (module level and
inside functions alike, read with `ast`) has no cycle.

A function-level import hides a circle from `import` time but not from the design: the two
modules still depend on each other (e.g. a sub-command importing helpers from the module that
registers it). Imports under `if TYPE_CHECKING:` never run and are left out. An edge goes to
the module an import names (`from divrec.a import b` names `divrec.a.b` when that is a
module, else the package `divrec.a`), not to the parent packages Python also initializes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import divrec

ROOT = Path(divrec.__file__).parent


def _module_name(path: Path) -> str:
    parts = ("divrec", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def _targets(module: str, path: Path, known: dict[str, Path]):
    """(imported divrec module, line) for every import statement of `module`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def nearest(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "divrec":
                    yield nearest(alias.name), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "divrec":
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                yield (full if full in known else nearest(source)), node.lineno


def import_graph() -> dict[str, dict[str, int]]:
    """Module → {imported module: first line}, among the modules of `src/divrec`."""
    known = _modules()
    graph: dict[str, dict[str, int]] = {m: {} for m in known}
    for module, path in known.items():
        for target, line in _targets(module, path, known):
            if target is not None and target != module:
                graph[module].setdefault(target, line)
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (a closed path of modules) per strongly connected component with a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(root: str) -> None:  # iterative Tarjan
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
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
                    components.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    cycles = []
    for component in components:
        members = set(component)
        start = component[0]
        # shortest path from start back to start inside the component (BFS)
        parents: dict[str, str] = {}
        frontier = [start]
        found = None
        while frontier and found is None:
            nxt = []
            for node in frontier:
                for child in sorted(graph[node]):
                    if child not in members:
                        continue
                    if child == start:
                        found = node
                        break
                    if child not in parents:
                        parents[child] = node
                        nxt.append(child)
                if found is not None:
                    break
            frontier = nxt
        path = [found]
        while path[-1] != start:
            path.append(parents[path[-1]])
        cycles.append([*reversed(path), start])
    return cycles


def _describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    steps = [f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:], strict=False)]
    return " → ".join([*steps, cycle[-1]])


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "d": 4}, "d": {}, "e": {"d": 5}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert _describe(["a", "b", "c", "a"], graph) == "a (line 1) → b (line 2) → c (line 3) → a"


def test_function_level_imports_are_edges():
    graph = import_graph()
    assert "divrec.cli._common" in graph["divrec.cli.main"]
    assert "divrec.pipeline.pipeline" in graph["divrec.pipeline.spec"]  # inside build()


def test_no_import_cycles():
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles in src/divrec:\n" + "\n".join(
        _describe(c, graph) for c in cycles
    )
