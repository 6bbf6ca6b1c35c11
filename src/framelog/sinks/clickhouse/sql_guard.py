"""The analysts' SQL guard: one SELECT over framelog's analytics tables, pure functions only.

Analyst SQL is hostile input. It is accepted only if **both** readings agree it is safe:

* the lexical reading (:mod:`.sqltext`, ClickHouse's own rules for quotes, nested
  comments, ``#`` comments and heredocs): every ``name(`` is an allowed function
  (:mod:`.sql_allowlist`), a type name or SQL syntax; no ``SETTINGS``, ``FORMAT``,
  ``INTO OUTFILE``, ``APPLY``, ``system`` or ``information_schema`` anywhere; exactly one
  statement, starting with SELECT, WITH, ``(`` or EXPLAIN [kind] of one;
* the parse (sqlglot's ClickHouse dialect): a SELECT / UNION / EXCEPT / INTERSECT tree
  whose every table is one of framelog's analytics tables in the session's database
  (or a CTE in scope), with no table function at all and only allowed functions.

Two readings because the engine runs the text, not sqlglot's tree (regenerating the SQL
would change its meaning: ``rand()`` becomes ``randCanonical()``): a trick one parser
misreads is still caught by the other. What the engine runs is the analyst's own text.
A third reading, ``check_query_tree``, applies the same allow-lists to the engine's own
resolution of the text (``EXPLAIN QUERY TREE``, run by ``queries.run_readonly_sql`` only
after both readings accepted it: the analyzer folds constants, so it runs allowed functions
only). It catches what a text reading cannot know, such as ClickHouse calling
``currentUser`` written without parentheses. The engine keeps its own walls (readonly,
limits; ``client.analyst_settings``).
"""
from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from framelog.core.errors import FramelogError
from framelog.sinks.clickhouse.sql_allowlist import TYPES, function_allowed
from framelog.sinks.clickhouse.sqltext import SqlSyntaxError, Token, tokens

__all__ = ["UnsafeSqlError", "guard_sql", "PARENLESS_SERVER_STATE", "is_explain", "check_query_tree"]


class UnsafeSqlError(FramelogError, ValueError):
    """Analyst SQL refused before reaching ClickHouse (the message names what was refused)."""


# Words that may stand before "(" without being a function call.
_SYNTAX_BEFORE_PAREN = frozenset("""
AND OR NOT IN AS EXISTS OVER USING ON WHERE PREWHERE HAVING SELECT FROM JOIN BY THEN ELSE WHEN CASE IS LIKE ILIKE
BETWEEN ALL ANY DISTINCT UNION EXCEPT INTERSECT REPLACE WITH LIMIT OFFSET GLOBAL ARRAY INTERVAL FILTER WINDOW
PARTITION ROWS RANGE QUALIFY SAMPLE CUBE ROLLUP SETS ASC DESC NULLS FIRST LAST TO STEP INTERPOLATE FILL
LEFT RIGHT INNER OUTER FULL CROSS SEMI ANTI ASOF PASTE EXPLAIN TOTALS
""".split())
# Clauses and words refused anywhere outside literals, whatever the parse says.
_REFUSED_WORDS = {
    "SETTINGS": "a SETTINGS clause is not allowed (limits are the server's)",
    "FORMAT": "a FORMAT clause is not allowed (results come back as JSON)",
    "INTO": "INTO OUTFILE is not allowed",
    "OUTFILE": "INTO OUTFILE is not allowed",
    "APPLY": "the APPLY column transformer is not allowed",
}
_REFUSED_NAMES = {"system": "database system", "information_schema": "database information_schema"}
# Functions ClickHouse also calls when named without parentheses (measured on chdb 26.9 by
# running `SELECT name` for every function; tests/security/test_sql_sandbox.py re-derives the
# list from the engine): those that tell the server's state are refused as bare names too.
PARENLESS_SERVER_STATE = frozenset("""
currentdatabase current_database database schema currentuser current_user session_user user
currenthandler currentrequesturl
""".split())
_EXPLAIN_KINDS = ("AST", "SYNTAX", "PLAN", "PIPELINE", "ESTIMATE")
_QUERY_START = {"SELECT", "WITH"}


def _unquote(tok: Token) -> str:
    return tok.text[1:-1] if tok.kind == "quoted_ident" else tok.text


def _prechecked(sql: Any, max_chars: int) -> str:
    if not isinstance(sql, str):
        raise UnsafeSqlError("SQL must be a string")
    if len(sql) > max_chars:
        raise UnsafeSqlError(f"SQL longer than {max_chars} characters (analyst_sql.max_sql_chars)")
    if "\x00" in sql:
        raise UnsafeSqlError("SQL contains a NUL character")
    text = sql.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    # chdb runs ';'-separated scripts: any remaining ';' is refused, even in a literal (use char(59)).
    if ";" in text:
        raise UnsafeSqlError("exactly one statement is allowed (';' found)")
    if not text:
        raise UnsafeSqlError("empty SQL")
    return text


def _significant_tokens(text: str) -> list[Token]:
    try:
        return [t for t in tokens(text) if t.kind not in ("space", "comment")]
    except SqlSyntaxError as exc:
        raise UnsafeSqlError(str(exc)) from None


