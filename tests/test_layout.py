"""The layers of docs/architecture.md hold: a package under provisioning/ imports only from the
packages above it in the table, and the shared top-level modules import no layer but the pure
conversion core."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "provisioning"
LAYERS = ("convert", "jml", "graph", "runs", "changes", "reconcile", "functions")
ENTRY_POINTS = {"cli.py", "__main__.py"}


def imported_layers(path: Path) -> set[str]:
    """The provisioning sub-packages ``path`` imports from (relative or absolute imports)."""
    here = list(path.relative_to(PACKAGE).parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = here[: len(here) - (node.level - 1)] if node.level > 1 else list(here)
            parts = base + (node.module.split(".") if node.module else [])
        elif node.module and node.module.startswith("provisioning."):
            parts = node.module.split(".")[1:]
        else:
            continue
        if parts and parts[0] in LAYERS:
            found.add(parts[0])
    return found


def test_every_import_goes_to_a_lower_layer() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        if len(parts) == 1:
            if path.name in ENTRY_POINTS:
                continue
            allowed: set[str] = {"convert"}  # shared modules: only the pure core
        else:
            allowed = set(LAYERS[: LAYERS.index(parts[0]) + 1])
        upward += [
            f"{path.relative_to(PACKAGE)} -> {layer}" for layer in imported_layers(path) - allowed
        ]
    assert upward == []


def test_the_convert_layer_does_no_io() -> None:
    io_modules = {"azure", "httpx", "msgraph", "kiota_abstractions", "socket", "requests"}
    for path in (PACKAGE / "convert").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and not node.level
        }
        assert not names & io_modules, (path.name, names & io_modules)


def test_function_app_only_registers_blueprints() -> None:
    tree = ast.parse((PACKAGE.parent / "function_app.py").read_text(encoding="utf-8"))
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {m for m in modules if m and m.startswith("provisioning")} <= {
        f"provisioning.functions.{name}"
        for name in ("blob_trigger", "http_trigger", "reconcile_trigger")
    }
    assert not [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
