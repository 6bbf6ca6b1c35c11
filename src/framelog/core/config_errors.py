"""Pydantic's validation errors told as framelog's: the dotted key, what is wrong, the nearest valid name."""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from framelog.core.errors import ConfigError


def dotted(loc: tuple[Any, ...]) -> str:
    """('processing_pipeline', 'stages', 1, 'timeout') -> 'processing_pipeline.stages[1].timeout'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        else:
            return tp


def field_names(schema: type, loc: tuple[Any, ...]) -> list[str]:
    """The keys the schema allows at ``loc`` (a mapping of it), found by walking its type hints."""
    tp: Any = schema
    for part in loc:
        tp = _unwrap(tp)
        if dataclasses.is_dataclass(tp):
            hints = typing.get_type_hints(tp, include_extras=True)
            if part not in hints:
                return []
            tp = hints[part]
        else:
            args = typing.get_args(tp)
            if not args:
                return []
            tp = args[-1] if typing.get_origin(tp) in (dict, Mapping) else args[0]
    tp = _unwrap(tp)
    return [f.name for f in dataclasses.fields(tp) if f.init] if dataclasses.is_dataclass(tp) else []


def unknown_key(key: str, valid: list[str]) -> str:
    """'unknown key (did you mean parallel_jobs?)', or the valid keys when none is near."""
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if near:
        return f"unknown key (did you mean {near[0]}?)"
    return f"unknown key (valid here: {', '.join(valid)})" if valid else "unknown key"


def _origin(loc: tuple[Any, ...], origins: Mapping[tuple[Any, ...], str]) -> str:
    for n in range(len(loc), 0, -1):
        if loc[:n] in origins:
            return f" (set by {origins[loc[:n]]})"
    return ""


def _one(error: Mapping[str, Any], schema: type) -> tuple[tuple[Any, ...], str]:
    loc, kind = tuple(error["loc"]), error["type"]
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        return loc, unknown_key(str(loc[-1]), field_names(schema, loc[:-1]))
    if kind == "missing":
        return loc, "missing required key"
    if kind == "value_error":            # framelog's own validators: the message says what it got
        return loc, str(error["ctx"]["error"])
    got = repr(error["input"])
    return loc, f"{error['msg']}, got {got if len(got) <= 80 else got[:77] + '...'}"


def config_error(exc: ValidationError, schema: type, origins: Mapping[tuple[Any, ...], str] = {}) -> ConfigError:
    """One ConfigError for a failed validation: the first problem's key, every problem in the message."""
    errors = exc.errors()
    # a list whose item failed is also "too short after validation": only the item's own problem is told
    errors = [e for e in errors if not any(tuple(o["loc"])[:len(e["loc"])] == tuple(e["loc"]) and o is not e
                                           for o in errors)] or errors
    problems = [_one(e, schema) for e in errors]
    (loc, message), rest = problems[0], problems[1:]
    text = message + _origin(loc, origins)
    if rest:
        text += "; also " + "; ".join(f"{dotted(where)}: {m}{_origin(where, origins)}" for where, m in rest)
    return ConfigError(dotted(loc), text)