def _query_start(toks: list[Token]) -> int:
    """Index of the token where the query itself starts (after EXPLAIN [kind])."""
    if not toks:
        raise UnsafeSqlError("empty SQL")
    start = 0
    first = toks[0].text.upper() if toks[0].kind == "word" else toks[0].text
    if first == "EXPLAIN":
        start = 1
        if start < len(toks) and toks[start].kind == "word" and toks[start].text.upper() in _EXPLAIN_KINDS:
            start += 1
        elif (start + 1 < len(toks) and toks[start].text.upper() == "QUERY"
              and toks[start + 1].text.upper() == "TREE"):
            start += 2
        first = toks[start].text.upper() if start < len(toks) else ""
        if first not in _QUERY_START and first != "(":
            raise UnsafeSqlError("EXPLAIN is allowed only as EXPLAIN [AST|SYNTAX|QUERY TREE|PLAN|PIPELINE|ESTIMATE] "
                                 "of a SELECT, without settings")
    elif first not in _QUERY_START and first != "(":
        raise UnsafeSqlError(f"only SELECT (with WITH, UNION, subqueries) or EXPLAIN of one is allowed, "
                             f"not {toks[0].text[:40]!r}")
    return start


def _no_identifier_parameters(toks: list[Token]) -> None:
    """``{name:Identifier}`` would let a bound value name a table or column: values only."""
    for prev, tok in zip(toks, toks[1:]):
        if prev.text == ":" and tok.kind == "word" and tok.text.upper() == "IDENTIFIER":
            raise UnsafeSqlError("a parameter of type Identifier is not allowed: bind values, not names")


def _shallow_enough(toks: list[Token], max_depth: int) -> None:
    """Refuse deep nesting before parsing it: the parser recurses (and holds the GIL) per level."""
    depth = 0
    for tok in toks:
        if tok.text in ("(", "["):
            depth += 1
            if depth > max_depth:
                raise UnsafeSqlError(f"brackets nested deeper than {max_depth} (analyst_sql.max_nesting)")
        elif tok.text in (")", "]"):
            depth -= 1


def _lexical_check(toks: list[Token]) -> None:
    """Every ``name(`` an allowed function, a type or syntax; no refused clause or database."""
    for i, tok in enumerate(toks):
        if tok.kind not in ("word", "quoted_ident"):
            continue
        name = _unquote(tok)
        if name.lower() in _REFUSED_NAMES:
            raise UnsafeSqlError(f"{_REFUSED_NAMES[name.lower()]} is not allowed: only framelog's analytics tables")
        calls = i + 1 < len(toks) and toks[i + 1].text == "("
        if not calls and name.lower() in PARENLESS_SERVER_STATE:
            raise UnsafeSqlError(f"{name} is not allowed: ClickHouse reads it as {name}(), the server's state")
        word = tok.text.upper() if tok.kind == "word" else ""
        if word in _REFUSED_WORDS and not (calls and word == "FORMAT"):     # format() is a string function
            raise UnsafeSqlError(_REFUSED_WORDS[word])
        if calls:
            if tok.kind == "word" and tok.text.upper() in _SYNTAX_BEFORE_PAREN:
                continue
            if not (function_allowed(name) or name.lower() in TYPES):
                raise UnsafeSqlError(f"function {name}() is not allowed (not on the analysts' allow-list)")


def _ctes_in_scope(where: exp.Expression) -> set[str]:
    """Names of the CTEs (and WITH aliases) visible at ``where`` (a CTE sees only the ones before it)."""
    ancestors: set[int] = set()
    names: set[str] = set()
    node: exp.Expression | None = where
    while node is not None:
        ancestors.add(id(node))
        with_ = node.args.get("with_")
        if isinstance(with_, exp.With):
            for cte in with_.expressions:
                if id(cte) in ancestors:        # the table is inside this CTE's own body
                    break
                if cte.alias:
                    names.add(cte.alias)
        node = node.parent
    return names


def _tree_check(body: str, database: str, tables: Collection[str]) -> None:
    try:
        statements = [s for s in sqlglot.parse(body, read="clickhouse") if s is not None]
    except SqlglotError as exc:
        raise UnsafeSqlError(f"could not parse the statement: {str(exc).splitlines()[0][:300]}") from None
    except RecursionError:
        raise UnsafeSqlError("the statement is nested too deeply to check") from None
    if len(statements) != 1:
        raise UnsafeSqlError("exactly one statement is allowed")
    root = statements[0]
    while isinstance(root, exp.Subquery):
        root = root.this
    if not isinstance(root, (exp.Select, exp.SetOperation)):
        raise UnsafeSqlError(f"only SELECT (with WITH, UNION, subqueries) or EXPLAIN of one is allowed, "
                             f"not {root.key.upper()}")
    for node in root.walk():
        if isinstance(node, (exp.Command, exp.Into, exp.DDL, exp.DML)):
            raise UnsafeSqlError(f"{node.key.upper()} is not allowed in analyst SQL")
        if isinstance(node, exp.With) and node.args.get("recursive"):
            raise UnsafeSqlError("WITH RECURSIVE is not allowed")
        if isinstance(node, exp.Query) and (node.args.get("settings") or node.args.get("format")):
            raise UnsafeSqlError("SETTINGS and FORMAT clauses are not allowed")
        if isinstance(node, exp.Table):
            _check_table(node, database, tables)
        elif isinstance(node, exp.In) and isinstance(node.args.get("field"), exp.Column):
            _check_in_table(node, node.args["field"], database, tables)
        elif isinstance(node, exp.Anonymous) and not function_allowed(node.name):
            raise UnsafeSqlError(f"function {node.name}() is not allowed (not on the analysts' allow-list)")


