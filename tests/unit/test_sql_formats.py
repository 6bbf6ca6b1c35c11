"""framelog sql --format csv|json|table prints one result three ways (the query itself is stubbed)."""
from __future__ import annotations

import csv
import io
import json

from framelog.cli.main import build_parser
from framelog.clients import sql as sql_client

RESULT = (["video_id", "views", "note"], [["a", 3, 'say "hi", ok'], ["b", 0, None]], False)


def _unused():
    raise AssertionError("the query is stubbed")


def test_csv_json_and_table(monkeypatch, capsys):
    monkeypatch.setattr(sql_client, "_query", lambda *args: RESULT)
    sql_client.run_sql(None, "SELECT 1", connect_readonly=_unused, fmt="csv")
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows == [["video_id", "views", "note"], ["a", "3", 'say "hi", ok'], ["b", "0", ""]]
    sql_client.run_sql(None, "SELECT 1", connect_readonly=_unused, fmt="json")
    assert json.loads(capsys.readouterr().out)["rows"][0] == ["a", 3, 'say "hi", ok']
    sql_client.run_sql(None, "SELECT 1", connect_readonly=_unused)
    assert "(2 rows)" in capsys.readouterr().out


def test_json_flag_is_an_alias():
    args = build_parser().parse_args(["sql", "SELECT 1", "--json"])
    assert args.json and args.format == "table"
    assert build_parser().parse_args(["sql", "SELECT 1", "--format", "csv"]).format == "csv"
