"""The SQL views, checked against numpy on random sessions written through the store.

* trajectories_with_gaps: the dense frames x tracks grid, NULL where a track is not located.
* trajectories_without_gaps: real rows + linear interpolation along links that skip frames
  (np.interp on interior gaps), with origin and gap_length.
* track_steps / track_accelerations: per-link geometry against np.diff.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trackstore.model import ORIGIN_CODE, ORIGINS, MetaBlock, SessionInfo, TrackTables
from trackstore.store import Store

OBS, GAP_CLOSED, VALIDATED = ORIGIN_CODE["observed"], ORIGIN_CODE["gap_closed"], ORIGIN_CODE["validated"]


# ---------------------------------------------------------------------------- synthetic sessions
def random_session(rng: np.random.Generator, *, n_frames: int = 60, n_tracks: int = 5, first_frame: int = 0,
                   three_d: bool = False, frame_interval: float = 0.5, name: str = "random",
                   odd_tracks: bool = True) -> TrackTables:
    """A session of ``n_tracks`` animals moving at random, with gaps like idtracker.ai's.

    Every track has a leading and a trailing gap (0-4 frames), interior gaps in runs of 1-6
    frames, some of them filled by the "source tool" (origin gap_closed) and some positions
    marked validated. With ``odd_tracks``, the last track is never located (an identity with no
    positions) and the one before it is located in a single frame. Links chain each track's positions in frame
    order, so a missing run becomes one link that skips frames.
    """
    frames = np.arange(first_frame, first_frame + n_frames, dtype=np.int64)
    cols: dict[str, list] = {k: [] for k in ("frame", "x", "y", "z", "track_id", "origin", "quality")}
    for k in range(n_tracks):
        if odd_tracks and k == n_tracks - 1:
            continue  # never located
        present = np.zeros(n_frames, bool)
        if odd_tracks and k == n_tracks - 2:
            present[rng.integers(n_frames)] = True
        else:
            lead, trail = rng.integers(0, 5, 2)
            present[lead:n_frames - trail] = True
            for _ in range(rng.integers(1, 5)):
                s = rng.integers(lead + 1, max(lead + 2, n_frames - trail - 1))
                present[s:s + rng.integers(1, 7)] = False
        origin = np.full(n_frames, OBS, np.int8)
        # fill some missing frames (not at the edges) with gap_closed positions
        missing = np.flatnonzero(~present)
        inner = missing[(missing > np.argmax(present)) & (missing < n_frames - 1 - np.argmax(present[::-1]))]
        filled = inner[rng.random(len(inner)) < 0.3]
        present[filled] = True
        origin[filled] = GAP_CLOSED
        origin[present & (rng.random(n_frames) < 0.1) & (origin == OBS)] = VALIDATED
        idx = np.flatnonzero(present)
        cols["frame"].append(frames[idx])
        cols["x"].append(rng.normal(0, 10, n_frames).cumsum()[idx])
        cols["y"].append(rng.normal(0, 10, n_frames).cumsum()[idx])
        cols["z"].append(rng.normal(0, 3, n_frames).cumsum()[idx] if three_d else np.full(len(idx), np.nan))
        cols["track_id"].append(np.full(len(idx), k))
        cols["origin"].append(origin[idx])
        q = rng.random(len(idx))
        q[origin[idx] == GAP_CLOSED] = np.nan  # like idtracker.ai: no id probability for filled positions
        cols["quality"].append(q)
    pos = {k: np.concatenate(v) if v else np.empty(0) for k, v in cols.items()}
    pos["frame"] = pos["frame"].astype(np.int64)
    pos["track_id"] = pos["track_id"].astype(np.int64)
    pos["origin"] = pos["origin"].astype(np.int8)
    if not three_d:
        del pos["z"]
    same = pos["track_id"][1:] == pos["track_id"][:-1]
    src = np.flatnonzero(same)
    return TrackTables(
        session=SessionInfo(name=name, source_format="synthetic", space_unit="pixel", time_unit="second",
                            frame_interval=frame_interval),
        frames={"frame": frames, "time": (frames - first_frame) * frame_interval},
        positions=pos,
        tracks={"name": np.array([f"animal {k + 1}" for k in range(n_tracks)], dtype=object),
                "identity": np.array(list(range(1, n_tracks + 1)), dtype=object),
                "lineage_id": np.arange(n_tracks, dtype=np.int64)},
        links={"source_id": src.astype(np.int64), "target_id": (src + 1).astype(np.int64)},
    )


def write(store: Store, t: TrackTables, tags: dict[str, str] | None = None) -> int:
    with store.transaction() as conn:
        return store.write_session(conn, t, content_hash=uuid.uuid4().hex, tags=tags)


def fetch(store: Store, sql: str, **params) -> dict[str, np.ndarray]:
    """Rows of ``sql`` as columns: int columns as int64, numeric ones with NULLs as float (NULL -> NaN),
    others as objects."""
    with store.connect() as conn:
        res = conn.execute(sa.text(sql), params)
        keys = list(res.keys())
        rows = res.fetchall()
    out = {}
    for i, k in enumerate(keys):
        vals = [r[i] for r in rows]
        if vals and all(type(v) is int for v in vals):
            out[k] = np.array(vals, dtype=np.int64)
        elif all(v is None or isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            out[k] = np.array([np.nan if v is None else v for v in vals], dtype=np.float64)
        else:
            out[k] = np.array(vals, dtype=object)
    return out


# ---------------------------------------------------------------------------- numpy references
def numpy_with_gaps(t: TrackTables) -> dict[str, np.ndarray]:
    """The dense grid, tracks outer and frames inner: located = origin not gap_closed."""
    frames = t.frames["frame"]
    nt = t.n_tracks
    p = t.positions
    grid = {k: np.full((nt, len(frames)), np.nan) for k in ("x", "y", "z", "quality", "position_id")}
    ok = p["origin"] != GAP_CLOSED
    col = np.searchsorted(frames, p["frame"][ok])
    row = p["track_id"][ok]
    grid["x"][row, col] = p["x"][ok]
    grid["y"][row, col] = p["y"][ok]
    grid["z"][row, col] = t.pos("z")[ok]
    grid["quality"][row, col] = t.pos("quality")[ok]
    grid["position_id"][row, col] = np.flatnonzero(ok)
    origin = np.full((nt, len(frames)), None, dtype=object)
    origin[row, col] = np.array(ORIGINS, dtype=object)[p["origin"][ok]]
    out = {k: v.ravel() for k, v in grid.items()}
    out["origin"] = origin.ravel()
    out["track_id"] = np.repeat(np.arange(nt), len(frames)).astype(float)
    out["frame"] = np.tile(frames, nt).astype(float)
    return out


def numpy_without_gaps(t: TrackTables) -> dict[str, np.ndarray]:
    """Every position of a track, plus np.interp over each interior run of missing frames."""
    p = t.positions
    rows: dict[str, list] = {k: [] for k in ("track_id", "frame", "x", "y", "z", "origin", "gap_length")}
    for k in range(t.n_tracks):
        sel = np.flatnonzero(p["track_id"] == k)
        if not len(sel):
            continue
        fp = p["frame"][sel]
        allf = np.arange(fp[0], fp[-1] + 1)
        miss = np.setdiff1d(allf, fp)
        nxt = np.searchsorted(fp, miss)
        gap = fp[nxt] - fp[nxt - 1] - 1
        rows["track_id"] += [k] * (len(sel) + len(miss))
        rows["frame"] += list(fp) + list(miss)
        for c in ("x", "y", "z"):
            v = t.pos(c)[sel]
            rows[c] += list(v) + list(np.interp(miss, fp, v))
        rows["origin"] += [ORIGINS[o] for o in p["origin"][sel]] + ["interpolated"] * len(miss)
        rows["gap_length"] += [0] * len(sel) + list(gap)
    out = {k: np.array(v, dtype=object if k == "origin" else float) for k, v in rows.items()}
    order = np.lexsort((out["frame"], out["track_id"]))
    return {k: v[order] for k, v in out.items()}


def same_floats(a, b) -> bool:
    """Bit-equal floats with NaN == NaN."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


