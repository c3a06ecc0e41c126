"""Ingest through the CLI on the real idtracker.ai samples: discovery, idempotency, tags, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trackstore.cli import app
from trackstore.formats import idtrackerai
from trackstore.model import compare_tables
from trackstore.store import Store

DATA = Path(__file__).parent / "data" / "idtrackerai"
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def lab(tmp_path) -> Path:
    """A lab folder: two experiments, sessions nested at different depths, plus unrelated files."""
    root = tmp_path / "lab"
    (root / "exp1" / "day1").mkdir(parents=True)
    (root / "exp2").mkdir(parents=True)
    shutil.copy(DATA / "MoveR_SampleData" / "2602_ISA3080_Low_5.npy", root / "exp1" / "day1")
    shutil.copytree(DATA / "animovement-movement-data", root / "exp2" / "session_fish")
    (root / "exp1" / "notes.txt").write_text("not tracking data")
    (root / "exp2" / "plot.png").write_bytes(b"\x89PNG")
    return root


def test_ingest_finds_sessions_recursively_and_tags_them(lab, tmp_path):
    db = tmp_path / "s.duckdb"
    r = run("ingest", lab, "--db", db, "--tag", "lab=demo", "--tag", "group=control")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "2 ingested, 0 replaced, 0 skipped (already stored), 0 failed"
    with Store(db) as s:
        rows = s.list_sessions()
    assert sorted(x["name"] for x in rows) == ["2602_ISA3080_Low_5", "session_fish"]
    assert all(x["tags"] == {"lab": "demo", "group": "control"} for x in rows)
    assert sum(x["n_positions"] for x in rows) == 161141 + 4057


def test_ingest_same_content_twice_is_skipped_and_replace_reimports(lab, tmp_path):
    db = tmp_path / "s.duckdb"
    assert run("ingest", lab, "--db", db).exit_code == 0
    r = run("ingest", lab, "--db", db)
    assert r.exit_code == 0 and "0 ingested, 0 replaced, 2 skipped" in r.stdout
    # a copy elsewhere is the same content: skipped too
    shutil.copytree(lab / "exp2" / "session_fish", tmp_path / "copy_of_fish")
    r = run("ingest", tmp_path / "copy_of_fish", "--db", db)
    assert "1 skipped" in r.stdout
    with Store(db) as s:
        before = {x["name"]: x["session_id"] for x in s.list_sessions()}
    r = run("ingest", lab, "--db", db, "--replace")
    assert r.exit_code == 0 and "0 ingested, 2 replaced, 0 skipped" in r.stdout
    with Store(db) as s:
        after = {x["name"]: x["session_id"] for x in s.list_sessions()}
    assert after == before  # replaced in place: the ids users refer to stay valid


def test_ingest_changed_file_at_same_path_is_new_unless_replace(lab, tmp_path):
    db = tmp_path / "s.duckdb"
    f = lab / "exp1" / "day1" / "2602_ISA3080_Low_5.npy"
    assert run("ingest", f, "--db", db).exit_code == 0
    d = np.load(f, allow_pickle=True).item()  # the trusted sample, to make a changed version
    d["trajectories"][0, 0] = [1.0, 2.0]
    np.save(f, d, allow_pickle=True)
    r = run("ingest", f, "--db", db, "--replace")
    assert r.exit_code == 0 and "1 replaced" in r.stdout
    with Store(db) as s:
        rows = s.list_sessions()
        assert len(rows) == 1
        t = s.read_session(rows[0]["session_id"])
    i = np.flatnonzero((t.positions["frame"] == 0) & (t.positions["track_id"] == 0))
    assert t.positions["x"][i].tolist() == [1.0] and t.positions["y"][i].tolist() == [2.0]


def test_ingest_glob_patterns(lab, tmp_path):
    db = tmp_path / "s.duckdb"
    r = run("ingest", str(lab / "exp*" / "**" / "*.npy"), "--db", db)
    assert r.exit_code == 0, r.stderr
    assert "1 ingested" in r.stdout
    r = run("ingest", str(lab / "nothing*"), "--db", db)
    assert r.exit_code == 1 and "no file matches this pattern" in r.stderr


def test_ingest_export_gives_back_the_session(tmp_path):
    db = tmp_path / "s.duckdb"
    src = DATA / "animovement-movement-data"
    assert run("ingest", src, "--db", db).exit_code == 0
    r = run("export", "animovement-movement-data", "--format", "idtrackerai", "--out", tmp_path / "back", "--db", db)
    assert r.exit_code == 0, r.stderr
    for rel in ("trajectories_csv/trajectories.csv", "trajectories_csv/id_probabilities.csv",
                "trajectories_csv/attributes.json"):
        assert (tmp_path / "back" / rel).read_bytes() == (src / rel).read_bytes(), rel
    assert compare_tables(idtrackerai.read(src), idtrackerai.read(tmp_path / "back")) == []
    r = run("export", "animovement-movement-data", "--format", "idtrackerai", "--out", tmp_path / "back", "--db", db)
    assert r.exit_code == 1 and "already exists" in r.stderr and "--overwrite" in r.stderr


@pytest.fixture
def bad_lab(lab) -> Path:
    """The lab plus a truncated npy in a third experiment (sorted last)."""
    (lab / "exp3").mkdir()
    good = (lab / "exp1" / "day1" / "2602_ISA3080_Low_5.npy").read_bytes()
    (lab / "exp3" / "broken.npy").write_bytes(good[: len(good) // 3])
    return lab


def test_ingest_bad_file_one_error_line_and_no_trace(bad_lab, tmp_path):
    db = tmp_path / "s.duckdb"
    r = run("ingest", bad_lab, "--db", db)
    assert r.exit_code == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and str(bad_lab / "exp3" / "broken.npy") in errors[0]
    assert r.stderr.count(str(bad_lab / "exp3" / "broken.npy")) == 1  # said once, not also as a progress line
    with Store(db) as s:
        names = sorted(x["name"] for x in s.list_sessions())
        with s.connect() as c:
            stray = c.exec_driver_sql("SELECT count(*) FROM positions WHERE session_id NOT IN "
                                      "(SELECT session_id FROM sessions)").scalar()
    assert names == ["2602_ISA3080_Low_5", "session_fish"]  # the sessions before it are kept
    assert stray == 0


def test_ingest_keep_going_reports_failures_at_the_end(bad_lab, tmp_path):
    db = tmp_path / "s.duckdb"
    r = run("ingest", bad_lab, "--db", db, "--keep-going")
    assert r.exit_code == 1
    assert "2 ingested, 0 replaced, 0 skipped (already stored), 1 failed" in r.stdout
    assert "failed" in r.stderr and "broken.npy" in r.stderr
    assert r.stderr.count(str(bad_lab / "exp3" / "broken.npy")) == 1  # the path once per failure


def test_ingest_unknown_file_is_refused_with_hint(tmp_path):
    f = tmp_path / "data.bin"
    f.write_bytes(b"\x00" * 100)
    r = run("ingest", f, "--db", tmp_path / "s.duckdb")
    assert r.exit_code == 1
    assert r.stderr.splitlines() == [f"Error: {f}: not a file or folder of any supported format",
                                     "Hint: pass --format NAME (see `trackstore formats`)"]
    assert not (tmp_path / "s.duckdb").exists()


def test_ingest_malicious_pickle_runs_nothing(tmp_path):
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    body = pickle.dumps({"trajectories": Evil()}, protocol=3)
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (), }"
    header += b" " * (118 - len(header) - 1) + b"\n"
    f = tmp_path / "session_evil" / "trajectories" / "trajectories.npy"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + body)
    r = run("ingest", f, "--db", tmp_path / "s.duckdb")
    assert r.exit_code == 1
    assert "posix.system" in r.stderr or "os.system" in r.stderr
    assert not marker.exists()


def test_ingest_reads_without_huge_page_advice_and_restores_it(store, monkeypatch):
    """numpy's huge-page advice is off while a session is read and written (see trackstore._pages), then restored."""
    import importlib

    import examples
    from trackstore import _pages

    ingest_mod = importlib.import_module("trackstore.ingest")

    class _Fake:
        NAME = "idtrackerai"

    if _pages.huge_pages_enabled() is None:
        pytest.fail("this numpy has no huge-page switch; trackstore._pages needs updating")
    seen = []

    def fake_read(path, module, **kw):
        seen.append(_pages.huge_pages_enabled())
        return examples.linear(), []

    before = _pages.huge_pages_enabled()
    monkeypatch.setattr(ingest_mod, "read_path", fake_read)
    monkeypatch.setattr(ingest_mod.formats, "discover", lambda paths, fmt: [(Path("x.npy"), _Fake)])
    reps = ingest_mod.ingest(store, ["x.npy"])
    assert reps[0].status == "ingested" and seen == [False]
    assert _pages.huge_pages_enabled() is before


