"""Named queries: headers, parameters, read-only execution, and every query's numbers against numpy."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from test_views import (
    GAP_CLOSED,
    WITH_GAPS,
    WITHOUT_GAPS,
    close_floats,
    fetch,
    numpy_without_gaps,
    random_session,
    same_floats,
)

from trackstore import queries
from trackstore.db import data_dir
from trackstore.errors import QueryError, QueryParamError, UnknownQueryError
from trackstore.model import TrackTables
from trackstore.queries import find_params, get_query, list_queries, parse_query, run_query
from trackstore.store import Store

QUERY_FILES = sorted(data_dir("queries").rglob("*.sql"))
SELECTION_PARAMS = {"session_id", "tag_key", "tag_value"}


# ---------------------------------------------------------------------------- data
def _with_groups(t: TrackTables, groups: list[str | None]) -> TrackTables:
    owners = np.array([k for k, g in enumerate(groups) if g is not None], np.int64)
    values = np.array([g for g in groups if g is not None], dtype=object)
    t.add_meta("track", "group", values, owners)
    t.add_meta("track", "sex", np.array(["f"] * t.n_tracks, dtype=object), np.arange(t.n_tracks))
    return t


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Four sessions with tags and track groups, in a store opened read-only for the queries.

    Returns (store, {session_id: (TrackTables, tags)}).
    """
    rng = np.random.default_rng(11)
    specs = [
        (random_session(rng, n_frames=40, n_tracks=5, name="s1"), {"condition": "control", "day": "1"},
         ["fast", None, "fast", "slow", "slow"]),
        (random_session(rng, n_frames=30, n_tracks=4, name="s2", odd_tracks=False, frame_interval=0.1),
         {"condition": "treated", "day": "1"}, ["slow", "slow", "fast", "fast"]),
        (random_session(rng, n_frames=25, n_tracks=3, name="s3", three_d=True, first_frame=-5),
         {"condition": "control", "day": "2"}, [None, "fast", "slow"]),
        (random_session(rng, n_frames=20, n_tracks=3, name="s4", odd_tracks=False), {},
         ["slow", "fast", "fast"]),
    ]
    path = tmp_path_factory.mktemp("queries") / "store.duckdb"
    out = {}
    with Store(path) as w:
        for t, tags, groups in specs:
            _with_groups(t, groups)
            with w.transaction() as conn:
                sid = w.write_session(conn, t, content_hash=uuid.uuid4().hex, tags=tags)
            out[sid] = (t, tags, groups)
    ro = Store(path, read_only=True)
    yield ro, out
    ro.close()


@pytest.fixture
def empty_ro(store_path):
    s = Store(store_path, read_only=True)
    yield s
    s.close()


def by_key(res, *key):
    idx = [res.columns.index(k) for k in key]
    return {tuple(r[i] for i in idx): dict(zip(res.columns, r)) for r in res.rows}


def close(a, b, rtol=1e-9) -> bool:
    if a is None or b is None or (isinstance(b, float) and np.isnan(b)):
        return (a is None or isinstance(a, float) and np.isnan(a)) and (b is None or np.isnan(b))
    return bool(np.isclose(a, b, rtol=rtol, atol=1e-12))