def close_floats(a, b, rtol=1e-12) -> bool:
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = np.nanmax(np.abs(np.concatenate([a, b]))) if len(a) and not np.all(np.isnan(a)) else 1.0
    # a relative tolerance of subnormal values underflows to 0, while one rounding step there is
    # 5e-324 (hypothesis found interpolating 0 -> 5e-324); below 1e-300 compare absolutely
    atol = max(rtol * scale, 1e-300)
    return a.shape == b.shape and bool(np.all(np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True)))


WITH_GAPS = "SELECT * FROM trajectories_with_gaps WHERE session_id = :sid ORDER BY track_id, frame"
WITHOUT_GAPS = "SELECT * FROM trajectories_without_gaps WHERE session_id = :sid ORDER BY track_id, frame"


# ---------------------------------------------------------------------------- tests
@pytest.fixture
def sessions(store):
    """Three random sessions (2D; 3D; frames starting at -10) and their ids."""
    rng = np.random.default_rng(7)
    ts = [random_session(rng, name="a"),
          random_session(rng, n_frames=40, n_tracks=4, three_d=True, name="b"),
          random_session(rng, n_frames=50, n_tracks=6, first_frame=-10, frame_interval=0.04, name="c")]
    return [(write(store, t), t) for t in ts]


def test_views_exist_after_migration(store):
    names = set(fetch(store, "SELECT table_name FROM information_schema.tables "
                             "WHERE table_type = 'VIEW'")["table_name"])
    assert {"session_tags", "trajectories_with_gaps", "trajectories_without_gaps", "track_steps",
            "track_accelerations"} <= names


