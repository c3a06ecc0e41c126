"""The command line: exit codes, exact error lines on stderr, outputs, read-only SQL."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import examples
from trackstore.cli import app
from trackstore.db import head_revision
from trackstore.store import Store

runner = CliRunner()


@pytest.fixture
def filled(store_path):
    """A store with the canonical examples, tagged by name length parity."""
    with Store(store_path) as s:
        for name, f in examples.ALL.items():
            with s.transaction() as c:
                s.write_session(c, f(), content_hash=name, tags={"group": "odd" if len(name) % 2 else "even"})
    return store_path


def run(*args, **kw):
    return runner.invoke(app, [str(a) for a in args], **kw)


def test_cli_help_lists_every_command():
    r = run("--help")
    assert r.exit_code == 0
    for cmd in ("ingest", "sessions", "info", "query", "queries", "export", "convert", "copy", "formats", "upgrade"):
        assert cmd in r.stdout


def test_cli_sessions_lists_tags(filled):
    r = run("sessions", "--db", filled, "--output", "csv")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("session_id,name,source_format")
    assert len(lines) == 1 + len(examples.ALL)
    assert "division" in r.stdout and "group=even" in r.stdout


def test_cli_query_sql_outputs(filled, tmp_path):
    sql = "SELECT session_id, count(*) AS n FROM positions GROUP BY 1 ORDER BY 1"
    r = run("query", sql, "--db", filled, "--output", "json")
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    with Store(filled) as s:
        expected = {x["session_id"]: x["n_positions"] for x in s.list_sessions() if x["n_positions"]}
    assert {row["session_id"]: row["n"] for row in rows} == expected
    r = run("query", sql, "--db", filled)
    assert r.exit_code == 0 and r.stdout.strip().endswith(f"({len(expected)} rows)")
    out = tmp_path / "r.parquet"
    r = run("query", sql, "--db", filled, "--output", "parquet", "--out", out)
    assert r.exit_code == 0, r.stderr
    import pyarrow.parquet as pq

    assert pq.read_table(out).num_rows == len(expected)


def test_cli_query_cannot_change_the_store(filled):
    r = run("query", "DELETE FROM positions", "--db", filled)
    assert r.exit_code == 1
    assert r.stderr.startswith("Error: ")
    assert "read-only" in r.stderr
    with Store(filled) as s, s.connect() as c:
        assert c.exec_driver_sql("SELECT count(*) FROM positions").scalar() > 0


def test_cli_query_named_with_params(filled):
    r = run("query", "--name", "track_lengths", "--param", "tag_key=group", "--param", "tag_value=even",
            "--db", filled, "--output", "csv")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("session_id")


def test_cli_query_unknown_name_is_one_clear_line(filled):
    r = run("query", "--name", "no_such_query", "--db", filled)
    assert r.exit_code == 1
    first = r.stderr.splitlines()[0]
    assert first.startswith("Error: no query named 'no_such_query' (known: ") and "track_lengths" in first


def test_cli_query_needs_sql_or_name(filled):
    r = run("query", "--db", filled)
    assert r.exit_code == 2


def test_cli_missing_store_says_how_to_create_one(tmp_path):
    r = run("sessions", "--db", tmp_path / "none.duckdb")
    assert r.exit_code == 1
    assert r.stderr.splitlines() == [f"Error: {tmp_path / 'none.duckdb'}: no store here yet",
                                     "Hint: create one with `trackstore ingest PATH`"]


def test_cli_unknown_session(filled, tmp_path):
    r = run("export", "nope", "--format", "parquet", "--out", tmp_path / "x", "--db", filled)
    assert r.exit_code == 1
    assert r.stderr.splitlines()[0] == "Error: no session 'nope' in the store"


def test_cli_info_store_and_session(filled):
    r = run("info", "--db", filled)
    assert r.exit_code == 0, r.stderr
    assert f"schema:    revision {head_revision()}" in r.stdout and f"sessions:  {len(examples.ALL)} rows" in r.stdout
    r = run("info", "division", "--db", filled)
    assert r.exit_code == 0, r.stderr
    assert "n_positions:     7" in r.stdout and "group = even" in r.stdout


def test_cli_export_parquet_lake_and_ingest_it_back(filled, tmp_path):
    r = run("export", "--format", "parquet", "--out", tmp_path / "lake", "--db", filled)
    assert r.exit_code == 0, r.stderr
    other = tmp_path / "other.duckdb"
    r = run("ingest", tmp_path / "lake", "--db", other)
    assert r.exit_code == 0, r.stderr
    assert f"{len(examples.ALL)} ingested" in r.stdout
    r = run("ingest", tmp_path / "lake", "--db", other)
    assert f"{len(examples.ALL)} skipped" in r.stdout


def test_cli_copy_between_stores(filled, tmp_path):
    other = tmp_path / "copy.duckdb"
    r = run("copy", "--from", filled, "--to", other, "--session", "gap")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip().endswith("1 copied, 0 skipped")
    with Store(other) as s:
        assert [x["name"] for x in s.list_sessions()] == ["gap"]


def test_cli_upgrade_new_and_current(tmp_path):
    db = tmp_path / "u.duckdb"
    r = run("upgrade", "--db", db)
    assert r.exit_code == 0 and f"from revision none (new store) to {head_revision()}" in r.stdout
    r = run("upgrade", "--db", db)
    assert r.exit_code == 0 and f"up to date (revision {head_revision()})" in r.stdout


def test_cli_store_from_environment(filled, monkeypatch):
    monkeypatch.setenv("TRACKSTORE_DB", str(filled))
    r = run("sessions", "--output", "csv")
    assert r.exit_code == 0 and "division" in r.stdout


def test_cli_bad_tag_is_a_usage_error(tmp_path):
    r = run("ingest", tmp_path, "--tag", "novalue", "--db", tmp_path / "s.duckdb")
    assert r.exit_code == 2


def test_cli_query_cannot_write_files(filled, tmp_path):
    target = tmp_path / "leak.csv"
    r = run("query", f"COPY (SELECT * FROM positions) TO '{target}'", "--db", filled)
    assert r.exit_code == 1 and r.stderr.startswith("Error: ")
    assert not target.exists()


def test_cli_export_without_gaps_fills_them(store_path, tmp_path):
    with Store(store_path) as s, s.transaction() as c:
        s.write_session(c, examples.gap(), content_hash="gap")
    out = tmp_path / "filled.aut"
    r = run("export", "gap", "--format", "organoidtracker", "--out", out, "--gaps", "without", "--db", store_path)
    assert r.exit_code == 0, r.stderr
    from trackstore.formats import organoidtracker

    back = organoidtracker.read(out)
    assert sorted(back.positions["frame"].tolist()) == [0, 1, 2, 3, 4, 5]  # frames 2 and 3 interpolated
    i = back.positions["frame"].tolist().index(2)
    # a third of the way from frame 1 at (2, 1) to frame 4 at (5, 4)
    assert back.positions["x"][i] == 3.0 and back.positions["y"][i] == 2.0
