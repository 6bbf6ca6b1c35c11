"""SQL text handling: statement splitting for migrations and the analysts' read-only guard."""
import pytest

from framelog.core.config import load_config
from framelog.sinks.clickhouse.migrations import MigrationError, load_migrations, render, template_values
from framelog.sinks.clickhouse.queries import UnsafeSqlError, check_readonly_sql
from framelog.sinks.clickhouse.sqltext import SqlSyntaxError, split_statements


def test_split_respects_literals_and_comments():
    sql = """
    -- header; with a semicolon
    CREATE TABLE a (x String DEFAULT ';') ENGINE = Memory;
    /* block ; /* nested ; */ still comment ; */
    SELECT 'it''s; fine', "we;ird", `id;ent`, $$ here;doc $$ ;
    # unix comment ;
    ;;
    """
    parts = split_statements(sql)
    assert len(parts) == 2
    assert parts[0].endswith("ENGINE = Memory")
    assert parts[1].startswith("/* block") and parts[1].endswith("$$ here;doc $$")


def test_split_rejects_unterminated_literals():
    for bad in ("SELECT 'abc", "SELECT /* x", 'SELECT "x', "SELECT $$x"):
        with pytest.raises(SqlSyntaxError):
            split_statements(bad)


def test_packaged_migrations_render_with_numbers_only():
    cfg = load_config()
    migrations = load_migrations()
    assert [m.version for m in migrations] == sorted(m.version for m in migrations)
    assert migrations[0].version == 1
    values = template_values(cfg.analytics)
    assert values["raw_events_ttl_days"] == "400"
    assert values["completion_threshold"] == "0.9"
    for m in migrations:
        rendered = render(m.sql, values)
        assert "{{" not in rendered
        assert split_statements(rendered)
    with pytest.raises(MigrationError):
        render("SELECT {{nope}}", values)


@pytest.mark.parametrize("sql", [
    "SELECT 1",
    "  select count() from playback_events where video_id = 'a'  ;  ",
    "WITH 1 AS x SELECT x",
    "EXPLAIN SELECT 1",
    "-- leading comment\nSELECT 1",
    "/* c */ SELECT 'DROP TABLE x'",
])
def test_guard_accepts_single_read_statements(sql):
    assert check_readonly_sql(sql)


@pytest.mark.parametrize("sql", [
    "SELECT 1; SELECT 2",
    "SELECT 1; DROP TABLE playback_events",
    "SELECT 1;; DROP TABLE x;",
    "SELECT ';' ; DROP TABLE x",
    "SELECT 1 -- x\n; DROP TABLE x",
    "SELECT 1 /* ; */ ; INSERT INTO t VALUES (1)",
    "SELECT 1 # c\n; DROP TABLE x",
    "SELECT ';'",                       # any inner ';' is refused outright
    "INSERT INTO playback_events SELECT * FROM playback_events",
    "DROP TABLE playback_events",
    "ALTER TABLE playback_events DELETE WHERE 1",
    "TRUNCATE TABLE playback_events",
    "CREATE TABLE x (a Int8) ENGINE = Memory",
    "SYSTEM STOP MERGES",
    "OPTIMIZE TABLE playback_events FINAL",
    "SET readonly = 0",
    "KILL QUERY WHERE 1",
    "SELECT 1 INTO OUTFILE '/tmp/x'",
    "SELECT 1 into\noutfile '/tmp/x'",
    "/* SELECT */ DELETE FROM playback_events WHERE 1",
    "SELECT 'unterminated",
    "",
    "   ;  ",
    "-- only a comment",
    None,
    "SELECT 1\x00",
    "SHOW TABLES",                      # only SELECT or EXPLAIN of one (tests/security/test_sql_sandbox.py)
    "DESCRIBE TABLE playback_events",
    "desc playback_events",
])
def test_guard_rejects_writes_and_multi_statements(sql):
    with pytest.raises(UnsafeSqlError):
        check_readonly_sql(sql)