def test_with_gaps_grid_matches_numpy(store, sessions):
    for sid, t in sessions:
        got = fetch(store, WITH_GAPS, sid=sid)
        want = numpy_with_gaps(t)
        assert len(got["frame"]) == len(t.frames["frame"]) * t.n_tracks
        for c in ("track_id", "frame", "x", "y", "z", "quality", "position_id"):
            assert same_floats(got[c], want[c]), c
        assert list(got["origin"]) == list(want["origin"])
        assert np.array_equal(got["time"], np.tile(t.frames["time"], t.n_tracks))
        # the identity never located is all NULL; gap_closed positions are NULL too
        last = got["track_id"] == t.n_tracks - 1
        assert np.isnan(got["x"][last]).all() and last.sum() == len(t.frames["frame"])
        n_located = int((t.positions["origin"] != GAP_CLOSED).sum())
        assert int((~np.isnan(got["x"])).sum()) == n_located


def test_without_gaps_matches_numpy_interp(store, sessions):
    for sid, t in sessions:
        got = fetch(store, WITHOUT_GAPS, sid=sid)
        want = numpy_without_gaps(t)
        assert np.array_equal(got["track_id"], want["track_id"])
        assert np.array_equal(got["frame"], want["frame"])
        assert list(got["origin"]) == list(want["origin"])
        assert np.array_equal(got["gap_length"], want["gap_length"])
        real = want["origin"] != "interpolated"
        for c in ("x", "y", "z"):
            assert same_floats(got[c][real], want[c][real]), c  # stored rows: exact
            assert close_floats(got[c][~real], want[c][~real]), c  # np.interp, to rounding
        assert np.isnan(got["position_id"][~real]).all() and np.isnan(got["quality"][~real]).all()
        assert (~np.isnan(got["link_id"][~real])).all() and np.isnan(got["link_id"][real]).all()
        assert (~real).any() and (want["origin"] == "gap_closed").any()


def test_without_gaps_fills_exactly_the_interior_null_cells(store, sessions):
    """Interpolated rows = NULL cells of the grid strictly inside a track's positions, minus gap_closed ones."""
    for sid, _ in sessions:
        holes = fetch(store, """
            SELECT w.track_id, w.frame FROM trajectories_with_gaps AS w
            WHERE w.session_id = :sid AND w.x IS NULL
              AND w.frame > (SELECT min(frame) FROM positions p WHERE p.session_id = :sid AND p.track_id = w.track_id)
              AND w.frame < (SELECT max(frame) FROM positions p WHERE p.session_id = :sid AND p.track_id = w.track_id)
              AND NOT EXISTS (SELECT 1 FROM positions p WHERE p.session_id = :sid AND p.track_id = w.track_id
                              AND p.frame = w.frame)
            ORDER BY 1, 2""", sid=sid)
        filled = fetch(store, "SELECT track_id, frame FROM trajectories_without_gaps WHERE session_id = :sid "
                              "AND origin = 'interpolated' ORDER BY 1, 2", sid=sid)
        assert np.array_equal(holes["track_id"], filled["track_id"])
        assert np.array_equal(holes["frame"], filled["frame"])


