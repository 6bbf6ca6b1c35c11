#!/usr/bin/env python3
"""Count the functions under src/framelog that take the whole `Config` (issue 12 pt 4).

Why: "each component receives the part of the configuration it uses" is measured, not
asserted: a function with a parameter annotated `Config` (also `Config | None`,
`"Config"`, `config.Config`) receives the whole file. `--list` names them, grouped by
module, so the biggest remaining groups are visible.

The composition roots are meant to take it: they read the whole file and hand each
component its part (COMPOSITION_ROOTS). Everywhere else the count must be zero
(tests/unit/test_config_consumers.py).
"""

from __future__ import annotations

import argparse
import ast
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src" / "framelog"

# Modules (or folders, ending in /) that compose components from the whole configuration.
COMPOSITION_ROOTS: tuple[str, ...] = (
    "cli/",                  # command handlers: parse arguments and the file, call components
    "demo/",                 # the end-to-end demo drives every part of the stack
    "stack/",                # the local process manager starts and configures every component
    "pipeline/worker.py",    # builds the Faust app and hands each agent its sections
    "api/app.py",            # the API's lifespan ...
    "api/services.py",       # ... builds the services object from the file
    "ops/faults/",           # the fault suite runs and checks the whole stack
    "ops/provision.py",      # topics, bucket and ACLs of every component
    "ops/healthcheck.py",    # checks every component a service depends on
)


def is_composition_root(module: str) -> bool:
    """True if ``module`` (a path relative to src/framelog) is a composition root."""
    return any(module.startswith(r) if r.endswith("/") else module == r for r in COMPOSITION_ROOTS)


def _names_config(node: ast.expr | None) -> bool:
    """True if an annotation is `Config`, `x.Config`, `"Config"` or a union holding one."""
    if node is None:
        return False
    if isinstance(node, ast.Name):
        return node.id == "Config"
    if isinstance(node, ast.Attribute):
        return node.attr == "Config"
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            return _names_config(ast.parse(node.value, mode="eval").body)
        except SyntaxError:
            return False
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _names_config(node.left) or _names_config(node.right)
    if isinstance(node, ast.Subscript):  # Optional[Config]
        return _names_config(node.slice)
    return False


def whole_config_functions(root: Path = ROOT) -> list[tuple[str, int, str]]:
    """(module path, line, function name) of each function with a `Config` parameter."""
    found: list[tuple[str, int, str]] = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            a = node.args
            params = [*a.posonlyargs, *a.args, *a.kwonlyargs]
            params += [p for p in (a.vararg, a.kwarg) if p is not None]
            if any(_names_config(p.annotation) for p in params):
                found.append((str(path.relative_to(root)), node.lineno, node.name))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="name each function")
    parser.add_argument("--by-module", action="store_true", help="count per module")
    parser.add_argument("--components", action="store_true", help="only those outside the composition roots")
    args = parser.parse_args()
    found = whole_config_functions()
    components = [f for f in found if not is_composition_root(f[0])]
    if args.components:
        found = components
    if args.list:
        for module, line, name in found:
            print(f"{module}:{line}: {name}")
    if args.by_module:
        for module, count in Counter(m for m, _, _ in found).most_common():
            print(f"{count:4d} {module}")
    print(f"functions under src/framelog taking the whole Config: {len(whole_config_functions())}, "
          f"of which outside the composition roots: {len(components)}")


if __name__ == "__main__":
    main()