def test_ingest_of_one_format_imports_only_that_format(tmp_path, data_dir):
    """``--format organoidtracker`` must not pay for tifffile (CTC), lxml (TrackMate) or the lake's
    pyarrow.parquet: each costs tens of ms at every ingest."""
    import json
    import subprocess
    import sys

    aut = next((data_dir / "organoidtracker").rglob("*.aut"))
    code = (
        "import sys, json\n"
        "from trackstore import open_store, ingest\n"
        "from trackstore.formats import list_formats\n"
        f"with open_store({str(tmp_path / 's.duckdb')!r}) as s:\n"
        f"    rep = ingest(s, [{str(aut)!r}], fmt='organoidtracker')[0]\n"
        "mods = sorted(m for m in sys.modules\n"
        "              if m.startswith('trackstore.formats.') and not m.split('.')[-1].startswith('_'))\n"
        "print(json.dumps({'status': rep.status, 'mods': mods, 'parquet': 'pyarrow.parquet' in sys.modules,\n"
        "                  'order': list(list_formats())}))\n"
    )
    out = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    assert out["status"] == "ingested"
    assert out["mods"] == ["trackstore.formats.organoidtracker"]
    assert not out["parquet"]
    # loading the rest later keeps the registry in its documented order
    assert out["order"] == ["idtrackerai", "organoidtracker", "trackmate", "ctc", "geff", "paraview_csv"]
