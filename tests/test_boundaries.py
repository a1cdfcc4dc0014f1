"""The pure packages stay pure: protocols/, control/ and simulators/ never import Home Assistant."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "custom_components" / "sma_victron_bridge"
PURE = ("protocols", "control", "simulators")


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                modules.add(node.module)
            elif node.level >= 2:
                # `from ..x import y` inside a pure package reaches the HA glue.
                modules.add("." * node.level + (node.module or ""))
    return modules


@pytest.mark.parametrize("package", PURE)
def test_pure_package_does_not_import_homeassistant(package: str) -> None:
    files = sorted((PACKAGE / package).rglob("*.py"))
    assert files, f"{package} has no modules"
    offenders: list[str] = []
    for path in files:
        for module in _imported_modules(path):
            if module.split(".")[0] == "homeassistant":
                offenders.append(f"{path.name}: {module}")
            pure_sibling = module.startswith(("..protocols", "..control", "..simulators"))
            if module.startswith("..") and not pure_sibling:
                offenders.append(f"{path.name}: {module}")
    assert offenders == []


def test_checker_catches_an_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import homeassistant.core\nfrom ..const import DOMAIN\n")
    assert _imported_modules(sample) == {"homeassistant.core", "..const"}


def test_pure_modules_import_without_home_assistant() -> None:
    """The library part must load on a machine without Home Assistant (benchmarks, other tools)."""
    import subprocess
    import sys

    modules = sorted(
        f"custom_components.sma_victron_bridge.{package}.{path.stem}"
        for package in PURE
        for path in (PACKAGE / package).glob("*.py")
        if path.stem != "__init__"
    )
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print('homeassistant' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PACKAGE.parent.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "False"
