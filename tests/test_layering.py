"""The import direction the architecture fixes: `train` may use `edge`, never the reverse, and neither package's
modules import each other in a circle at load time. Read from the source with `ast`, so a lazy import inside a
function counts for the direction (it would still pull TensorFlow onto a Pi) but not for load-time cycles."""

import ast
import itertools
from pathlib import Path

from tests.helpers import ROOT

PACKAGES = ("edge", "train")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, top_level_only: bool) -> set[str]:
    """Modules of this project that `path` imports, resolved to absolute names."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def sources() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def test_edge_never_imports_train_or_tensorflow_even_lazily():
    offenders = {}
    for name, path in sources().items():
        if not name.startswith("edge"):
            continue
        tree = ast.parse(path.read_text(), str(path))
        named = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        named |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
        bad = {m for m in named if m.split(".")[0] in {"train", "tensorflow", "keras", "tf_keras"}}
        if bad:
            offenders[name] = sorted(bad)
    assert not offenders, offenders


def test_no_module_imports_itself_back_at_load_time():
    modules = sources()
    graph = {
        name: {m for m in imports(path, top_level_only=True) if m in modules and m != name}
        for name, path in modules.items()
    }
    cycles = []
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    # A package's __init__ re-exporting its own submodules is not a cycle of meaning: drop package → child edges.
    real = [
        c for c in cycles if not all(b.startswith(a + ".") or a.startswith(b + ".") for a, b in itertools.pairwise(c))
    ]
    assert not real, real


def test_the_checks_above_see_the_imports_they_judge():
    """Guard against a vacuous pass: train does import edge, and the service imports its neighbours."""
    modules = sources()
    assert any(m.startswith("edge") for m in imports(modules["train.cli"], top_level_only=False))
    assert "edge.state" in imports(modules["edge.service"], top_level_only=True)