def _check_table(table: exp.Table, database: str, tables: Collection[str]) -> None:
    if not isinstance(table.this, exp.Identifier):
        this = table.this
        name = this.name if isinstance(this, exp.Anonymous) else this.sql("clickhouse").split("(", 1)[0][:60]
        raise UnsafeSqlError(f"table function {name}() is not allowed: read framelog's analytics tables "
                             f"({', '.join(sorted(tables))})")
    name = table.name
    if table.catalog:
        raise UnsafeSqlError(f"table {table.sql('clickhouse')} is not allowed")
    if table.db:
        if table.db != database:
            raise UnsafeSqlError(f"table {table.db}.{name} is not allowed: only database {database}")
    elif name in _ctes_in_scope(table):
        return
    if name not in tables:
        raise UnsafeSqlError(f"table {name} is not allowed: only framelog's analytics tables "
                             f"({', '.join(sorted(tables))})")


def _check_in_table(node: exp.In, field: exp.Column, database: str, tables: Collection[str]) -> None:
    """``x IN name``: ClickHouse reads table ``name`` (or a WITH alias of that name) as the set."""
    if field.args.get("catalog") or field.args.get("db"):
        raise UnsafeSqlError(f"IN {field.sql('clickhouse')} is not allowed")
    if field.table:
        if field.table != database:
            raise UnsafeSqlError(f"IN {field.table}.{field.name} is not allowed: only database {database}")
    elif field.name in _ctes_in_scope(node):
        return
    if field.name not in tables:
        raise UnsafeSqlError(f"IN {field.name} is not allowed: only framelog's analytics tables "
                             f"({', '.join(sorted(tables))})")


def guard_sql(sql: Any, *, database: str, tables: Collection[str], max_chars: int, max_depth: int) -> str:
    """The statement to run (trailing ``;`` removed), or UnsafeSqlError naming what was refused.

    ``database``: the session's database (tables may be qualified with it, no other);
    ``tables``: the analytics tables and views analysts may read; ``max_chars``,
    ``max_depth``: size and bracket nesting accepted (``analyst_sql:``), which bound the
    parse's time."""
    text = _prechecked(sql, max_chars)
    toks = _significant_tokens(text)
    start = _query_start(toks)
    _shallow_enough(toks, max_depth)
    _no_identifier_parameters(toks)
    _tree_check(text[toks[start].start:], database, tables)
    _lexical_check(toks)
    return text


# ---------------------------------------------------------------- the engine's own reading

# Functions the engine's analyzer writes into a query tree for syntax (CAST, CASE x WHEN, EXISTS).
_ENGINE_SYNTAX = frozenset({"_cast", "casewithexpression", "exists", "__getscalar", "__scalarsubqueryresult"})
_TREE_FUNCTION = re.compile(r"^\s*FUNCTION id: \d+, function_name: ([^,\s]+)")
_TREE_TABLE = re.compile(r"^\s*TABLE id: \d+,.*\btable_name: (\S+?)(?:,|$)")
_TREE_TABLE_FUNCTION = re.compile(r"^\s*TABLE_FUNCTION id: \d+,.*\btable_function_name: ([^,\s]+)")
_DUAL = "system.one"      # what a SELECT without FROM reads


def is_explain(statement: str) -> bool:
    toks = _significant_tokens(statement)
    return bool(toks) and toks[0].kind == "word" and toks[0].text.upper() == "EXPLAIN"


def check_query_tree(tree: str, database: str, tables: Collection[str]) -> None:
    """The third reading: ``EXPLAIN QUERY TREE`` of the statement, i.e. what the engine resolved
    (paren-less calls, aliases, escaped identifiers included). Every function must be allowed,
    every table one of the analytics tables of ``database``, no table function."""
    for line in tree.splitlines():
        if m := _TREE_FUNCTION.match(line):
            name = m.group(1)
            if not (function_allowed(name) or name.lower() in _ENGINE_SYNTAX):
                raise UnsafeSqlError(f"the engine resolved a call to {name}(), which is not allowed")
        elif m := _TREE_TABLE_FUNCTION.match(line):
            raise UnsafeSqlError(f"the engine resolved a table function {m.group(1)}(), which is not allowed")
        elif m := _TREE_TABLE.match(line):
            qualified = m.group(1)
            db, _, table = qualified.rpartition(".")
            if qualified != _DUAL and not (db == database and table in tables):
                raise UnsafeSqlError(f"the engine resolved table {qualified}, which is not allowed")