def test_without_gaps_max_gap_filter(store, sessions):
    sid, t = sessions[0]
    want = numpy_without_gaps(t)
    got = fetch(store, "SELECT track_id, frame, origin, gap_length FROM trajectories_without_gaps "
                       "WHERE session_id = :sid AND gap_length <= :g ORDER BY track_id, frame", sid=sid, g=2)
    keep = want["gap_length"] <= 2
    assert np.array_equal(got["frame"], want["frame"][keep])
    assert (got["origin"] == "interpolated").sum() == ((want["origin"] == "interpolated") & keep).sum() > 0


def test_without_gaps_division_and_merge_tracks(store):
    """A daughter first seen 3 frames after the division is interpolated in the daughter's track;
    two tracks merging after a gap are interpolated in their own tracks.

        division:  mother 0 -- 1 -- 2 ---------- 5 -- 6   (daughter A, track 1, from frame 5)
                                     \\-- 3 -- 4           (daughter B, track 2, no gap)
        merge:     track 3  10 ·········· 13 (track 5, merged)
                   track 4  10 ····· 12 /
    """
    frame = [0, 1, 2, 5, 6, 3, 4, 10, 10, 13, 12]
    x = [0.0, 1.0, 2.0, 8.0, 9.0, 3.0, 4.0, 0.0, 10.0, 6.0, 8.0]
    y = [0.0, 0.0, 0.0, 3.0, 3.0, -1.0, -2.0, 0.0, 0.0, 3.0, 2.0]
    track = [0, 0, 0, 1, 1, 2, 2, 3, 4, 5, 4]
    src = [0, 1, 2, 3, 2, 5, 7, 8, 10]
    dst = [1, 2, 3, 4, 5, 6, 9, 10, 9]
    t = TrackTables.from_columns(frame=frame, x=x, y=y, track_id=track, links=(src, dst),
                                 session=SessionInfo(name="div", source_format="synthetic", frame_interval=1.0))
    t.tracks = {"lineage_id": np.array([0, 0, 0, 1, 1, 1])}
    t.frames = {"frame": np.arange(14), "time": np.arange(14.0)}
    sid = write(store, t)
    got = fetch(store, "SELECT track_id, frame, x, y, gap_length, link_id FROM trajectories_without_gaps "
                       "WHERE session_id = :sid AND origin = 'interpolated' ORDER BY track_id, frame", sid=sid)
    rows = list(zip(*(got[k].tolist() for k in ("track_id", "frame", "x", "y", "gap_length", "link_id"))))
    assert rows == [
        (1, 3, 4.0, 1.0, 2, 2), (1, 4, 6.0, 2.0, 2, 2),  # mother (2, 0) -> daughter A (8, 3), frame_gap 3
        (3, 11, 2.0, 1.0, 2, 6), (3, 12, 4.0, 2.0, 2, 6),  # merge: track 3 keeps its own rows
        (4, 11, 9.0, 1.0, 1, 7),  # track 4's own gap 10 -> 12 (same track)
    ]
    # no (track, frame) appears twice
    allrows = fetch(store, "SELECT track_id, frame FROM trajectories_without_gaps WHERE session_id = :sid", sid=sid)
    pairs = list(zip(allrows["track_id"], allrows["frame"]))
    assert len(pairs) == len(set(pairs))


def test_track_steps_and_accelerations_match_numpy(store, sessions):
    for sid, t in sessions:
        steps = fetch(store, "SELECT * FROM track_steps WHERE session_id = :sid ORDER BY track_id, frame", sid=sid)
        acc = fetch(store, "SELECT * FROM track_accelerations WHERE session_id = :sid ORDER BY track_id, frame",
                    sid=sid)
        p = t.positions
        time_of = dict(zip(t.frames["frame"].tolist(), t.frames["time"].tolist()))
        want_speed, want_len, want_acc, want_gap = [], [], [], []
        for k in range(t.n_tracks):
            sel = np.flatnonzero(p["track_id"] == k)
            if len(sel) < 2:
                continue
            xyz = np.stack([p["x"][sel], p["y"][sel], np.nan_to_num(t.pos("z")[sel])], axis=1)
            tm = np.array([time_of[f] for f in p["frame"][sel]])
            d = np.diff(xyz, axis=0)
            dt = np.diff(tm)
            v = d / dt[:, None]
            want_len += list(np.linalg.norm(d, axis=1))
            want_speed += list(np.linalg.norm(d, axis=1) / dt)
            want_gap += list(np.diff(p["frame"][sel]))
            a = np.diff(v, axis=0) / ((dt[1:] + dt[:-1]) / 2)[:, None]
            want_acc += list(np.linalg.norm(a, axis=1))
        assert close_floats(steps["step_length"], want_len)
        assert close_floats(steps["speed"], want_speed, rtol=1e-9)
        assert np.array_equal(steps["frame_gap"], want_gap)
        assert close_floats(acc["acceleration"], want_acc, rtol=1e-9)


