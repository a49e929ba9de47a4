"""The house rules a newcomer relies on: rooms that do not reach into each other, no import cycles
(lazy imports and the store registry's included), no module over 400 lines, every room says what it holds."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from dashboard.server.stores.registry import BACKENDS

from .support import ROOT

PACKAGE = ROOT / "dashboard"
MAX_LINES = 400

# room -> rooms it must never import
FORBIDDEN = {
    "dashboard.server": ("dashboard.ui", "dashboard.client", "dashboard.demo", "dashboard.app"),
    "dashboard.ui": ("dashboard.server", "dashboard.demo"),
    "dashboard.client": ("dashboard.server", "dashboard.ui", "dashboard.demo", "dashboard.app"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str, path: Path) -> set[str]:
    """Every dashboard module ``name`` imports, at the top or inside a function."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # ``from pkg import mod`` imports the module pkg.mod when there is one
            targets = [f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in MODULES else origin for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in MODULES)
    return found


GRAPH = {name: imported_modules(name, path) for name, path in MODULES.items()}
for target in BACKENDS.values():  # the registry imports each backend lazily, by name
    GRAPH["dashboard.server.stores.registry"].add(target.split(":")[0])


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_rooms_do_not_reach_into_each_other(room):
    breaches = [f"{name} imports {target}" for name, targets in GRAPH.items() if name.startswith(room)
                for target in targets if target.startswith(FORBIDDEN[room])]
    assert breaches == []


def test_there_is_no_import_cycle():
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            raise AssertionError("import cycle: " + " -> ".join(visiting[visiting.index(name):] + [name]))
        visiting.append(name)
        for target in sorted(GRAPH[name]):
            visit(target)
        visiting.pop()
        done.add(name)

    for name in GRAPH:
        visit(name)


def test_no_module_is_over_400_lines():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_every_room_says_what_it_holds():
    silent = [name for name, path in MODULES.items()
              if path.name == "__init__.py" and not ast.get_docstring(ast.parse(path.read_text()))]
    assert silent == []


def test_the_client_exports_only_what_its_all_names():
    import dashboard.client as client

    public = {name for name in vars(client) if not name.startswith("_")}
    assert public == set(client.__all__)