# ---------------------------------------------------------------------------- numpy references
def track_ref(t: TrackTables, k: int) -> dict:
    """Everything the per-track queries report, computed from the TrackTables of one track."""
    p = t.positions
    sel = np.flatnonzero(p["track_id"] == k)
    fr = p["frame"][sel]
    located = p["origin"][sel] != GAP_CLOSED
    time_of = dict(zip(t.frames["frame"].tolist(), t.frames["time"].tolist()))
    r = {"n_positions": len(sel), "n_located": int(located.sum()),
         "first_frame": int(fr.min()) if len(sel) else None, "last_frame": int(fr.max()) if len(sel) else None}
    r["duration"] = time_of[r["last_frame"]] - time_of[r["first_frame"]] if len(sel) else None
    xyz = np.stack([p["x"][sel], p["y"][sel], np.nan_to_num(t.pos("z")[sel])], axis=1)
    tm = np.array([time_of[f] for f in fr])
    d, dt = np.diff(xyz, axis=0), np.diff(tm)
    length = np.linalg.norm(d, axis=1)
    speed = length / dt
    acc = np.linalg.norm(np.diff(d / dt[:, None], axis=0) / ((dt[1:] + dt[:-1]) / 2)[:, None], axis=1)
    r.update(n_steps=len(d), distance=float(length.sum()),
             mean_speed=float(speed.mean()) if len(d) else None,
             median_speed=float(np.median(speed)) if len(d) else None,
             max_speed=float(speed.max()) if len(d) else None,
             mean_abs_acceleration=float(acc.mean()) if len(acc) else None)
    lf = fr[located]
    frames = t.frames["frame"]
    r["n_frames"] = len(frames)
    r["fraction_located"] = len(lf) / len(frames)
    r["loc_first"] = int(lf.min()) if len(lf) else None
    r["loc_last"] = int(lf.max()) if len(lf) else None
    r["n_frames_spanned"] = int(((frames >= lf.min()) & (frames <= lf.max())).sum()) if len(lf) else None
    r["fraction_of_span"] = len(lf) / r["n_frames_spanned"] if len(lf) else None
    # headings: steps of one frame with a length
    one = (np.diff(fr) == 1) & (length > 0)
    r["headings"] = {int(f): d[i] / length[i] for i, f in enumerate(fr[:-1]) if one[i]}
    return r


def selected(data, **f) -> list[int]:
    """The session ids a selection (session_id, tag_key, tag_value) should keep."""
    out = []
    for sid, (_, tags, _) in data.items():
        if f.get("session_id") is not None and sid != f["session_id"]:
            continue
        key, value = f.get("tag_key"), f.get("tag_value")
        if (key is not None or value is not None) and not any(
                (key is None or k == key) and (value is None or v == value) for k, v in tags.items()):
            continue
        out.append(sid)
    return out


SELECTIONS = [
    {},
    {"tag_key": "condition", "tag_value": "control"},
    {"tag_value": "treated"},
    {"tag_key": "day"},
    {"session_id": 3},
    {"session_id": 3, "tag_key": "condition", "tag_value": "treated"},  # contradicts: nothing
]


# ---------------------------------------------------------------------------- headers
@pytest.mark.parametrize("path", QUERY_FILES, ids=lambda p: str(p.relative_to(data_dir("queries"))))
def test_query_header_matches_file(path: Path):
    info = parse_query(path.read_text(encoding="utf-8"), path=path)
    assert info.name == path.stem, "-- name: must equal the file stem"
    assert info.description, "every query needs a -- description:"
    assert info.returns, "every query needs a -- returns:"
    assert set(info.param_names) == set(find_params(info.sql)), "-- params: must list exactly the :binds"
    assert SELECTION_PARAMS <= set(info.param_names), "every query filters by session and tag"
    assert all(p.optional for p in info.params)


@pytest.mark.parametrize("name", [q.name for q in list_queries()])
def test_query_runs_on_empty_store(empty_ro, name):
    res = run_query(empty_ro, name)
    assert res.rows == []
    assert res.columns == list(get_query(name).returns)


@pytest.mark.parametrize("name", [q.name for q in list_queries()])
def test_query_runs_on_data_and_returns_its_header_columns(data, name):
    store, sessions = data
    res = run_query(store, name)
    assert res.columns == list(get_query(name).returns)
    assert len(res.rows) > 0
    arrow = run_query(store, name, arrow=True)
    assert arrow.table.column_names == res.columns and arrow.table.num_rows == len(res.rows)
    # same rows (the last bit of an avg() may differ between two runs: parallel summation order)
    for a, b in zip(arrow.rows, res.rows):
        assert all(close(x, y) if isinstance(y, float) else x == y for x, y in zip(a, b))


@pytest.mark.parametrize("sel", SELECTIONS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "all")
@pytest.mark.parametrize("name", [q.name for q in list_queries() if q.name != "mean_speed_per_group"])
def test_query_session_and_tag_filters(data, name, sel):
    store, sessions = data
    col = "session_id"
    got = {r[0] for r in run_query(store, name, sel).rows} if run_query(store, name, sel).columns[0] == col \
        else None
    assert got is not None
    assert got <= set(selected(sessions, **sel))
    if name in ("track_lengths", "track_coverage", "session_coverage", "track_speed_stats", "distance_travelled"):
        assert got == set(selected(sessions, **sel))  # one row per track / session, even without data


