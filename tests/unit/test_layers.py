"""The import rules of docs/architecture.md, checked on the source (this test can fail)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "trackerfs"


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules() -> list[tuple[str, set[str]]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found.append((path.relative_to(PACKAGE.parent).as_posix(), imports_of(path)))
    return found


def uses(imported: set[str], prefix: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for name in imported)


RULES = [
    # (modules matching, may not import, unless module under)
    ("pyfuse3 only in the FUSE layer", "pyfuse3", ("trackerfs/fuse/",)),
    ("httpx only in backends", "httpx", ("trackerfs/backends/",)),
    ("only the CLI starts the emulator", "trackerfs.emulator", ("trackerfs/emulator/", "trackerfs/cli.py")),
    (
        "the FUSE layer is the only user of pyfuse3-facing code",
        "trackerfs.fuse",
        ("trackerfs/fuse/", "trackerfs/cli.py"),
    ),
]


@pytest.mark.parametrize(("rule", "banned", "allowed"), RULES, ids=[r[0] for r in RULES])
def test_import_rule(rule: str, banned: str, allowed: tuple[str, ...]) -> None:
    offenders = [
        name for name, imported in modules() if uses(imported, banned) and not name.startswith(allowed)
    ]
    assert offenders == [], f"{rule}: {offenders}"


def test_emulator_imports_nothing_of_the_client_side() -> None:
    for name, imported in modules():
        if name.startswith("trackerfs/emulator/"):
            client = {
                i for i in imported if i.startswith("trackerfs") and not i.startswith("trackerfs.emulator")
            }
            assert client <= {"trackerfs"}, f"{name} imports {client}"


def test_core_knows_no_backend_but_the_interface() -> None:
    for name, imported in modules():
        if name.startswith("trackerfs/core/"):
            backends = {i for i in imported if uses({i}, "trackerfs.backends")}
            assert backends <= {"trackerfs.backends.base"}, f"{name} imports {backends}"
            assert not uses(imported, "trackerfs.fuse")


def test_backends_know_nothing_above_them() -> None:
    for name, imported in modules():
        if name.startswith("trackerfs/backends/"):
            assert not uses(imported, "trackerfs.core"), name
            assert not uses(imported, "trackerfs.fuse"), name
