"""Imports run one way: cli → area packages → core, with no cycle (module-level imports, read with ast).

A function-level import of an xintu module hides a dependency from a reader (and from this test), so each
one says why on its own line or the comment line above it, and there are few of them.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "xintu"
# sandbox (fakes of WeChat, WeChat Pay, DashScope) and migrations (which pin the schema of their day) import
# what they need where they need it; they are not counted.
UNCOUNTED = ("xintu.sandbox", "xintu.migrations")
MAX_FUNCTION_LEVEL = 4


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _targets(node, module: str) -> list[str]:
    """The xintu modules an import statement loads by name (not the packages around them)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name == "xintu" or a.name.startswith("xintu.")]
    if node.level:   # relative: from the module's own package
        package = module.split(".") if _is_package(module) else module.split(".")[:-1]
        base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    if not (base == "xintu" or base.startswith("xintu.")):
        return []
    subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
    return subs if len(subs) == len(node.names) else [*subs, base]


def _type_checking(node) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(test)


def _imports(tree, module: str):
    """(module-level targets, [(line, statement) of function-level xintu imports])."""
    top, inner = set(), []

    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            if _type_checking(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                targets = _targets(child, module)
                if targets and in_function:
                    inner.append((child.lineno, ast.unparse(child)))
                elif targets:
                    top.update(targets)
            walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    walk(tree, False)
    return top, inner


def _graph():
    edges, inner = {}, {}
    for name, path in MODULES.items():
        top, lazy = _imports(ast.parse(path.read_text(encoding="utf-8")), name)
        edges[name] = {t for t in top if t in MODULES and t != name}
        inner[name] = lazy
    return edges, inner


EDGES, INNER = _graph()


def _unit(module: str) -> str:
    """An area package (xintu.member, xintu.wechat, …) or a top-level module (xintu.db, xintu.models, …)."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
    return found


def test_the_graph_is_read():
    """The reader finds what is known to be there (so an empty graph cannot pass the tests below)."""
    assert "xintu.models" in EDGES["xintu.member.credits"]
    assert "xintu.wechat.h5" in EDGES["xintu.member.events"]
    assert "xintu.member.refunds" in EDGES["xintu.member.orders"]   # `from xintu.member.refunds import …`
    assert "xintu.member.prices" in EDGES["xintu.member.orders"]    # `from xintu.member import prices`
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_cycle_between_modules():
    assert _cycles(EDGES) == []


def test_no_cycle_between_areas_and_top_level_modules():
    units: dict[str, set[str]] = {}
    for module, targets in EDGES.items():
        units.setdefault(_unit(module), set()).update(_unit(t) for t in targets if _unit(t) != _unit(module))
    assert _cycles(units) == []


@pytest.mark.parametrize("core", ["xintu.db", "xintu.models", "xintu.errors", "xintu.timeutil", "xintu.config",
                                  "xintu.auth", "xintu.budgets", "xintu.settings_store", "xintu.upstreams"])
def test_core_imports_no_area(core):
    areas = {_unit(m) for m in MODULES if _is_package(_unit(m)) and _unit(m) != "xintu"}
    assert not {_unit(t) for t in EDGES[core]} & areas


def test_wechat_knows_nothing_about_members():
    wechat = {m: t for m, t in EDGES.items() if _unit(m) == "xintu.wechat"}
    assert len(wechat) >= 8
    assert {m: sorted(t) for m, ts in wechat.items() if (t := {x for x in ts if _unit(x) == "xintu.member"})} == {}


def test_db_does_not_import_models():
    assert "xintu.models" not in EDGES["xintu.db"]
    assert not [s for _, s in INNER["xintu.db"] if "models" in s]


def _counted():
    return [(module, line, stmt) for module, lazy in INNER.items() for line, stmt in lazy
            if not module.startswith(UNCOUNTED)]


def test_function_level_imports_are_few():
    assert 0 < len(_counted()) <= MAX_FUNCTION_LEVEL, _counted()


def test_every_function_level_import_says_why():
    unexplained = []
    for module, line, stmt in _counted():
        lines = MODULES[module].read_text(encoding="utf-8").splitlines()
        here, above = lines[line - 1], lines[line - 2].strip() if line >= 2 else ""
        if "#" not in here and not above.startswith("#"):
            unexplained.append(f"{module}:{line}: {stmt}")
    assert unexplained == []
