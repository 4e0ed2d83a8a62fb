"""The import graph of the library, read from the source with `ast` (nothing is imported): no circle among the
modules of vithybrid/ and visualization/, the generic base/ layer knows no concrete model or format, and no import
hides inside a function to dodge a circle (those that remain are for optional extras, named below)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("vithybrid", "visualization")
# Imports of our own modules inside a function, each for an optional extra that the module imports at its top.
OPTIONAL = {
    ("vithybrid", "vithybrid.integrations.transformers"): "transformers",
    ("vithybrid.analyze.__main__", "vithybrid.analyze.ray_backend"): "ray",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(name: str, path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    """Our modules that `name` imports when it is imported (its top level, class bodies, if/try blocks at the
    top; not `if TYPE_CHECKING:`), and those it imports inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top, inside = set(), set()

    def targets(node: ast.Import | ast.ImportFrom) -> set[str]:
        if isinstance(node, ast.Import):
            return {alias.name for alias in node.names}
        base = package
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        base = ".".join(filter(None, [base if node.level else "", node.module or ""]))
        # `from package import module` imports the module; `from module import name` the module
        return {f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names}

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and is_type_checking(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found = {t for t in targets(child) if t in known}
                (inside if in_function else top).update(found)
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return top - {name}, inside - {name}


def graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    found = modules()
    edges = {name: imports(name, path, set(found)) for name, path in found.items()}
    return {name: top for name, (top, _) in edges.items()}, {name: inside for name, (_, inside) in edges.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return groups


def test_the_checker_finds_a_circle_and_a_relative_import(tmp_path):
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    edges, _ = graph()
    assert "vithybrid.base.configuration" in edges["vithybrid.model.config"]  # from ..base.configuration import


def test_no_import_circle():
    edges, inside = graph()
    assert cycles(edges) == []
    # imports inside functions count too: they run, only later
    assert cycles({name: edges[name] | inside[name] for name in edges}) == []


def test_no_import_inside_a_function_but_for_optional_extras():
    _, inside = graph()
    hidden = {(name, target) for name, targets in inside.items() for target in targets}
    assert hidden == set(OPTIONAL)


def test_base_knows_no_concrete_model_or_format():
    edges, inside = graph()
    for name in edges:
        if name.startswith("vithybrid.base"):
            outside = {t for t in edges[name] | inside[name] if not t.startswith("vithybrid.base")}
            assert not outside, f"{name} imports {sorted(outside)}"


def test_visualization_does_not_import_the_library():
    edges, inside = graph()
    for name in edges:
        if name.startswith("visualization"):
            assert not {t for t in edges[name] | inside[name] if t.startswith("vithybrid")}, name
