"""The layers of DESIGN.md, checked on the source: every import statement of every module
(including those inside functions) is resolved and compared with what its layer may use."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "splatforge"
JOBS = ("train", "predict", "compress", "serve", "view", "render", "fit2d", "demo", "capture")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, imported name or None) for each import in the file, relative ones resolved."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out += [(node.lineno, module, alias.name) for alias in node.names]
    return out


MODULES = {_module_name(p): p for p in sorted((SRC / ROOT).rglob("*.py"))}


def _targets(module: str, name: str | None) -> str:
    """The splatforge module an import reaches: `from pkg import sub` reaches pkg.sub."""
    if name is not None and f"{module}.{name}" in MODULES:
        return f"{module}.{name}"
    return module


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _violations(allowed) -> list[str]:
    found = []
    for name, path in MODULES.items():
        for line, module, imported in _imports(path):
            target = _targets(module, imported)
            if target.split(".")[0] != ROOT or target == ROOT:
                continue
            if not allowed(name, target):
                found.append(f"{path.relative_to(SRC)}:{line} imports {target}")
    return sorted(set(found))


def _is_cli(module: str) -> bool:
    return module == f"{ROOT}.cli" or module.endswith("_cli") or module == f"{ROOT}._cli_util"


@pytest.mark.parametrize("low", ["core", "io"])
def test_core_and_io_import_nothing_above_them(low):
    def allowed(importer, target):
        if _layer(importer) != low:
            return True
        return _layer(target) not in JOBS and not _is_cli(target) and (low == "io" or _layer(target) != "io")

    assert _violations(allowed) == []


def test_raster_imports_only_core():
    def allowed(importer, target):
        return _layer(importer) != "raster" or _layer(target) in ("raster", "core", "errors", "_lazy")

    assert _violations(allowed) == []


def test_no_private_name_is_imported_from_another_package():
    """A name starting with one underscore (a module or an attribute) is used only inside the
    package that holds it and its sub-packages."""
    found = []
    for name, path in MODULES.items():
        importer_package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for line, module, imported in _imports(path):
            if module.split(".")[0] != ROOT:
                continue
            parts = module.split(".") + ([imported] if imported else [])
            for i, part in enumerate(parts):
                if part.startswith("_") and not part.startswith("__"):
                    owner = ".".join(parts[:i])
                    if not (importer_package == owner or importer_package.startswith(owner + ".")):
                        found.append(f"{path.relative_to(SRC)}:{line} imports {'.'.join(parts)}")
                    break
    assert sorted(set(found)) == []


def test_the_scan_sees_imports():
    """The checks above would pass on an empty scan; make sure they look at real imports."""
    imports = {(m, n) for path in MODULES.values() for _, m, n in _imports(path)}
    assert ("splatforge.core.gaussians", "Gaussians") in imports
    assert any(_layer(_targets(m, n)) == "compress" for m, n in imports if m.startswith(ROOT))
    assert len(MODULES) > 100
