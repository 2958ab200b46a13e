"""The house's rules, read from the source with the standard library's ast: the package root holds only entry
modules, and no module imports itself back through others, at module level or inside a function. Imports under
`if TYPE_CHECKING:` never run (PEP 484: they name types for annotations) and are not counted."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edgeprune", "deploy", "jetson")
ENTRY_MODULES = {"__init__.py", "checkpoint.py", "export.py"}  # what a user imports first; stages live in packages


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    return {module_name(p, root): p for pkg in packages for p in (root / pkg).rglob("*.py")}


def import_graph(known: dict[str, Path]) -> dict[str, set[str]]:
    return {name: imported(name, path, known) for name, path in known.items()}


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every module of ours that `path` imports anywhere (module level, functions, conditionals), by the deepest
    name that is a module: `from .prune import plan` is edgeprune.prune.plan, `from .prune import Plan` is
    edgeprune.prune (its __init__)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # `import a.b.c` of a module we have: its deepest known prefix
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _runtime_nodes(tree: ast.AST):
    """Every node of `tree` except the bodies of `if TYPE_CHECKING:` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_itself_back():
    assert cycles(import_graph(modules())) == []


def test_the_checker_finds_a_cycle_hidden_inside_a_function(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .b import B\n")
    (pkg / "a.py").write_text("def f():\n    from .sub import B\n    return B\n")
    (pkg / "sub" / "b.py").write_text("class B:\n    pass\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    assert cycles(import_graph(modules(tmp_path, ("pkg",)))) == []
    (pkg / "sub" / "b.py").write_text("import os\n\n\nclass B:\n    def g(self):\n        from ..a import f\n")
    assert cycles(import_graph(modules(tmp_path, ("pkg",)))) == [["pkg.a", "pkg.sub", "pkg.sub.b"]]
    (pkg / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from ..a import f\n")
    assert cycles(import_graph(modules(tmp_path, ("pkg",)))) == []  # an annotation's import never runs


def defined_names(path: Path) -> set[str]:
    """The names a module binds at its top level: definitions, assignments, imports."""
    names = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        for n in [node, *(node.body + node.orelse if isinstance(node, (ast.If, ast.Try)) else [])]:
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(n.name)
            elif isinstance(n, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in n.names)
            elif isinstance(n, (ast.Assign, ast.AnnAssign)):
                targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                names.update(t.id for t in targets if isinstance(t, ast.Name))
                names.update(e.id for t in targets if isinstance(t, ast.Tuple) for e in t.elts
                             if isinstance(e, ast.Name))
    return names


def test_every_import_of_our_modules_names_something_that_exists():
    """A module that moved must not be imported by its old name anywhere (tests and benchmarks included): an
    editable install of an older checkout would otherwise answer for it and hide the mistake."""
    known = modules()
    own = {path: name for name, path in known.items()}
    files = [*known.values(), *(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]
    wrong = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level and path in own:  # relative: from the importing module's package
                    parts = (own[path] if path.name == "__init__.py" else own[path].rpartition(".")[0]).split(".")
                    module = ".".join(parts[:len(parts) - node.level + 1] + ([module] if module else []))
                if module.split(".")[0] not in PACKAGES:
                    continue
                if module not in known:
                    wrong.append(f"{path.relative_to(ROOT)}: {module}")
                    continue
                names = defined_names(known[module])
                wrong += [f"{path.relative_to(ROOT)}: {module}.{a.name}" for a in node.names
                          if a.name != "*" and a.name not in names and f"{module}.{a.name}" not in known]
            elif isinstance(node, ast.Import):
                wrong += [f"{path.relative_to(ROOT)}: {a.name}" for a in node.names
                          if a.name.split(".")[0] in PACKAGES and a.name not in known]
    assert wrong == []


def test_the_package_root_holds_only_entry_modules():
    loose = sorted(p.name for p in (ROOT / "edgeprune").glob("*.py") if p.name not in ENTRY_MODULES)
    assert loose == [], f"put these in the package of their stage: {loose}"


def test_the_command_line_imports_no_torch_until_a_verb_runs():
    """`edgeprune --help` stays instant: every verb imports its stage (and torch, optuna) when it runs."""
    import subprocess
    import sys

    code = "import sys, edgeprune.cli; print(sorted(m for m in ('torch', 'optuna') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
