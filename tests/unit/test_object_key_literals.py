"""Every object key comes from core/object_keys.py (issue 12 pt 3): no module builds one with an f-string.

Why a test: the layout module validates each part (no id or file name can climb out of its prefix) and is
the one page a reader needs; a key spelled elsewhere escapes both. Chunked transcoding brought five back.
"""
from __future__ import annotations

import ast
from pathlib import Path

from framelog.core import object_keys

SOURCE = Path(object_keys.__file__).resolve().parents[1]
LAYOUT = Path(object_keys.__file__).resolve()
ROOTS = tuple(f"{root}/" for root in (*object_keys.VIDEO_PREFIXES, object_keys.VIDEOS, object_keys.DELETED))
EDGE_PATHS = tuple(f"/{root}/" for root in object_keys.EDGE_PREFIXES)   # an edge path is a key with a slash
# (API routes such as f"/videos/{id}" are paths of the API, not keys: they start with a slash too)


def _leading_text(node: ast.JoinedStr) -> str:
    first = node.values[0] if node.values else None
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else ""


def key_fstrings() -> list[str]:
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        if path.resolve() == LAYOUT:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr) and _leading_text(node).startswith(ROOTS + EDGE_PATHS):
                found.append(f"{path.relative_to(SOURCE)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_object_key_is_built_outside_the_layout_module():
    assert key_fstrings() == []
