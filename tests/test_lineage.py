"""Lineage views and queries, checked against a plain-Python walk of the same sessions.

Real lineages (OrganoidTracker's AUT of the C. elegans CTC ground truth, the synthetic files with
divisions and merges) and the format-free canonical examples are stored, then every view row and
the named queries are compared with what the links say.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from pathlib import Path

import numpy as np
import pytest

import examples
from trackstore.formats import organoidtracker as ot
from trackstore.model import TrackTables
from trackstore.queries import run_query
from trackstore.store import Store

DATA = Path(__file__).parent / "data" / "organoidtracker"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "organoidtracker"
FILES = ["Fluo-N3DH-CE_01_GT.t0-39.aut", "small_v2.aut", "tiny_v1.aut", "wide_time_points_division_merge.aut",
         "WKS216_xy002_FRAP.t0-19.aut", "kitchen_sink.saved_by_organoidtracker.aut"]


def sessions() -> dict[str, TrackTables]:
    out = {name: ot.read(DATA / name) for name in FILES}
    for name in ("division", "merge", "three_d", "singleton", "gap"):
        out[name] = examples.ALL[name]()
    return out


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """Every session in one store; returns (read-only store, {session_id: (name, TrackTables)})."""
    path = tmp_path_factory.mktemp("lineage") / "store.duckdb"
    ids = {}
    with Store(path) as w:
        for name, t in sessions().items():
            with w.transaction() as c:
                sid = w.write_session(c, t, content_hash=uuid.uuid4().hex, tags={"name": name})
            ids[sid] = (name, t)
    ro = Store(path, read_only=True)
    yield ro, ids
    ro.close()


# ---------------------------------------------------------------------------- the reference
class Ref:
    """Tracklet relations of one session, computed in Python from positions and links."""

    def __init__(self, t: TrackTables):
        tr = t.positions["track_id"]
        f = t.positions["frame"]
        s, d = t.links["source_id"], t.links["target_id"]
        self.tracks = sorted({int(k) for k in tr if k >= 0})
        self.first = {k: int(f[tr == k].min()) for k in self.tracks}
        self.last = {k: int(f[tr == k].max()) for k in self.tracks}
        self.n = {k: int((tr == k).sum()) for k in self.tracks}
        self.parents = {k: set() for k in self.tracks}
        self.children = {k: set() for k in self.tracks}
        self.n_links = 0
        for a, b in zip(tr[s].tolist(), tr[d].tolist()):
            if a >= 0 and b >= 0 and a != b:
                self.children[a].add(b)
                self.parents[b].add(a)
                self.n_links += 1
        self.time = dict(zip(t.frames["frame"].tolist(), t.frames["time"].tolist()))
        self.lineage = {k: int(t.tracks["lineage_id"][k]) for k in self.tracks}
        self.xyz = {k: (t.positions["x"][(tr == k) & (f == self.last[k])][0],
                        t.positions["y"][(tr == k) & (f == self.last[k])][0]) for k in self.tracks}
        # generation: divisions from a root, the smallest over all paths (merges)
        self.gen = {}
        todo = deque((k, 0) for k in self.tracks if not self.parents[k])
        while todo:
            k, g = todo.popleft()
            if k in self.gen and self.gen[k] <= g:
                continue
            self.gen[k] = g
            step = 1 if len(self.children[k]) >= 2 else 0
            todo.extend((c, g + step) for c in self.children[k])

    def start(self, k: int) -> str:
        p = self.parents[k]
        if not p:
            return "root"
        if len(p) >= 2:
            return "merge"
        return "division" if len(self.children[next(iter(p))]) >= 2 else "continuation"

    def fate(self, k: int) -> str:
        c = self.children[k]
        if len(c) >= 2:
            return "divides"
        if len(c) == 1:
            return "merges" if len(self.parents[next(iter(c))]) >= 2 else "continues"
        return "ends"

    def cycle(self, k: int):
        if self.start(k) == "division" and self.fate(k) == "divides":
            born = min(self.first[c] for c in self.children[k])
            return self.last[k] - self.first[k] + 1, self.time[born] - self.time[self.first[k]]
        return None, None

    def walk(self, k: int, down: bool) -> dict[int, int]:
        dist, todo = {k: 0}, deque([k])
        while todo:
            a = todo.popleft()
            for b in (self.children if down else self.parents)[a]:
                if b not in dist:
                    dist[b] = dist[a] + 1
                    todo.append(b)
        return dist


def rows(store, sql_or_name, params=None) -> list[dict]:
    return run_query(store, sql_or_name, params or {}).to_dicts()


def same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    return a == b


# ---------------------------------------------------------------------------- views
def test_lineage_tracklet_summary_matches_python(stored):
    store, ids = stored
    got = rows(store, "SELECT * FROM tracklet_summary")
    assert got
    for sid, (name, t) in ids.items():
        ref = Ref(t)
        mine = {r["track_id"]: r for r in got if r["session_id"] == sid}
        assert sorted(mine) == ref.tracks, name
        for k, r in mine.items():
            c_frames, c_time = ref.cycle(k)
            want = {"first_frame": ref.first[k], "last_frame": ref.last[k], "n_positions": ref.n[k],
                    "n_parents": len(ref.parents[k]), "n_children": len(ref.children[k]),
                    "parent_track_id": next(iter(ref.parents[k])) if len(ref.parents[k]) == 1 else None,
                    "child_track_ids": sorted(ref.children[k]) or None, "start_kind": ref.start(k),
                    "fate": ref.fate(k), "generation": ref.gen[k], "cycle_frames": c_frames,
                    "lineage_id": ref.lineage[k], "first_time": ref.time[ref.first[k]]}
            for col, v in want.items():
                g = list(r[col]) if col == "child_track_ids" and r[col] is not None else r[col]
                assert same(g, v), (name, k, col, g, v)
            assert same(r["cycle_time"], c_time), (name, k)


def test_lineage_real_lineage_has_complete_cycles_and_generations(stored):
    store, ids = stored
    sid = next(s for s, (n, _) in ids.items() if n.startswith("Fluo-N3DH-CE"))
    summary = rows(store, f"SELECT * FROM tracklet_summary WHERE session_id = {sid}")
    assert max(r["generation"] for r in summary) >= 3
    assert sum(r["cycle_frames"] is not None for r in summary) >= 5
    assert all(r["fate"] in ("divides", "ends") for r in summary)  # C. elegans GT: no merges, no splits


def test_lineage_end_label_from_organoidtracker_ending(stored):
    store, ids = stored
    sid = next(s for s, (n, _) in ids.items() if n == "wide_time_points_division_merge.aut")
    dead = rows(store, f"SELECT track_id, end_label, fate FROM tracklet_summary WHERE session_id = {sid} "
                       "AND end_label IS NOT NULL")
    assert dead == [{"track_id": 3, "end_label": "dead", "fate": "ends"}]


def test_lineage_summary_matches_python(stored):
    store, ids = stored
    got = rows(store, "SELECT * FROM lineage_summary")
    for sid, (name, t) in ids.items():
        ref = Ref(t)
        mine = {r["lineage_id"]: r for r in got if r["session_id"] == sid}
        assert set(mine) == set(ref.lineage.values()), name
        for lin, r in mine.items():
            ks = [k for k in ref.tracks if ref.lineage[k] == lin]
            roots = sorted((ref.first[k], k) for k in ks if not ref.parents[k])
            assert r["root_track_id"] == roots[0][1] and r["n_roots"] == len(roots), (name, lin)
            assert r["n_tracks"] == len(ks) and r["n_positions"] == sum(ref.n[k] for k in ks)
            assert r["n_divisions"] == sum(len(ref.children[k]) >= 2 for k in ks)
            assert r["n_merges"] == sum(len(ref.parents[k]) >= 2 for k in ks)
            assert r["n_leaves"] == sum(not ref.children[k] for k in ks)
            assert r["max_generation"] == max(ref.gen[k] for k in ks)
            assert (r["first_frame"], r["last_frame"]) == (min(ref.first[k] for k in ks),
                                                          max(ref.last[k] for k in ks))


def test_lineage_division_events_and_sisters_match_python(stored):
    store, ids = stored
    divs = rows(store, "SELECT * FROM division_events")
    sisters = rows(store, "SELECT * FROM sister_pairs")
    for sid, (name, t) in ids.items():
        ref = Ref(t)
        mine = {r["parent_track_id"]: r for r in divs if r["session_id"] == sid}
        want = {k for k in ref.tracks if len(ref.children[k]) >= 2}
        assert set(mine) == want, name
        for k, r in mine.items():
            assert list(r["daughter_track_ids"]) == sorted(ref.children[k])
            assert (r["frame"], r["n_daughters"], r["generation"]) == (ref.last[k], len(ref.children[k]), ref.gen[k])
            assert (r["x"], r["y"]) == ref.xyz[k]
        pairs = {(r["parent_track_id"], r["track_a"], r["track_b"]) for r in sisters if r["session_id"] == sid}
        assert pairs == {(k, a, b) for k in want for a in ref.children[k] for b in ref.children[k] if a < b}, name
    sid = next(s for s, (n, _) in ids.items() if n == "division")
    assert [(r["track_a"], r["track_b"], r["division_frame"]) for r in sisters if r["session_id"] == sid] == [(1, 2, 2)]


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared/data/organoidtracker is not beside the repo")
def test_lineage_whole_c_elegans_lineage(store):
    """All 358 divisions of the Fluo-N3DH-CE 01 ground truth (OrganoidTracker's count) are found."""
    t = ot.read(SHARED / "generated_with_organoidtracker" / "Fluo-N3DH-CE_01_GT.geff_to_aut_by_organoidtracker.aut")
    with store.transaction() as c:
        store.write_session(c, t, content_hash="ce")
    assert rows(store, "SELECT count(*) AS n FROM division_events") == [{"n": 358}]
    assert rows(store, "SELECT count(*) AS n FROM sister_pairs") == [{"n": 358}]
    ref = Ref(t)
    got = {r["track_id"]: r["generation"] for r in rows(store, "SELECT track_id, generation FROM tracklet_summary")}
    assert got == ref.gen


# ---------------------------------------------------------------------------- queries
def test_lineage_descendants_and_ancestors_match_python(stored):
    store, ids = stored
    for sid, (name, t) in ids.items():
        ref = Ref(t)
        deep = max(ref.tracks, key=lambda k: (ref.gen[k], len(ref.walk(k, down=False)), k))
        merged = [k for k in ref.tracks if len(ref.parents[k]) >= 2]
        for k in sorted({ref.tracks[0], ref.tracks[len(ref.tracks) // 2], deep, *merged[:1]}):
            got = {r["track_id"]: r["distance"]
                   for r in rows(store, "lineage_descendants", {"session_id": sid, "track_id": k})}
            assert got == ref.walk(k, down=True), (name, k)
            got = {r["track_id"]: r["distance"]
                   for r in rows(store, "lineage_ancestors", {"session_id": sid, "track_id": k})}
            assert got == ref.walk(k, down=False), (name, k)
        forest = rows(store, "lineage_descendants", {"session_id": sid})
        assert {r["track_id"] for r in forest} == set(ref.tracks)  # from every root: the whole forest


def test_lineage_division_counts_per_window(stored):
    store, ids = stored
    for sid, (name, t) in ids.items():
        ref = Ref(t)
        got = rows(store, "division_counts", {"session_id": sid, "window": 5})
        want: dict[int, int] = {}
        for k in ref.tracks:
            if len(ref.children[k]) >= 2:
                w = math.floor(ref.last[k] / 5) * 5
                want[w] = want.get(w, 0) + 1
        assert {r["window_start"]: r["n_divisions"] for r in got if r["n_divisions"]} == want, name
        assert all(r["window_end"] == r["window_start"] + 4 for r in got)
        alive = {}
        for k in ref.tracks:
            for w in {math.floor(f / 5) * 5 for f in range(ref.first[k], ref.last[k] + 1)}:
                alive.setdefault(w, set())
        assert set(r["window_start"] for r in got) <= set(alive)


def test_lineage_cell_cycle_durations(stored):
    store, ids = stored
    for sid, (name, t) in ids.items():
        ref = Ref(t)
        every = rows(store, "cell_cycle_durations", {"session_id": sid})
        assert len(every) == len(ref.tracks)
        got = {r["track_id"]: (r["cycle_frames"], r["cycle_time"])
               for r in rows(store, "cell_cycle_durations", {"session_id": sid, "complete_only": True})}
        want = {k: ref.cycle(k) for k in ref.tracks if ref.cycle(k)[0] is not None}
        assert set(got) == set(want), name
        for k, (fr, tm) in got.items():
            assert fr == want[k][0] and same(tm, want[k][1])
    ce = next(s for s, (n, _) in ids.items() if n.startswith("Fluo-N3DH-CE"))
    assert len(rows(store, "cell_cycle_durations", {"session_id": ce, "complete_only": True})) >= 5


def test_lineage_cell_metadata_series_along_a_cell(stored):
    store, ids = stored
    sid, (_, t) = next((s, v) for s, v in ids.items() if v[0] == "WKS216_xy002_FRAP.t0-19.aut")
    b = t.meta("position", "H2B_intensity")
    k = 3
    sel = np.flatnonzero(t.positions["track_id"] == k)
    vals = dict(zip(b.owners.tolist(), b.values.tolist()))
    want = sorted((int(t.positions["frame"][p]), vals[p]) for p in sel if p in vals)
    got = rows(store, "cell_metadata_series", {"session_id": sid, "track_id": k, "key": "H2B_intensity"})
    assert [(r["frame"], r["value"]) for r in got] == want
    assert {r["vtype"] for r in got} == {"int"} and all(r["time"] == r["frame"] * 12.0 for r in got)
    bleached = rows(store, "cell_metadata_series", {"session_id": sid, "key": "Bleached"})
    assert bleached and all(r["value"] == 1.0 and r["vtype"] == "bool" for r in bleached)
    # a cell's history: its track and every track it descends from
    ce, (_, tc) = next((s, v) for s, v in ids.items() if v[0].startswith("Fluo-N3DH-CE"))
    ref = Ref(tc)
    leaf = max(ref.tracks, key=lambda k: (ref.gen[k], k))
    got = rows(store, "cell_metadata_series", {"session_id": ce, "track_id": leaf, "key": "x"})
    assert {r["track_id"] for r in got} == set(ref.walk(leaf, down=False))
    frames = [r["frame"] for r in got]
    assert frames == sorted(frames) and len(frames) == len(set(frames))  # one cell: one position per frame
