"""A small ClickHouse SQL lexer: split statements, find keywords outside literals.

Used for two jobs that must not be fooled by quotes or comments:

* the migration runner sends one statement per call (chdb would happily run a
  ``;``-separated script in one call, so nothing may ever be concatenated);
* the analyst guard (``queries.run_readonly_sql``) accepts exactly one
  read-only statement.

It understands ``'string'`` (with ``\\'`` and ``''`` escapes), ``"identifier"``,
```identifier``` , ``-- line``, ``# line`` (``#`` followed by a space or ``!``, as
ClickHouse's lexer has it) and ``/* block */`` comments (nested,
as ClickHouse allows), and ``$$heredoc$$`` / ``$tag$...$tag$`` literals. An
unterminated literal or comment is an error rather than a guess.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["SqlSyntaxError", "Token", "tokens", "split_statements", "keywords"]


class SqlSyntaxError(ValueError):
    """The text is not lexically valid (unterminated quote or comment)."""


@dataclass(frozen=True)
class Token:
    kind: str   # "word", "string", "quoted_ident", "comment", "semicolon", "other", "space"
    text: str
    start: int


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEREDOC = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def _quoted(sql: str, i: int, quote: str) -> int:
    """Index just past the closing quote of the literal opening at ``i``."""
    j = i + 1
    n = len(sql)
    while j < n:
        c = sql[j]
        if c == "\\":
            j += 2
            continue
        if c == quote:
            if j + 1 < n and sql[j + 1] == quote:   # doubled quote escape
                j += 2
                continue
            return j + 1
        j += 1
    raise SqlSyntaxError(f"unterminated {quote} literal starting at offset {i}")


def tokens(sql: str) -> list[Token]:
    out: list[Token] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c.isspace():
            j = i + 1
            while j < n and sql[j].isspace():
                j += 1
            out.append(Token("space", sql[i:j], i))
        elif c in "'\"`":
            j = _quoted(sql, i, c)
            out.append(Token("string" if c == "'" else "quoted_ident", sql[i:j], i))
        elif sql.startswith("--", i) or sql.startswith("# ", i) or sql.startswith("#!", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j + 1
            out.append(Token("comment", sql[i:j], i))
        elif sql.startswith("/*", i):
            depth, j = 1, i + 2
            while depth:
                if j >= n:
                    raise SqlSyntaxError(f"unterminated /* comment starting at offset {i}")
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(Token("comment", sql[i:j], i))
        elif c == "$" and (m := _HEREDOC.match(sql, i)):
            tag = m.group(0)
            end = sql.find(tag, m.end())
            if end < 0:
                raise SqlSyntaxError(f"unterminated {tag} literal starting at offset {i}")
            j = end + len(tag)
            out.append(Token("string", sql[i:j], i))
        elif c == ";":
            j = i + 1
            out.append(Token("semicolon", c, i))
        elif m := _WORD.match(sql, i):
            j = m.end()
            out.append(Token("word", m.group(0), i))
        else:
            j = i + 1
            out.append(Token("other", c, i))
        i = j
    return out


def _is_blank(toks: list[Token]) -> bool:
    return all(t.kind in ("space", "comment") for t in toks)


def split_statements(sql: str) -> list[str]:
    """Split a script on top-level ``;``; blank/comment-only pieces are dropped."""
    statements: list[str] = []
    current: list[Token] = []
    for tok in tokens(sql):
        if tok.kind == "semicolon":
            if not _is_blank(current):
                statements.append("".join(t.text for t in current).strip())
            current = []
        else:
            current.append(tok)
    if not _is_blank(current):
        statements.append("".join(t.text for t in current).strip())
    return statements


def keywords(sql: str) -> list[str]:
    """Upper-cased bare words outside literals and comments, in order."""
    return [t.text.upper() for t in tokens(sql) if t.kind == "word"]