# ---------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("sel", SELECTIONS[:3], ids=["all", "control", "treated"])
def test_track_queries_match_numpy(data, sel):
    store, sessions = data
    lengths = by_key(run_query(store, "track_lengths", sel), "session_id", "track_id")
    speeds = by_key(run_query(store, "track_speed_stats", sel), "session_id", "track_id")
    dist = by_key(run_query(store, "distance_travelled", sel), "session_id", "track_id")
    cover = by_key(run_query(store, "track_coverage", sel), "session_id", "track_id")
    keys = {(sid, k) for sid in selected(sessions, **sel) for k in range(sessions[sid][0].n_tracks)}
    assert set(lengths) == set(speeds) == set(dist) == set(cover) == keys
    for sid, k in sorted(keys):
        t = sessions[sid][0]
        r = track_ref(t, k)
        row = lengths[sid, k]
        assert (row["n_positions"], row["n_located"], row["first_frame"], row["last_frame"]) == \
            (r["n_positions"], r["n_located"], r["first_frame"], r["last_frame"])
        assert close(row["duration"], r["duration"]) and row["name"] == t.tracks["name"][k]
        row = speeds[sid, k]
        assert row["n_steps"] == r["n_steps"]
        for c in ("mean_speed", "median_speed", "max_speed", "mean_abs_acceleration"):
            assert close(row[c], r[c]), (sid, k, c, row[c], r[c])
        assert (row["space_unit"], row["time_unit"]) == ("pixel", "second")
        row = dist[sid, k]
        assert row["n_steps"] == r["n_steps"] and close(row["distance"], r["distance"])
        row = cover[sid, k]
        assert (row["n_frames"], row["n_located"], row["first_frame"], row["last_frame"],
                row["n_frames_spanned"]) == (r["n_frames"], r["n_located"], r["loc_first"], r["loc_last"],
                                             r["n_frames_spanned"])
        assert close(row["fraction_located"], r["fraction_located"])
        assert close(row["fraction_of_span"], r["fraction_of_span"])


def test_session_coverage_matches_numpy(data):
    store, sessions = data
    got = by_key(run_query(store, "session_coverage"), "session_id")
    assert set(got) == {(sid,) for sid in sessions}
    for sid, (t, _, _) in sessions.items():
        p = t.positions
        frames = t.frames["frame"]
        grid = np.zeros((t.n_tracks, len(frames)), bool)
        ok = p["origin"] != GAP_CLOSED
        grid[p["track_id"][ok], np.searchsorted(frames, p["frame"][ok])] = True
        row = got[sid,]
        assert (row["n_frames"], row["n_tracks"], row["n_located"]) == (len(frames), t.n_tracks, grid.sum())
        assert close(row["fraction_located"], grid.mean())
        assert row["n_frames_all_located"] == grid.all(axis=0).sum()
        assert close(row["fraction_frames_all_located"], grid.all(axis=0).mean())
    assert any(r["n_frames_all_located"] > 0 for r in got.values())


def test_nearest_neighbour_distances_match_numpy(data):
    store, sessions = data
    got = by_key(run_query(store, "nearest_neighbour_distances", {"tag_key": "condition"}), "session_id", "frame")
    want = {}
    for sid in selected(sessions, tag_key="condition"):
        t = sessions[sid][0]
        p = t.positions
        ok = p["origin"] != GAP_CLOSED
        xyz = np.stack([p["x"], p["y"], np.nan_to_num(t.pos("z"))], axis=1)[ok]
        fr = p["frame"][ok]
        for f in np.unique(fr):
            pts = xyz[fr == f]
            if len(pts) < 2:
                continue
            d = np.linalg.norm(pts[:, None] - pts[None], axis=2)
            np.fill_diagonal(d, np.inf)
            nn = d.min(axis=1)
            want[sid, int(f)] = (len(pts), nn.mean(), nn.min())
    assert set(got) == set(want) and want
    for key, (n, mean, mn) in want.items():
        row = got[key]
        assert row["n_located"] == n and close(row["mean_nn_distance"], mean) and close(row["min_nn_distance"], mn)


