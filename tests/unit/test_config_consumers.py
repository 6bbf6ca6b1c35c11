"""Each component receives the part of the configuration it uses (issue 12 pt 4), and keeps doing so.

Only the composition roots (scripts/config_consumers.py's COMPOSITION_ROOTS: the CLI, the stack,
the worker's and the API's assembly, ...) read the whole ``Config`` and hand each component its
sections or a small settings dataclass. A new function elsewhere with a ``Config`` parameter would
quietly undo that habit, so the count outside the roots must stay at zero.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "config_consumers.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("config_consumers", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_function_outside_the_composition_roots_takes_the_whole_config():
    script = _script()
    found = script.whole_config_functions()
    assert any(script.is_composition_root(module) for module, _, _ in found)   # the scan does see Config params
    outside = [f"{module}:{line}: {name}" for module, line, name in found if not script.is_composition_root(module)]
    assert outside == [], "take the sections you read (or a settings dataclass), not the whole Config"
