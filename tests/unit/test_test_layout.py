"""The test suite's layout (tests/conftest.py's docstring): one conftest and one support package per tier.

A test module takes fixtures by name (conftest.py) and imports helpers only from
a support package, so no test module imports another: a fixture imported from a
test module is redefined by every test that takes it (pyflakes F811), and a
helper kept in a test module cannot be found by the next person who needs it.
Module basenames stay unique across tests/ as well, so a file is found by name.
"""
from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
TIERS = ("unit", "media", "integration", "security")
SUPPORT = tuple(f"tests.{tier}.support" for tier in TIERS)


def _modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> list[tuple[int, str, int]]:
    """(line, module, level) of every import statement of ``path``; ``from a import b`` counts as
    ``a`` and, when ``a`` is a package of tests/, as ``a.b`` too (b may be a module)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if not node.level and module.startswith("tests") and not _within_support(module):
                found += [(node.lineno, f"{module}.{alias.name}", 0) for alias in node.names]
            else:
                found.append((node.lineno, module, node.level))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, 0) for alias in node.names]
    return found


def _within_support(module: str) -> bool:
    return any(module == s or module.startswith(s + ".") for s in SUPPORT)


def test_every_test_module_has_its_own_basename():
    names = Counter(p.name for p in _modules() if p.name not in ("conftest.py", "__init__.py"))
    assert [n for n, c in names.items() if c > 1] == []


def test_every_tier_has_a_conftest_and_a_support_package():
    missing = [f"{tier}/{part}" for tier in TIERS for part in ("__init__.py", "conftest.py", "support/__init__.py")
               if not (TESTS / tier / part).is_file()]
    assert missing == []


def test_helpers_come_from_support_packages_only():
    """No module imports a test module or a conftest, nor a sibling by a bare or relative name."""
    local = {p.stem for p in _modules()} - {"__init__"}
    bad = []
    for path in _modules():
        for line, module, level in _imports(path):
            where = f"{path.relative_to(TESTS.parent)}:{line}: {'.' * level}{module}"
            if level:
                bad.append(f"{where} (relative: import tests.<tier>.support...)")
            elif module.split(".")[0] in local:
                bad.append(f"{where} (a bare name of a module under tests/)")
            elif (module == "tests" or module.startswith("tests.")) and not _within_support(module):
                bad.append(f"{where} (not a support package)")
    assert bad == []


def test_support_packages_define_no_fixtures():
    """Fixtures live in conftest.py files, where pytest finds them without an import."""
    bad = []
    for tier in TIERS:
        for path in sorted((TESTS / tier / "support").rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef) and any("fixture" in ast.unparse(d) for d in node.decorator_list):
                    bad.append(f"{path.relative_to(TESTS.parent)}:{node.lineno}: {node.name}")
    assert bad == []