@pytest.mark.parametrize("min_tracks", [None, 1, 3])
def test_group_polarization_matches_numpy(data, min_tracks):
    store, sessions = data
    got = by_key(run_query(store, "group_polarization", {"min_tracks": min_tracks}), "session_id", "frame")
    want = {}
    for sid, (t, _, _) in sessions.items():
        per_frame: dict[int, list] = {}
        for k in range(t.n_tracks):
            for f, u in track_ref(t, k)["headings"].items():
                per_frame.setdefault(f, []).append(u)
        for f, us in per_frame.items():
            if len(us) >= (2 if min_tracks is None else min_tracks):
                want[sid, f] = (len(us), np.linalg.norm(np.mean(us, axis=0)))
    assert set(got) == set(want) and want
    for key, (n, pol) in want.items():
        assert got[key]["n_tracks"] == n and close(got[key]["polarization"], pol)


@pytest.mark.parametrize("sel", [{}, {"tag_key": "day", "tag_value": "1"}], ids=["all", "day1"])
def test_mean_speed_per_group_matches_numpy(data, sel):
    store, sessions = data
    got = by_key(run_query(store, "mean_speed_per_group", sel), "group_name")
    animals: dict[str | None, list] = {}
    sess: dict[str | None, set] = {}
    for sid in selected(sessions, **sel):
        t, _, groups = sessions[sid]
        for k in range(t.n_tracks):
            m = track_ref(t, k)["mean_speed"]
            if m is not None:
                animals.setdefault(groups[k], []).append(m)
                sess.setdefault(groups[k], set()).add(sid)
    assert set(got) == {(g,) for g in animals}
    for g, speeds in animals.items():
        row = got[g,]
        assert row["n_animals"] == len(speeds) and row["n_sessions"] == len(sess[g])
        assert close(row["mean_speed"], np.mean(speeds))
        assert close(row["sd_speed"], np.std(speeds, ddof=1) if len(speeds) > 1 else None)
        assert close(row["min_speed"], min(speeds)) and close(row["max_speed"], max(speeds))
    names = [r[0] for r in run_query(store, "mean_speed_per_group", sel).rows]
    assert None in animals and names[-1] is None and names[:-1] == sorted(names[:-1])  # NULL group last
    other = run_query(store, "mean_speed_per_group", dict(sel, group_key="sex"))
    assert [r[0] for r in other.rows] == ["f"]


# ---------------------------------------------------------------------------- parameters and errors
def test_params_are_converted_from_strings(data):
    store, sessions = data
    a = run_query(store, "track_lengths", {"session_id": "2"}).rows
    b = run_query(store, "track_lengths", {"session_id": 2}).rows
    assert a == b and {r[0] for r in a} == {2}
    assert run_query(store, "group_polarization", {"min_tracks": np.int64(3)}).rows == \
        run_query(store, "group_polarization", {"min_tracks": " 3 "}).rows


@pytest.mark.parametrize("params, words", [
    ({"session_id": "two"}, ["session_id", "int", "track_lengths", "'two'"]),
    ({"session_id": 1.5}, ["session_id", "int"]),
    ({"session_id": True}, ["session_id", "int"]),
    ({"tag_key": 3}, ["tag_key", "str"]),
    ({"sesion_id": 1}, ["sesion_id", "no parameter", "track_lengths"]),
])
def test_bad_params_raise_query_param_error(empty_ro, params, words):
    with pytest.raises(QueryParamError) as e:
        run_query(empty_ro, "track_lengths", params)
    for w in words:
        assert w in str(e.value)
    assert "session_id int (optional)" in e.value.hint


