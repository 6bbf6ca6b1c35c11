"""Analyst SQL is hostile input: the guard (parser) and the engine's walls, each on its own.

Unit part: the allow-list guard on many escapes (no engine). Integration part: the real
embedded engine (chdb) with the analysts' session settings, the guard bypassed, and the
README's example queries run through the guard on real tables.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from framelog.core.config import load_config
from framelog.sinks.clickhouse.client import analyst_settings, client_is_embedded, connect, connect_readonly
from framelog.sinks.clickhouse.migrations import analytics_tables, apply_migrations
from framelog.sinks.clickhouse.queries import run_readonly_sql
from framelog.sinks.clickhouse.sql_allowlist import AGGREGATES, FUNCTIONS, function_allowed
from framelog.sinks.clickhouse.sql_guard import PARENLESS_SERVER_STATE, UnsafeSqlError, check_query_tree, guard_sql
from framelog.sinks.clickhouse.synthetic import generate_playback_events

DB = "framelog"
TABLES = analytics_tables()
LIMITS = load_config().analyst_sql
README = Path(__file__).resolve().parents[2] / "README.md"


def guard(sql: str) -> str:
    return guard_sql(sql, database=DB, tables=TABLES, max_chars=LIMITS.max_sql_chars, max_depth=LIMITS.max_nesting)


# ---------------------------------------------------------------- the guard (unit)

def test_the_tables_come_from_the_migrations():
    assert TABLES == {"playback_events", "quality_switches", "video_stats_hourly", "video_country_hourly",
                      "video_rendition_hourly", "quality_switch_hourly"}


ACCEPTED = [
    "SELECT 1",
    "select count() from playback_events where video_id = 'a' ;",
    "SELECT count() FROM framelog.playback_events",
    "SELECT count() FROM `framelog`.`playback_events`",
    "WITH 1 AS x SELECT x",
    "WITH recent AS (SELECT video_id FROM playback_events) SELECT count() FROM recent",
    "WITH a AS (SELECT 1 AS v), b AS (SELECT v FROM a) SELECT * FROM b",
    "WITH playback_events AS (SELECT 1 AS v) SELECT * FROM playback_events",
    "SELECT 1 UNION ALL SELECT count() FROM quality_switches",
    "SELECT * FROM (SELECT video_id FROM (SELECT video_id FROM playback_events))",
    "(SELECT 1)",
    "EXPLAIN SELECT count() FROM playback_events",
    "EXPLAIN PIPELINE SELECT 1",
    "EXPLAIN QUERY TREE SELECT 1",
    "SELECT format('{}-{}', video_id, type) FROM playback_events",
    "SELECT arrayMap(x -> x * 2, [1, 2, 3]), arrayFilter(x -> x > 1, [1, 2])",
    "SELECT quantile(0.5)(watch_time_delta_seconds), sumIf(1, type = 'view_start'), uniqExact(viewer_id) "
    "FROM playback_events",
    "SELECT uniqMerge(unique_viewers), uniqExactMerge(completed_sessions), sumState(views) FROM video_stats_hourly",
    "SELECT CAST(video_id AS Nullable(String)), video_id::String, toDateTime64(event_time, 3, 'UTC') "
    "FROM playback_events",
    "SELECT if(1, 2, 3), multiIf(1, 2, 3), CASE WHEN 1 THEN 2 END, dateDiff('day', now(), today())",
    "SELECT sum(views) OVER (PARTITION BY video_id ORDER BY hour) FROM video_stats_hourly",
    "SELECT p.video_id FROM playback_events AS p JOIN quality_switches AS q ON p.session_id = q.session_id",
    "SELECT * FROM playback_events WHERE video_id GLOBAL IN (SELECT video_id FROM video_stats_hourly)",
    "SELECT count() FROM playback_events WHERE video_id IN video_stats_hourly",
    "WITH ('a', 'b') AS wanted SELECT count() FROM playback_events WHERE video_id IN wanted",
    "SELECT 'system', 'file(x)', $$url('http://x')$$ AS s",            # words inside literals are data
    "SELECT count() FROM playback_events WHERE video_id = {v:String} AND event_time >= {since:DateTime('UTC')}",
    "/* a comment */ SELECT 1 -- trailing comment",
    "SELECT count() FROM playback_events WHERE video_id IN {ids:Array(String)}",
    "SELECT hour FROM video_stats_hourly ORDER BY hour WITH FILL STEP 3600",
    "SELECT * FROM playback_events ORDER BY event_time LIMIT 10 WITH TIES",
    "SELECT toString(1) AS `file`",                     # a name that is not called is just a name
    "SELECT CURRENT_DATE, CURRENT_TIMESTAMP, now, today",     # paren-less, but only the clock
]


@pytest.mark.parametrize("sql", ACCEPTED)
def test_guard_accepts_selects_over_the_analytics_tables(sql):
    assert guard(sql) == sql.strip().rstrip(";").rstrip()


REFUSED = [
    # the attacker's cases from the issue
    ("SELECT file('/etc/hostname')", "function file()"),
    ("DESCRIBE url('http://127.0.0.1:18999/x', 'CSVWithNames')", "only SELECT"),
    ("SELECT length(groupArray(number)) FROM (SELECT number FROM system.numbers LIMIT 250000000)", "system"),
    ("SELECT sleep(1)", "function sleep()"),
    # case, quoting and comment tricks
    ("SELECT FILE('/etc/hostname')", "function FILE()"),
    ("SELECT FiLe('/etc/hostname')", "function FiLe()"),
    ("SELECT `file`('/etc/hostname')", "function file()"),
    ('SELECT "file"(\'/etc/hostname\')', "function file()"),
    ("SELECT file /* hidden */ ('/etc/hostname')", "function file()"),
    ("SELECT /* SELECT 1 */ file('/etc/hostname')", "function file()"),
    ("SELECT 1 -- comment\n, file('/etc/hostname')", "function file()"),
    ("SELECT 1 # comment\n, file('/etc/hostname')", "function file()"),
    ("SELECT 1 /* nested /* comment */ still */, file('/etc/hostname')", "function file()"),
    ("SELECT arrayMap(x -> file(x), ['/etc/hostname'])", "function file()"),
    ("WITH file('/etc/hostname') AS y SELECT y", "function file()"),
    ("SELECT * FROM playback_events WHERE video_id = file('/etc/hostname')", "function file()"),
    ("SELECT * APPLY(file) FROM playback_events", "APPLY"),
    # tables: system, other databases, bookkeeping, table functions (in FROM and in JOINs)
    ("SELECT * FROM system.numbers LIMIT 5", "system"),
    ("SELECT * FROM `system`.`tables`", "system"),
    ('SELECT * FROM "SYSTEM".users', "SYSTEM.users"),
    ("SELECT * FROM information_schema.tables", "information_schema"),
    ("SELECT * FROM playback_events WHERE video_id IN (SELECT name FROM system.tables)", "system"),
    ("SELECT * FROM other.playback_events", "other.playback_events"),
    ("SELECT * FROM default.t", "default.t"),
    ("SELECT * FROM schema_migrations", "schema_migrations"),
    ("SELECT * FROM video_stats_hourly_mv", "video_stats_hourly_mv"),
    ("SELECT count() FROM PLAYBACK_EVENTS", "PLAYBACK_EVENTS"),
    ("SELECT * FROM numbers(10)", "table function numbers()"),
    ("SELECT * FROM playback_events JOIN url('http://127.0.0.1:18999/x', 'CSVWithNames') AS u ON 1",
     "table function url()"),
    ("SELECT * FROM playback_events, view(SELECT 1)", "table function view()"),
    ("SELECT * FROM merge(currentDatabase(), '.*')", "table function merge()"),
    ("SELECT * FROM remote('127.0.0.1', system.one)", "remote"),
    ("SELECT * FROM s3('http://127.0.0.1:9/b/k', 'CSV')", "s3"),
    ("SELECT * FROM mysql('h:3306', 'd', 't', 'u', 'p')", "mysql"),
    ("SELECT * FROM postgresql('h:5432', 'd', 't', 'u', 'p')", "postgresql"),
    ("SELECT * FROM jdbc('x', 'y')", "jdbc"),
    ("SELECT * FROM input('a Int8')", "input"),
    ("SELECT * FROM executable('x.sh', 'TSV', 'a String')", "executable"),
    ("SELECT * FROM python('x')", "python"),
    ("SELECT * FROM format(JSONEachRow, '{\"a\": 1}')", "table function format()"),
    # a CTE named like an allowed table does not open another one; a CTE sees only earlier CTEs
    ("WITH x AS (SELECT * FROM system.one) SELECT * FROM x", "system"),
    ("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", "table b"),
    ("SELECT * FROM (WITH q AS (SELECT 1) SELECT * FROM q), q", "table q"),
    ("WITH RECURSIVE t AS (SELECT 1) SELECT * FROM t", "RECURSIVE"),
    # `x IN name` reads table `name`
    ("SELECT count() FROM playback_events WHERE video_id IN schema_migrations", "IN schema_migrations"),
    ("SELECT count() FROM playback_events WHERE video_id NOT IN other.t", "IN other.t"),
    ("SELECT count() FROM playback_events WHERE (video_id, type) GLOBAL IN default.t", "IN default.t"),
    # a bound parameter may carry a value, never a name
    ("SELECT * FROM {t:Identifier}", "Identifier"),
    ("SELECT count() FROM playback_events WHERE video_id IN {t: identifier}", "Identifier"),
    ("SELECT {c:Identifier} FROM playback_events", "Identifier"),
    # server state and environment
    ("SELECT getSetting('readonly')", "getSetting"),
    ("SELECT getServerSetting('user_files_path')", "getServerSetting"),
    ("SELECT currentUser()", "currentUser"),
    ("SELECT hostName()", "hostName"),
    ("SELECT version()", "version"),
    ("SELECT uptime()", "uptime"),
    ("SELECT currentDatabase()", "currentDatabase"),
    ("SELECT dictGet('d', 'a', 1)", "dictGet"),
    ("SELECT joinGet('j', 'v', 1)", "joinGet"),
    ("SELECT getMacro('x')", "getMacro"),
    ("SELECT hasColumnInTable('system', 'users', 'name')", "hasColumnInTable"),
    ("SELECT chdb('SELECT 1')", "chdb"),
    # functions ClickHouse calls without parentheses
    ("SELECT currentUser", "currentUser"),
    ("SELECT CURRENT_USER", "CURRENT_USER"),
    ("SELECT `currentDatabase`", "currentDatabase"),
    ('SELECT "user"', "user"),
    ("SELECT session_user, database, schema", "session_user"),
    ("SELECT arrayMap(x -> currentUser, [1])", "currentUser"),
    # clauses
    ("SELECT 1 SETTINGS readonly = 0", "SETTINGS"),
    ("SELECT 1 FORMAT JSON", "FORMAT"),
    ("SELECT 1 INTO OUTFILE '/tmp/x'", ""),
    ("SELECT 1 into\noutfile '/tmp/x'", ""),
    # statements
    ("SELECT 1; SELECT 2", "one statement"),
    ("SELECT 1; DROP TABLE playback_events", "one statement"),
    ("SELECT ';'", "one statement"),
    ("SHOW TABLES", "only SELECT"),
    ("DESCRIBE TABLE playback_events", "only SELECT"),
    ("INSERT INTO playback_events SELECT * FROM playback_events", "only SELECT"),
    ("SET readonly = 0", "only SELECT"),
    ("/* SELECT */ DELETE FROM playback_events WHERE 1", "only SELECT"),
    ("EXPLAIN SELECT file('/etc/hostname')", "function file()"),
    ("EXPLAIN SYNTAX SELECT * FROM system.tables", "system"),
    ("EXPLAIN header = 1 SELECT 1", "EXPLAIN"),
    ("EXPLAIN TABLE OVERRIDE mysql('h', 'd', 't', 'u', 'p') SELECT 1", "EXPLAIN"),
    ("EXPLAIN DESCRIBE url('http://x', 'CSV')", "EXPLAIN"),
    ("SELECT 'unterminated", "unterminated"),
    ("", "empty"),
    ("SELECT 1\x00", "NUL"),
]


@pytest.mark.parametrize("sql,names", REFUSED)
def test_guard_refuses_and_names_the_offender(sql, names):
    with pytest.raises(UnsafeSqlError, match=re.escape(names) if names else None):
        guard(sql)


def test_guard_only_allows_the_sessions_own_database():
    bounds = {"max_chars": LIMITS.max_sql_chars, "max_depth": LIMITS.max_nesting}
    assert guard_sql("SELECT * FROM other.playback_events", database="other", tables=TABLES, **bounds)
    with pytest.raises(UnsafeSqlError, match="framelog.playback_events"):
        guard_sql("SELECT * FROM framelog.playback_events", database="other", tables=TABLES, **bounds)


def test_size_and_nesting_are_bounded_before_the_parse():
    with pytest.raises(UnsafeSqlError, match="longer than"):
        guard("SELECT " + "+".join(["1"] * LIMITS.max_sql_chars))
    deep = LIMITS.max_nesting + 1
    with pytest.raises(UnsafeSqlError, match="nested deeper"):
        guard("SELECT " + "(" * deep + "1" + ")" * deep)
    with pytest.raises(UnsafeSqlError, match="nested deeper"):
        guard("SELECT " + "abs(" * deep + "1" + ")" * deep)
    ok = LIMITS.max_nesting - 1
    assert guard("SELECT " + "abs(" * ok + "1" + ")" * ok)


def test_allow_list_has_no_function_that_reads_files_urls_or_server_state():
    dangerous = ["file", "url", "s3", "remote", "mysql", "postgresql", "jdbc", "input", "executable", "dictGet",
                 "dictGetString", "joinGet", "getSetting", "getServerSetting", "getMacro", "currentUser", "hostName",
                 "FQDN", "version", "uptime", "serverUUID", "tcpPort", "filesystemAvailable", "sleep", "sleepEachRow",
                 "logTrace", "addressToSymbol", "hasColumnInTable", "currentDatabase", "chdb", "python",
                 "getClientHTTPHeader", "timezone", "serverTimezone", "authenticatedUser", "connectionId"]
    assert [f for f in dangerous if function_allowed(f)] == []
    for combined in ("sumIf", "uniqMerge", "uniqExactMerge", "avgIfState", "countIf", "groupArrayForEach",
                     "quantilesTDigestMerge", "sumMergeState"):
        assert function_allowed(combined), combined
    assert not function_allowed("fileIf") and not function_allowed("dictGetMerge")


def readme_queries() -> list[tuple[str, list[str]]]:
    """Each ``framelog sql [--param ...] "..."`` of the README: (statement, param names)."""
    text = README.read_text()
    out = []
    for m in re.finditer(r'framelog sql((?:\s+--param\s+\S+)*)\s+\\?\s*"([^"]+)"', text):
        names = re.findall(r"--param\s+([A-Za-z_]\w*)=", m.group(1))
        statement = " ".join(m.group(2).split())
        if "…" not in statement:                   # the usage table's `framelog sql "SELECT …"`
            out.append((statement, names))
    return out


def test_readme_example_queries_pass_the_guard():
    queries = readme_queries()
    assert len(queries) >= 5, queries
    for statement, _ in queries:
        assert guard(statement)


# ---------------------------------------------------------------- the engine (integration)

@pytest.fixture(scope="module")
def engine(chdb_path):
    """A real chdb engine with migrations and some rows; a writer session and an analyst session."""
    base = load_config()
    path = chdb_path
    cfg = dataclasses.replace(base, clickhouse=dataclasses.replace(base.clickhouse, dsn=f"chdb://{path}",
                                                                   database="framelog_sandbox"))
    writer = connect(cfg.clickhouse_dsn, cfg.clickhouse.database)
    apply_migrations(writer, cfg.analytics)
    generate_playback_events(writer, 20_000, videos=20, days=2)
    analyst = connect_readonly(cfg.clickhouse_dsn, cfg.clickhouse.database, cfg.analyst_sql)
    short = dataclasses.replace(cfg, analyst_sql=dataclasses.replace(cfg.analyst_sql, max_execution_time=1))
    analyst_short = connect_readonly(short.clickhouse_dsn, short.clickhouse.database, short.analyst_sql)
    yield cfg, writer, analyst, analyst_short
    for c in (analyst_short, analyst, writer):
        c.close()


@pytest.mark.integration
def test_the_analyst_session_runs_with_the_configured_walls(engine):
    cfg, _, analyst, _ = engine
    want = analyst_settings(cfg.analyst_sql, embedded=True)
    assert "allow_python_table_function" not in analyst_settings(cfg.analyst_sql, embedded=False)
    names = sorted(want)
    rows = dict(analyst.query("SELECT name, value FROM system.settings WHERE name IN {names:Array(String)}",
                              parameters={"names": names}).result_rows)
    assert {k: str(v) for k, v in want.items()} == {k: rows[k] for k in names}
    assert client_is_embedded(analyst)
    with pytest.raises(Exception, match="(?i)readonly"):
        analyst.command("SET readonly = 0")
    with pytest.raises(Exception, match="(?i)readonly"):
        analyst.command("CREATE TABLE nope (a UInt8) ENGINE = Memory")


@pytest.mark.integration
def test_engine_refuses_table_functions_with_the_guard_bypassed(engine, listener, tmp_path):
    _, _, analyst, _ = engine
    url, hits = listener
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t")
    for sql in [f"SELECT * FROM file('{secret}', 'LineAsString')",
                f"SELECT * FROM url('{url}/select', 'CSVWithNames')",
                f"EXPLAIN SELECT * FROM url('{url}/explain', 'CSVWithNames')",
                f"SELECT count() FROM playback_events WHERE video_id IN (SELECT a FROM url('{url}/in', 'CSV'))",
                "SELECT * FROM s3('http://127.0.0.1:9/bucket/key.csv', 'CSV')"]:
        with pytest.raises(Exception, match="(?i)readonly"):
            analyst.query(sql)
    with pytest.raises(Exception, match="(?i)python|readonly"):    # on by default in chdb, off here
        analyst.query("SELECT * FROM python('secret')")
    assert hits == []


@pytest.mark.integration
def test_engine_gaps_of_chdb_are_closed_by_the_guard(engine, listener, tmp_path):
    """chdb runs as clickhouse-local: the scalar file() ignores user_files_path and DESCRIBE url() ignores
    readonly (measured on chdb 26.9). run_readonly_sql never lets either reach the engine."""
    _, writer, analyst, _ = engine
    url, hits = listener
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t")
    for session in (analyst, writer):
        for sql in [f"SELECT file('{secret}')", f"DESCRIBE url('{url}/describe', 'CSVWithNames')",
                    f"SELECT * FROM url('{url}/x', 'CSVWithNames')"]:
            with pytest.raises(UnsafeSqlError):
                run_readonly_sql(session, sql)
    assert hits == []


@pytest.mark.integration
def test_engine_limits_memory_time_and_result_size(engine):
    _, writer, analyst, analyst_short = engine
    # the memory bomb, guard bypassed: refused by max_memory_usage, not 4 GB later
    with pytest.raises(Exception, match="MEMORY_LIMIT_EXCEEDED|TOO_MANY_ROWS"):
        analyst.query("SELECT length(groupArray(number)) FROM (SELECT number FROM system.numbers LIMIT 250000000)")
    # the same through the guard, written with allowed functions only: the engine still stops it
    with pytest.raises(Exception, match="MEMORY_LIMIT_EXCEEDED"):
        run_readonly_sql(analyst, "SELECT length(groupArray(x)) FROM (SELECT arrayJoin(range(200000000)) AS x)")
    with pytest.raises(Exception, match="TIMEOUT_EXCEEDED"):
        analyst_short.query("SELECT count() FROM numbers(20) WHERE sleepEachRow(0.1) = 0")
    # result rows past max_result_rows are cut (result_overflow_mode=break), not buffered
    limit = engine[0].analyst_sql.max_result_rows
    res = run_readonly_sql(analyst, f"SELECT arrayJoin(range({limit * 3})) AS n", max_rows=limit)
    assert res.truncated and len(res.rows) == limit
    # the writer's session gets the same walls when it runs analysts' SQL
    with pytest.raises(Exception, match="MEMORY_LIMIT_EXCEEDED"):
        run_readonly_sql(writer, "SELECT length(groupArray(x)) FROM (SELECT arrayJoin(range(200000000)) AS x)")


@pytest.mark.integration
def test_readme_example_queries_run_on_the_engine(engine):
    _, _, analyst, _ = engine
    video = analyst.query("SELECT any(video_id) FROM playback_events").result_rows[0][0]
    values = {"v": video, "since": "2020-01-01"}
    for statement, names in readme_queries():
        res = run_readonly_sql(analyst, statement, parameters={n: values[n] for n in names})
        assert res.columns, statement


@pytest.mark.integration
def test_every_allowed_function_exists_in_the_engine(engine):
    _, writer, _, _ = engine
    known = {r[0].lower() for r in writer.query("SELECT name FROM system.functions").result_rows}
    assert sorted(FUNCTIONS - known) == []
    assert sorted(AGGREGATES - known) == []


@pytest.mark.integration
def test_every_function_the_engine_calls_without_parentheses_is_allowed_or_refused_by_name(engine):
    """`SELECT currentUser` runs currentUser(): re-derive from the engine which names do that."""
    _, writer, _, _ = engine
    names = [r[0] for r in writer.query("SELECT name FROM system.functions WHERE is_aggregate = 0").result_rows]
    parenless = set()
    for name in names:
        try:
            writer.query(f"SELECT `{name}`")
        except Exception:
            continue
        parenless.add(name)
    assert len(parenless) >= 5, parenless
    unhandled = sorted(n for n in parenless if not function_allowed(n) and n.lower() not in PARENLESS_SERVER_STATE)
    assert unhandled == []
    for name in PARENLESS_SERVER_STATE:
        with pytest.raises(UnsafeSqlError):
            guard(f"SELECT {name}")


TREE = """QUERY id: 0
  PROJECTION
    LIST id: 1, nodes: 1
      FUNCTION id: 2, function_name: count, function_type: aggregate, result_type: UInt64
  JOIN TREE
    TABLE id: 3, alias: __table1, table_name: framelog.playback_events
  WHERE
    FUNCTION id: 4, function_name: in, function_type: ordinary, result_type: UInt8
      ARGUMENTS
        LIST id: 5, nodes: 2
          COLUMN id: 8, column_name: video_id, result_type: String, source_id: 3
          TABLE id: 12, alias: __table2, table_name: {inner}
