"""The package's shape: imports flow one way (no cycles, function-local imports counted)
and no module reaches into another object's private members."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.packaging

PACKAGE = REPO / "fer_ros"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING")


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The fer_ros modules ``name`` imports anywhere (functions included), except under
    ``if TYPE_CHECKING``: a ``from a.b import c`` names a.b.c when that is a module."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if _type_checking_only(node)
               for n in ast.walk(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_anywhere() -> None:
    graph = import_graph()
    assert len(graph) > 80  # the walk found the package
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    """The check itself: a function-local import back is a cycle."""
    graph = import_graph()
    graph["fer_ros.pipeline.types"] = graph["fer_ros.pipeline.types"] | {
        "fer_ros.pipeline.engine.camera"}
    assert any("fer_ros.pipeline.types" in c for c in cycles(graph))
    source = "def f():\n    from fer_ros.pipeline.engine import camera\n"
    known = set(modules())
    path = REPO / "build" / "layout_probe.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(source)
    assert imports_of("probe", path, known) == {"fer_ros.pipeline.engine.camera"}


def test_stages_never_import_the_engine_and_runtime_never_imports_setup() -> None:
    """The engine calls the stages, never the other way; weight conversion (fer_ros.assets'
    converters) is the setup step's alone; the library never imports rclpy, the nodes or
    the tools; no tool imports the command line."""
    graph = import_graph()
    stages = ("detection", "recognition", "emotion", "tracking")
    for name, targets in graph.items():
        if any(name.startswith(f"fer_ros.pipeline.{s}") for s in stages):
            assert not {t for t in targets if t.startswith("fer_ros.pipeline.engine")}, name
        if name.startswith("fer_ros.pipeline"):
            setup = {t for t in targets if t.startswith("fer_ros.assets.")}
            assert not setup, f"{name} imports {setup}"
            assert not {t for t in targets if t.startswith(
                ("fer_ros.ros", "fer_ros.nodes", "fer_ros.cli", "fer_ros.bench"))}, name
        if not name.startswith("fer_ros.cli"):  # the command line is a top: nothing uses it
            assert not {t for t in targets if t.startswith("fer_ros.cli")}, name
    for path in (PACKAGE / "pipeline").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {m for m in names if m.split(".")[0] == "rclpy"}, path


def private_uses(path: Path) -> list[str]:
    """``x._name`` where x is not self, cls or super() and ``_name`` is not a member this
    module defines itself: a reach into another module's private members."""
    tree = ast.parse(path.read_text())
    own = {n.name for n in ast.walk(tree)
           if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    own |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
            and isinstance(n.ctx, ast.Store) and isinstance(n.value, ast.Name)
            and n.value.id == "self"}
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__") and node.attr not in own):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and getattr(owner.func, "id", "") == "super":
                continue
            found.append(f"{path.relative_to(REPO)}:{node.lineno}: .{node.attr}")
    return found


def test_the_private_check_finds_a_reach() -> None:
    path = REPO / "build" / "layout_probe.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text("def f(camera):\n    camera._plan()\n")
    assert private_uses(path) == ["build/layout_probe.py:2: ._plan"]


def test_no_module_uses_another_objects_private_members() -> None:
    found = [use for path in sorted(PACKAGE.rglob("*.py"))
             for use in private_uses(path)]
    assert found == []


def test_the_tests_run_the_code_in_the_working_tree() -> None:
    """The suite imports the installed fer_ros (with its generated messages); `make test`
    installs the working tree first. Every source file must be there as it is here, and
    nothing else: an edit without a reinstall, or a module left behind by a move, fails
    here instead of silently testing old code."""
    import fer_ros

    installed = Path(fer_ros.__file__).resolve().parent
    assert installed != PACKAGE.resolve(), "the tests import the source tree, not the install"
    source = {p.relative_to(PACKAGE) for p in PACKAGE.rglob("*.py")}
    copies = {p.relative_to(installed) for p in installed.rglob("*.py")
              if p.relative_to(installed).parts[0] not in ("msg", "srv")}
    assert copies == source
    stale = [str(rel) for rel in sorted(source)
             if (installed / rel).read_bytes() != (PACKAGE / rel).read_bytes()]
    assert stale == [], "installed copies differ from the working tree: run `make setup`"