def test_typed_params_of_user_sql(empty_ro):
    sql = "-- params: n int, f float, b bool, s str (optional)\nSELECT :n + 1 AS n, :f * 2 AS f, :b AS b, :s AS s"
    res = run_query(empty_ro, sql, {"n": "41", "f": "1.25", "b": "yes"})
    assert res.rows == [(42, 2.5, True, None)]
    with pytest.raises(QueryParamError, match="needs parameter 'n' \\(int\\)"):
        run_query(empty_ro, sql, {"f": 1.0, "b": False})
    with pytest.raises(QueryParamError, match="'b' expects bool"):
        run_query(empty_ro, sql, {"n": 1, "f": 1.0, "b": "maybe"})
    # without a header, values bind as they are
    assert run_query(empty_ro, "SELECT :a AS a, :b AS b", {"a": 1.5, "b": "x"}).rows == [(1.5, "x")]
    with pytest.raises(QueryParamError, match="needs parameter 'b'"):
        run_query(empty_ro, "SELECT :a AS a, :b AS b", {"a": 1})


def test_write_through_run_query_fails_on_read_only_store(data):
    store, sessions = data
    before = run_query(store, "SELECT count(*) FROM positions").rows
    with pytest.raises(QueryError) as e:
        run_query(store, "DELETE FROM positions")
    assert "read-only" in str(e.value)  # DuckDB's own message is kept
    assert type(e.value.__cause__).__module__.startswith("sqlalchemy")
    assert run_query(store, "SELECT count(*) FROM positions").rows == before
    assert before[0][0] > 0


def test_write_through_run_query_is_rolled_back_on_writable_store(store_path):
    with Store(store_path) as s:
        with s.transaction() as conn:
            s.write_session(conn, random_session(np.random.default_rng(0), n_frames=5, n_tracks=2),
                            content_hash="x")
        before = run_query(s, "SELECT count(*) FROM positions").rows
        run_query(s, "DELETE FROM positions")
        run_query(s, "CREATE TABLE scratch AS SELECT 1 AS a")
        assert run_query(s, "SELECT count(*) FROM positions").rows == before
        with pytest.raises(QueryError, match="scratch"):
            run_query(s, "SELECT * FROM scratch")


def test_db_errors_become_query_errors(empty_ro):
    with pytest.raises(QueryError, match="no_such_table") as e:
        run_query(empty_ro, "SELECT * FROM no_such_table")
    assert not isinstance(e.value, (QueryParamError, UnknownQueryError))
    with pytest.raises(QueryError, match="more than one statement"):
        run_query(empty_ro, "SELECT 1; SELECT 2")
    with pytest.raises(QueryError, match="empty"):
        run_query(empty_ro, "  -- nothing\n")
    with pytest.raises(UnknownQueryError, match="no_such_query"):
        run_query(empty_ro, "no_such_query")


def test_find_params_ignores_casts_strings_and_comments():
    sql = """SELECT CAST(:a AS INTEGER), x::DOUBLE, ':b', "c:d", :e::INTEGER -- :f
             /* :g */ , E'it\\'s :h', $$ :i $$, $t$ :j $t$, l[1:2], :a, (:k)"""
    assert find_params(sql) == ["a", "e", "k"]


def test_colons_that_are_not_binds_survive(empty_ro):
    res = run_query(empty_ro, "SELECT ' :x ' AS a, 2::INTEGER AS b, CAST(:v AS INTEGER)::VARCHAR AS c, "
                              ":w::INTEGER AS d -- :z", {"v": 7, "w": "5"})
    assert res.rows == [(" :x ", 2, "7", 5)]


def test_list_queries_and_dialect_override(tmp_path, monkeypatch):
    names = [q.name for q in list_queries()]
    assert names == sorted(p.stem for p in data_dir("queries").glob("*.sql"))
    (tmp_path / "duckdb").mkdir()
    (tmp_path / "q.sql").write_text("-- name: q\n-- description: portable\n-- returns: a\nSELECT 1 AS a\n")
    (tmp_path / "duckdb" / "q.sql").write_text("-- name: q\n-- description: duck\n-- returns: a\nSELECT 2 AS a\n")
    monkeypatch.setattr(queries, "data_dir", lambda name: tmp_path)
    assert get_query("q").description == "portable"
    assert get_query("q", "duckdb").description == "duck" and get_query("q", "duckdb").dialect == "duckdb"
    assert get_query("q", "postgresql").description == "portable"
    assert [q.description for q in list_queries("duckdb")] == ["duck"]