"""


def test_the_engines_query_tree_is_checked_against_the_same_allow_lists():
    check_query_tree(TREE.format(inner="framelog.video_stats_hourly"), DB, TABLES)
    check_query_tree(TREE.replace("framelog.playback_events", "system.one").format(inner="framelog.quality_switches"),
                     DB, TABLES)          # a SELECT without FROM reads system.one
    for inner, named in [("system.users", "system.users"), ("other.playback_events", "other.playback_events"),
                         ("framelog.schema_migrations", "schema_migrations")]:
        with pytest.raises(UnsafeSqlError, match=re.escape(named)):
            check_query_tree(TREE.format(inner=inner), DB, TABLES)
    with pytest.raises(UnsafeSqlError, match="currentUser"):
        check_query_tree(TREE.replace("function_name: in,", "function_name: currentUser,").format(
            inner="framelog.quality_switches"), DB, TABLES)
    with pytest.raises(UnsafeSqlError, match="numbers"):
        check_query_tree("QUERY id: 0\n  JOIN TREE\n    TABLE_FUNCTION id: 3, alias: __table1, "
                         "table_function_name: numbers\n", DB, TABLES)


@pytest.mark.integration
def test_the_engines_own_reading_catches_what_the_text_hid(engine):
    """With the text guard bypassed, the engine's EXPLAIN QUERY TREE alone refuses the escapes."""
    cfg, _, analyst, _ = engine
    db = cfg.clickhouse.database

    def tree(sql: str) -> str:
        return "\n".join(r[0] for r in analyst.query(f"EXPLAIN QUERY TREE {sql}").result_rows)

    for sql, named in [("SELECT currentUser", "currentUser"), ("SELECT user", "currentUser"),
                       ("SELECT version()", "version"), ("SELECT count() FROM numbers(3)", "numbers"),
                       ("SELECT count() FROM system.tables", "system.tables"),
                       ("SELECT count() FROM playback_events WHERE video_id IN (SELECT name FROM system.tables)",
                        "system.tables")]:
        with pytest.raises(UnsafeSqlError, match=named):
            check_query_tree(tree(sql), db, TABLES)
    for statement, _ in readme_queries():
        if "{" not in statement:
            check_query_tree(tree(statement), db, TABLES)