def test_session_tags_view(store):
    rng = np.random.default_rng(1)
    a = write(store, random_session(rng, n_frames=5, n_tracks=2), tags={"condition": "control", "day": "1"})
    b = write(store, random_session(rng, n_frames=5, n_tracks=2))
    got = fetch(store, "SELECT session_id, key, value FROM session_tags ORDER BY session_id, key")
    assert list(zip(got["session_id"], got["key"], got["value"])) == [(a, "condition", "control"), (a, "day", "1")]
    assert b not in got["session_id"]


# ---------------------------------------------------------------------------- property test
@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("prop") / "store.duckdb"
    s = Store(path)
    with s.transaction():
        pass
    yield s
    s.close()


@st.composite
def track_sets(draw):
    """Small sessions: per track a frame mask, coordinates (any finite float), origins, NaN qualities."""
    n_frames = draw(st.integers(1, 12))
    n_tracks = draw(st.integers(1, 4))
    first = draw(st.integers(-5, 5))
    coord = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64)
    cols: dict[str, list] = {k: [] for k in ("frame", "x", "y", "track_id", "origin", "quality", "native_id")}
    for k in range(n_tracks):
        mask = draw(st.lists(st.booleans(), min_size=n_frames, max_size=n_frames))
        for f in np.flatnonzero(mask):
            cols["frame"].append(first + int(f))
            cols["x"].append(draw(coord))
            cols["y"].append(draw(coord))
            cols["track_id"].append(k)
            cols["origin"].append(draw(st.sampled_from([OBS, OBS, GAP_CLOSED, VALIDATED])))
            cols["quality"].append(draw(st.one_of(st.just(np.nan), st.floats(0, 1))))
            cols["native_id"].append(draw(st.integers(-(2**62), 2**62)))
    pos = {"frame": np.array(cols["frame"], np.int64), "x": np.array(cols["x"], float),
           "y": np.array(cols["y"], float), "track_id": np.array(cols["track_id"], np.int64),
           "origin": np.array(cols["origin"], np.int8), "quality": np.array(cols["quality"], float),
           "native_id": np.array(cols["native_id"], np.int64)}
    same = pos["track_id"][1:] == pos["track_id"][:-1]
    src = np.flatnonzero(same)
    frames = np.arange(first, first + n_frames, dtype=np.int64)
    t = TrackTables(session=SessionInfo(name="prop", source_format="synthetic", frame_interval=1.0),
                    frames={"frame": frames, "time": frames.astype(float)}, positions=pos,
                    tracks={"lineage_id": np.arange(n_tracks, dtype=np.int64)},
                    links={"source_id": src, "target_id": src + 1})
    t.metadata.append(MetaBlock("track", "group", np.array(["g"] * n_tracks, dtype=object), np.arange(n_tracks)))
    return t


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(t=track_sets())
def test_views_property_roundtrip(shared_store, t):
    sid = write(shared_store, t)
    got = fetch(shared_store, WITH_GAPS, sid=sid)
    want = numpy_with_gaps(t)
    assert len(got["frame"]) == len(t.frames["frame"]) * t.n_tracks
    for c in ("track_id", "frame", "x", "y", "quality", "position_id"):
        assert same_floats(got[c], want[c]), c
    assert np.isnan(got["z"]).all()  # 2D: z is NULL, not NaN or 0
    native = fetch(shared_store, "SELECT native_id FROM positions WHERE session_id = :sid ORDER BY position_id",
                   sid=sid)["native_id"]
    assert native.tolist() == t.positions["native_id"].tolist()
    got = fetch(shared_store, WITHOUT_GAPS, sid=sid)
    want = numpy_without_gaps(t)
    assert np.array_equal(got["frame"], want["frame"]) and np.array_equal(got["track_id"], want["track_id"])
    assert list(got["origin"]) == list(want["origin"])
    assert np.array_equal(got["gap_length"], want["gap_length"])
    real = want["origin"] != "interpolated"
    for c in ("x", "y"):
        assert same_floats(got[c][real], want[c][real])
        assert close_floats(got[c][~real], want[c][~real], rtol=1e-11)
