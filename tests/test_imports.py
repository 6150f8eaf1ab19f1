"""The smart package imports one way: no module reaches itself through other smart modules' imports.

Every import counts, module-level and inside functions alike (a function-level import is still a dependency, and a
cycle through one is a circle the code hides rather than breaks): `import smart.x`, `from smart.x import y` (y a
submodule of smart.x counts as smart.x.y), `from smart import x`, and relative imports resolved against the module's
package. An import of a package counts as its `__init__`.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "smart"


def module_names() -> dict[str, Path]:
    """Dotted name -> file for every module under smart/ (a package as its dotted name, from its __init__.py)."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The smart modules that module `name` (at `path`) imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        # the deepest smart module the dotted target names (`smart.a.b.c` with c an attribute -> `smart.a.b`)
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "smart" or alias.name.startswith("smart."):
                    add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source != "smart" and not source.startswith("smart."):
                continue
            for alias in node.names:
                add(f"{source}.{alias.name}")  # a submodule if it is one, else falls back to `source`
    return found


def graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imports(name, path, modules) for name, path in modules.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search, modules in sorted order for a stable answer)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_cycle_finder():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_import_resolution(tmp_path):
    pkg = tmp_path / "smart"
    (pkg / "sub").mkdir(parents=True)
    source = ("import os\nimport smart.io\nfrom smart import defaults\nfrom smart.sub import mod as m\n"
              "from smart.sub.other import thing\nfrom . import sibling\nfrom ..io import atomic_write\n"
              "def f():\n    from smart.defaults import x\n")
    (pkg / "sub" / "mod.py").write_text(source)
    modules = {name: pkg for name in ("smart", "smart.io", "smart.defaults", "smart.sub", "smart.sub.mod",
                                      "smart.sub.other", "smart.sub.sibling")}
    assert imports("smart.sub.mod", pkg / "sub" / "mod.py", modules) == {
        "smart.io", "smart.defaults", "smart.sub.other", "smart.sub.sibling"}


def test_smart_imports_have_no_cycle():
    edges = graph()
    assert len(edges) > 20, f"found only {len(edges)} modules under {PACKAGE}"
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle among smart modules: " + " -> ".join(cycle)