def test_run_query_uses_the_dialect_variant(empty_ro, tmp_path, monkeypatch):
    (tmp_path / "duckdb").mkdir()
    (tmp_path / "q.sql").write_text("-- name: q\n-- returns: a\nSELECT 1 AS a\n")
    (tmp_path / "duckdb" / "q.sql").write_text("-- name: q\n-- returns: a\nSELECT 2 AS a\n")
    monkeypatch.setattr(queries, "data_dir", lambda name: tmp_path)
    assert run_query(empty_ro, "q").rows == [(2,)]


def test_bad_header_is_reported():
    with pytest.raises(QueryError, match="unknown type 'integer'"):
        parse_query("-- params: n integer\nSELECT :n")
    with pytest.raises(QueryError, match="cannot read parameter"):
        parse_query("-- params: n\nSELECT :n")


# ---------------------------------------------------------------------------- real idtracker.ai samples
IDTRACKERAI_SAMPLES = [
    "animovement-movement-data/trajectories.h5",  # v6.0.0a0, with gap-closed positions
    "animovement-movement-data/trajectories_csv",
    "MoveR_SampleData/2602_ISA3080_Low_5.npy",  # v3, 20 animals, 33 % missing: many link gaps
    "derived-idtrackerai_format-6.0.14/trajectories.npy",
    "aniread-extdata/idtracker.csv",
]


@pytest.fixture(scope="module")
def idtracker_store(tmp_path_factory):
    """Every real idtracker.ai sample in tests/data/idtrackerai, read by the format and stored."""
    it = pytest.importorskip("trackstore.formats.idtrackerai")
    root = Path(__file__).parent / "data" / "idtrackerai"
    path = tmp_path_factory.mktemp("idtrackerai") / "store.duckdb"
    sessions = {}
    with Store(path) as w:
        for i, rel in enumerate(IDTRACKERAI_SAMPLES):
            t = it.read(root / rel)
            with w.transaction() as conn:
                sid = w.write_session(conn, t, content_hash=uuid.uuid4().hex, tags={"sample": str(i)})
            sessions[sid] = t
    ro = Store(path, read_only=True)
    yield ro, sessions
    ro.close()


@pytest.mark.parametrize("name", [q.name for q in list_queries()])
def test_query_runs_on_real_idtrackerai_samples(idtracker_store, name):
    store, sessions = idtracker_store
    res = run_query(store, name)
    assert res.columns == list(get_query(name).returns) and res.rows
    one = run_query(store, name, {"tag_key": "sample", "tag_value": "2"})
    if one.columns[0] == "session_id":
        assert {r[0] for r in one.rows} == {list(sessions)[2]}


def test_real_idtrackerai_samples_against_numpy(idtracker_store):
    store, sessions = idtracker_store
    n_interpolated = 0
    cover = by_key(run_query(store, "session_coverage"), "session_id")
    speeds = by_key(run_query(store, "track_speed_stats"), "session_id", "track_id")
    for sid, t in sessions.items():
        located = t.positions["origin"] != GAP_CLOSED
        grid = fetch(store, WITH_GAPS, sid=sid)
        assert len(grid["frame"]) == len(t.frames["frame"]) * t.n_tracks
        assert int((~np.isnan(grid["x"])).sum()) == located.sum() == cover[sid,]["n_located"]
        assert close(cover[sid,]["fraction_located"], located.sum() / (len(t.frames["frame"]) * t.n_tracks))
        got = fetch(store, WITHOUT_GAPS, sid=sid)
        want = numpy_without_gaps(t)
        assert np.array_equal(got["frame"], want["frame"]) and list(got["origin"]) == list(want["origin"])
        real = want["origin"] != "interpolated"
        n_interpolated += int((~real).sum())
        assert same_floats(got["x"][real], want["x"][real])
        assert close_floats(got["x"][~real], want["x"][~real]) and close_floats(got["y"][~real], want["y"][~real])
        for k in range(t.n_tracks):
            r = track_ref(t, k)
            assert close(speeds[sid, k]["mean_speed"], r["mean_speed"])
            assert close(speeds[sid, k]["mean_abs_acceleration"], r["mean_abs_acceleration"])
    assert n_interpolated > 1000  # the v3 sample has thousands of missing frames inside tracks
