"""OrganoidTracker .aut: real and generated files read right, round-trip exactly, and bad files say why."""

from __future__ import annotations

import json
import math
import os
import re
import uuid
import warnings
from pathlib import Path

import numpy as np
import pytest

import examples
from trackstore import _forked
from trackstore.errors import LossyConversionWarning, ParseError, WriteError
from trackstore.formats import _organoidtracker_json as oj
from trackstore.formats import _organoidtracker_read as otr
from trackstore.formats import detect_format
from trackstore.formats import organoidtracker as ot
from trackstore.model import MetaBlock, SessionInfo, TrackTables, compare_tables, derive_tracks
from trackstore.store import Store

DATA = Path(__file__).parent / "data" / "organoidtracker"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "organoidtracker"
GOOD = sorted(p for p in DATA.glob("*.aut") if not p.name.startswith("bad_"))
SHARED_AUT = sorted(SHARED.rglob("*.aut")) if SHARED.is_dir() else []
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="shared/data/organoidtracker is not beside the repo")


# ---------------------------------------------------------------------------- helpers
def strict_equal(a, b, where="$") -> str | None:
    """None if two parsed JSON trees are equal with every value's type (1 is not 1.0), else where not."""
    if type(a) is not type(b):
        return f"{where}: {type(a).__name__} {str(a)[:60]} vs {type(b).__name__} {str(b)[:60]}"
    if isinstance(a, dict):
        if set(a) != set(b):
            return f"{where}: keys differ: {sorted(set(a) ^ set(b))}"
        for k in a:
            r = strict_equal(a[k], b[k], f"{where}.{k}")
            if r:
                return r
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            r = strict_equal(x, y, f"{where}[{i}]")
            if r:
                return r
        return None
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return None
    return None if a == b else f"{where}: {a!r} vs {b!r}"


def free_order(d: dict) -> dict:
    """The parsed file with positions sorted within each time point (the order the format leaves free)."""
    d = json.loads(json.dumps(d))
    pos = d.get("positions")
    if isinstance(pos, list):
        for tp in pos:
            n = len(tp["coords_xyz_px"])
            meta = tp.get("position_meta", {})
            order = sorted(range(n), key=lambda i: json.dumps(tp["coords_xyz_px"][i]))
            tp["coords_xyz_px"] = [tp["coords_xyz_px"][i] for i in order]
            for k, v in meta.items():
                meta[k] = [v[i] for i in order]
    elif isinstance(pos, dict):
        for t, v in pos.items():
            pos[t] = sorted(v, key=json.dumps)
    return d


def load_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def write_quietly(t: TrackTables, path: Path, **kw) -> list:
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ot.write(t, path, **kw)
    return w


def canonical(t: TrackTables) -> tuple:
    """Order-free content: positions by (t, x, y, z), links by their ends, metadata by owner keys."""
    key = list(zip(t.positions["frame"].tolist(), t.positions["x"].tolist(), t.positions["y"].tolist(),
                   t.pos("z").tolist()))
    s, d = t.links["source_id"].tolist(), t.links["target_id"].tolist()
    links = [(key[a], key[b]) for a, b in zip(s, d)]
    meta = {}
    for b in t.metadata:
        if b.key.startswith("organoidtracker.") or b.scope in ("lineage", "track"):
            continue
        own = [None] * len(b) if b.owners is None else \
            [key[o] if b.scope == "position" else links[o] for o in b.owners.tolist()]
        meta[(b.scope, b.key)] = sorted((repr(o), type(v).__name__, repr(v)) for o, v in zip(own, b.values.tolist()))
    return sorted(key, key=repr), sorted(links, key=repr), meta


def shape(t: TrackTables) -> dict:
    """Counts as SOURCES.md gives them: positions, links, tracks, divisions, merges."""
    tr = t.positions["track_id"]
    s, d = t.links["source_id"], t.links["target_id"]
    cross = tr[s] != tr[d]
    kids = np.bincount(tr[s][cross], minlength=t.n_tracks) if t.n_tracks else np.zeros(0)
    pars = np.bincount(tr[d][cross], minlength=t.n_tracks) if t.n_tracks else np.zeros(0)
    return {"positions": t.n_positions, "links": t.n_links, "tracks": t.n_tracks,
            "div": int((kids >= 2).sum()), "merge": int((pars >= 2).sum())}


# ---------------------------------------------------------------------------- detection
def test_organoidtracker_sniff_and_detect(tmp_path):
    for p in GOOD:
        assert ot.sniff(p), p.name
        assert detect_format(p).NAME == "organoidtracker"
    assert ot.sniff(DATA / "small_v2.positions_for_neural_network.json")
    other = tmp_path / "settings.json"
    other.write_text('{"a": 1, "positions": [1, 2]}')
    assert not ot.sniff(other)
    junk = tmp_path / "junk.aut"
    junk.write_bytes(b"\x00\x01 not json")
    assert not ot.sniff(junk)
    assert not ot.sniff(tmp_path)


# ---------------------------------------------------------------------------- reading
@pytest.mark.parametrize("name, want", [
    ("tiny_v1.aut", {"positions": 34, "links": 25, "tracks": 9, "div": 2, "merge": 1}),
    ("tiny_v2.aut", {"positions": 34, "links": 25, "tracks": 9, "div": 2, "merge": 1}),
    ("tiny_v2.resaved_by_organoidtracker.aut", {"positions": 34, "links": 25, "tracks": 9, "div": 2, "merge": 1}),
    ("small_v2.aut", {"positions": 64, "links": 52, "tracks": 18, "div": 6, "merge": 1}),
    ("kitchen_sink.saved_by_organoidtracker.aut", {"positions": 7, "links": 5, "tracks": 3, "div": 1, "merge": 0}),
    # 686 listed positions + the gap filler OrganoidTracker put in the tracks only
    ("NapaTrackMater_tracks.xml_to_aut_by_organoidtracker.aut",
     {"positions": 687, "links": 647, "tracks": 54, "div": 11, "merge": 0}),
])
def test_organoidtracker_counts_match_organoidtracker(name, want):
    t = ot.read(DATA / name)
    t.validate()
    assert shape(t) == want


@needs_shared
@pytest.mark.parametrize("rel, want", [
    ("jvzonlab_OrganoidTracker/WKS216_xy002_FRAP.aut", (592, 585, 7, 0, 0)),
    ("jvzonlab_OrganoidTracker/WKS216_xy008_FRAP.aut", (602, 595, 7, 0, 0)),
    ("jvzonlab_OrganoidTracker/WKS216_xy010_FRAP.aut", (586, 579, 7, 0, 0)),
    ("RodriguezColmanLab_napari-organoidtracker/E482-AZ-pos3.aut", (5632, 5540, 94, 1, 0)),
    ("generated_with_organoidtracker/E482-AZ-pos3.v1_to_v2_by_organoidtracker.aut", (5632, 5540, 94, 1, 0)),
    ("generated_with_organoidtracker/Fluo-N3DH-CE_01_GT.geff_to_aut_by_organoidtracker.aut",
     (23802, 23798, 720, 358, 0)),
])
def test_organoidtracker_counts_match_organoidtracker_on_real_files(rel, want):
    t = ot.read(SHARED / rel)
    t.validate()
    assert tuple(shape(t).values()) == want


def test_organoidtracker_not_in_positions_is_flagged():
    t = ot.read(DATA / "NapaTrackMater_tracks.xml_to_aut_by_organoidtracker.aut")
    b = t.meta("position", "organoidtracker.not_in_positions")
    assert b is not None and len(b) == 1
    p = int(b.owners[0])
    assert t.positions["track_id"][p] >= 0  # the filler is in a track
    # it is a copy of the position before it in its track (OrganoidTracker's TrackMate gap filling)
    prev = t.links["source_id"][t.links["target_id"] == p][0]
    assert (t.positions["x"][p], t.positions["y"][p]) == (t.positions["x"][prev], t.positions["y"][prev])


def test_organoidtracker_divisions_merges_unlinked_and_wide_time_points():
    t = ot.read(DATA / "wide_time_points_division_merge.aut")
    t.validate()
    f = t.positions["frame"]
    assert sorted(set(f.tolist())) == [-1, 0, 1, 2, 3, 5000, 5001, 6000]  # no 0..5000 window
    assert list(t.frames["frame"]) == [-1, 0, 1, 2, 3, 5000, 5001, 6000]
    assert shape(t) == {"positions": 11, "links": 8, "tracks": 5, "div": 1, "merge": 1}
    lone = (f == 6000) | ((f == -1) & (t.positions["x"] == 50.0))
    assert (t.positions["track_id"][lone] == -1).all()  # unlinked positions are kept, in no track
    assert list(t.tracks["lineage_id"]) == [0, 0, 0, 0, 1]
    # the merge child names its two parents in order; link_meta_before follows that order
    lp = t.meta("link", "link_probability")
    vals = dict(zip(lp.owners.tolist(), lp.values.tolist()))
    d = t.links["target_id"]
    into_merge = [j for j in range(t.n_links) if f[d[j]] == 3]
    assert [vals.get(j) for j in into_merge] == [None, 0.25]
    assert t.session.pixel_size == (0.5, 0.5, 2.0) and t.session.frame_interval == 10.0
    assert t.session.time_unit == "minute" and t.frames["time"][-1] == 60000.0


def test_organoidtracker_metadata_keeps_json_types():
    t = ot.read(DATA / "wide_time_points_division_merge.aut")
    inten = t.meta("position", "intensity")
    assert [type(v) for v in inten.values.tolist()] == [int, float]  # 10 stays int, 11.5 float
    assert t.meta("position", "flag").values.dtype == bool
    assert t.meta("position", "label").values.tolist() == ["a", "b"]
    assert t.meta("position", "scores").values.tolist() == [[0.5, 2]]
    assert sorted((repr(v), type(v).__name__) for v in t.meta("link", "link_probability").values.tolist()) == \
        [("0.25", "float"), ("0.5", "float"), ("0.75", "float"), ("1", "int")]
    lin = {b.key: (b.owners.tolist(), b.values.tolist()) for b in t.metadata if b.scope == "lineage"}
    assert lin == {"color": ([0], [16711680]), "clone": ([0], ["A"])}
    sess = t.session_meta()
    # other_data entries are plain session keys, a null kept as a null; other keys verbatim
    assert {k: sess[k] for k in ("drug_type", "dose_um", "temperature_by_time_point", "note")} == \
        {"drug_type": "control", "dose_um": 2, "temperature_by_time_point": [20.5, 21], "note": None}
    assert sess["organoidtracker.future_key"] == {"kept": [1, 2.0, None, "x"]}
    assert sess["organoidtracker.key_order"][:3] == ["version", "positions", "tracks"]


def test_organoidtracker_v1_null_is_a_value_and_absence_is_not():
    t = ot.read(DATA / "v1_nulls_reversed_unlisted.aut")
    t.validate()
    note = t.meta("position", "note")
    assert note.values.tolist() == [None] and len(note) == 1  # the only node with the key has null
    lp = t.meta("link", "link_probability")
    assert lp.values.tolist() == [None, 0.5]
    assert t.meta("link", "organoidtracker.v1_reversed").owners.tolist() == [1]
    assert len(t.meta("position", "organoidtracker.not_in_positions")) == 1
    assert shape(t)["div"] == 1
    assert [b.values.tolist() for b in t.metadata if b.scope == "lineage"] == [[255]]


def test_organoidtracker_parent_reference_within_tolerance():
    t = ot.read(DATA / "parent_within_tolerance.aut")
    s, d = t.links["source_id"], t.links["target_id"]
    assert sorted(zip(t.positions["x"][s].tolist(), t.positions["x"][d].tolist())) == [(10.0, 9.0), (10.0, 11.0)]
    with pytest.raises(ParseError, match="matches no position"):
        ot.read(DATA / "parent_within_tolerance.aut", tolerance=0.001)


def test_organoidtracker_stdlib_spelling_with_nan_tokens(tmp_path):
    path = DATA / "stdlib_nan_tokens.aut"
    assert b"NaN" in path.read_bytes() and b"\\u00e9" in path.read_bytes()
    t = ot.read(path)
    score = t.meta("position", "score").values
    assert math.isnan(score[0]) and score[1] == math.inf  # a NaN token is a value, not an absence
    assert t.meta("position", "name").values.tolist() == ["été"]
    assert t.session_meta()["organoidtracker.name"] == "café"
    out = tmp_path / "out.aut"
    write_quietly(t, out)
    raw = out.read_bytes()
    assert b"NaN" not in raw and b"Infinity" not in raw  # never a bare token
    assert "été".encode() in raw and b", " not in raw  # compact, raw UTF-8 (orjson's spelling)
    back = load_json(out)
    assert back["positions"][0]["position_meta"]["score"] == [None, None]
    assert back["other_data"] == {"offset": None}


@pytest.mark.parametrize("name, words", [
    ("bad_parent_matches_nothing.aut", ["tracks[1]", "10.006", "time point 0", "matches no position"]),
    ("bad_parent_mid_track.aut", ["tracks[1]", "[1.0, 0.0, 0.0]", "middle of tracks[0]", "not its last position"]),
    ("bad_not_json.aut", ["not valid JSON", "line 2"]),
    ("bad_unknown_version.aut", ["unknown AUT version", "v9"]),
    ("bad_coordinate_not_xyz.aut", ["coordinate 1", "[4.0, 5.0]", "not [x, y, z]"]),
    ("bad_position_meta_length.aut", ["time point 3", "'intensity'", "2 values for 1 positions"]),
    ("bad_time_point_not_integer.aut", ["time_point", "'zero'", "not a whole number"]),
])
def test_organoidtracker_bad_files_name_the_problem(name, words):
    with pytest.raises(ParseError) as e:
        ot.read(DATA / name)
    msg = str(e.value)
    assert name in msg
    for w in words:
        assert w in msg, (w, msg)


def test_organoidtracker_units_and_frame_times():
    t = ot.read(DATA / "WKS216_xy002_FRAP.t0-19.aut")
    s = t.session
    assert (s.pixel_size, s.physical_unit, s.space_unit) == ((0.31, 0.31, 2.0), "micrometre", "pixel")
    assert (s.frame_interval, s.time_unit) == (12.0, "minute")
    assert np.array_equal(t.frames["time"], t.frames["frame"] * 12.0)
    k = ot.read(DATA / "kitchen_sink.saved_by_organoidtracker.aut")  # variable intervals: image_timings
    assert k.frames["time"].tolist() == [0.0, 12.0, 25.0, 40.0]
    bare = ot.read(DATA / "small_v2.positions_for_neural_network.json")  # OrganoidTracker's bare positions file
    assert bare.n_positions == 63 and bare.n_links == 0 and bare.session.time_unit == "frame"


def test_organoidtracker_runs_match_a_whole_document_parse(monkeypatch):
    """Reading the big arrays in runs of whole elements gives exactly what one parse gives."""
    seen: list[int] = []
    real = oj._parse_split

    def spy(*a, **k):
        doc = real(*a, **k)
        seen.append(sum(map(len, doc.runs.values())))
        return doc

    for name in ("tiny_v1.aut", "small_v2.aut", "Fluo-N3DH-CE_01_GT.t0-39.aut", "E482-AZ-pos3.t60.aut"):
        whole = ot.read(DATA / name)
        for window, edge in ((1 << 16, 4096), (64, 16)):  # the cuts are searched in windows of the file
            seen.clear()
            with monkeypatch.context() as m:
                m.setattr(oj, "CHUNK_BYTES", 200)
                m.setattr(oj, "_parse_split", spy)
                m.setattr(oj._File, "WINDOW", window)
                m.setattr(oj._File, "EDGE", edge)
                runs = ot.read(DATA / name)
            assert seen and seen[0] > 1, name  # it was really cut into runs
            assert compare_tables(whole, runs) == [], (name, window)


class _SpyForked(otr.Forked):
    made: list[bool] = []

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.made.append(self.forked)


@pytest.fixture
def forking(monkeypatch):
    """Every v2 file's tracks read in a forked child (small files too); returns the fork record."""
    monkeypatch.setattr(otr, "Forked", _SpyForked)
    monkeypatch.setattr(otr, "FORK_BYTES", 0)
    monkeypatch.setattr(oj, "CHUNK_BYTES", 200)
    _SpyForked.made = []
    return _SpyForked.made


@pytest.mark.skipif(not _forked.enabled(), reason="fork is used on Linux only")
def test_a_forked_child_reads_the_tracks_alike(forking, monkeypatch):
    """A big v2 file's tracks (v1: links) are read by a forked child while the positions are read
    here: the tables are those of reading both here."""
    names = sorted(p.name for p in DATA.glob("*.aut") if not p.name.startswith("bad_"))
    children = ""
    for name in names:
        monkeypatch.setenv("TRACKSTORE_FORK", "0")
        here = ot.read(DATA / name)
        monkeypatch.delenv("TRACKSTORE_FORK")
        forking.clear()
        fds = len(list(Path("/proc/self/fd").iterdir()))
        forked = ot.read(DATA / name)
        # no array of the tables is a view of the child's mapped result (which holds a descriptor)
        assert len(list(Path("/proc/self/fd").iterdir())) == fds, name
        assert compare_tables(here, forked) == [], name
        if here.n_links >= 10:
            assert forking == [True], name  # the child really read them
            children += here.session.format_version
    assert "v1" in children and children.count("v2") >= 6


def test_restored_columns_copy_views_only():
    """A column from a child holds views of its mapped result: they are copied (else they keep
    the whole result in memory); arrays of their own are kept, not copied again."""
    mapped = np.arange(12.0)
    owners = np.arange(3, dtype=np.int64)
    col = otr._Column.restore(True, [owners], [mapped[4:7]])
    assert col.owners[0] is owners
    assert col.parts[0].flags.owndata and col.parts[0].tolist() == [4.0, 5.0, 6.0]
    assert not np.shares_memory(col.parts[0], mapped)


@pytest.mark.skipif(not _forked.enabled(), reason="fork is used on Linux only")
def test_a_forked_child_gives_the_errors_of_a_serial_read(forking, tmp_path, monkeypatch):
    d = load_json(DATA / "small_v2.aut")
    d["tracks"][3]["coords_xyz_px"] = []
    bad_track = tmp_path / "bad_track.aut"
    bad_track.write_text(json.dumps(d, separators=(",", ":")))
    d["positions"][2]["position_meta"] = {"x": [1]}
    both = tmp_path / "both.aut"  # a bad position and a bad track: the positions come first
    both.write_text(json.dumps(d, separators=(",", ":")))
    v1 = load_json(DATA / "tiny_v1.aut")
    del v1["links"]["links"][5]["target"]
    bad_link = tmp_path / "bad_link.aut"
    bad_link.write_text(json.dumps(v1, separators=(",", ":")))
    fds = len(list(Path("/proc/self/fd").iterdir()))
    for path, message in ((bad_track, r"tracks\[3\] \(starting at time point \d+\) has no coords_xyz_px$"),
                          (both, r"time point \d+: position_meta 'x' has 1 values for \d+ positions$"),
                          (bad_link, r"links\.links: .*5.*target")):
        said = []
        for fork in ("1", "0"):
            monkeypatch.setenv("TRACKSTORE_FORK", fork)
            forking.clear()
            with pytest.raises(ParseError, match=message) as e:
                ot.read(path)
            assert e.value.path == str(path)
            assert forking == [fork == "1"]
            said.append(str(e.value))
        assert said[0] == said[1]
    assert len(list(Path("/proc/self/fd").iterdir())) == fds  # files closed, children reaped


@pytest.mark.skipif(not _forked.enabled(), reason="fork is used on Linux only")
def test_a_forked_child_reads_through_a_file_offset_of_its_own(tmp_path):
    """Parent and child share an open file's offset: the child's reads must not move the parent's."""
    path = tmp_path / "f.json"
    path.write_bytes(bytes(range(256)) * 1024)
    f = oj._File(path)
    try:
        assert f.read(100, 110) == bytes(range(100, 110))
        offset = os.lseek(f.f.fileno(), 0, os.SEEK_CUR)  # the kernel's, which a fork shares
        job = otr.Forked(lambda: (f.read(3000, 3010), f.run(1, 5).tobytes()))
        assert job.forked
        assert job.result() == (bytes(range(3000 % 256, 3010 % 256)), b"[\x01\x02\x03\x04]")
        assert os.lseek(f.f.fileno(), 0, os.SEEK_CUR) == offset  # where the parent's last read left it
    finally:
        f.close()


def test_file_search_finds_a_match_across_window_edges(tmp_path, monkeypatch):
    monkeypatch.setattr(oj._File, "WINDOW", 32)
    monkeypatch.setattr(oj._File, "EDGE", 8)
    path = tmp_path / "f.json"
    path.write_bytes(b"x" * 29 + b'"tracks"   :   [ ' + b"y" * 100 + b'"tracks":[')
    f = oj._File(path)
    try:
        pat = re.compile(rb'"tracks"\s*:\s*\[\s*')
        for literal in (b"", b'"tracks"'):  # by the expression alone, or its literal beginning first
            m, at = f.search(pat, 0, literal)
            assert (at + m.start(), at + m.end()) == (29, 46)  # whole, though it starts 3 bytes before an edge
            m, at = f.search(pat, 30, literal)
            assert at + m.start() == 146
            assert f.search(pat, 147, literal) is None
        assert bytes(f.read(140, 10_000)) == b"yyyyyy" + b'"tracks":['
    finally:
        f.close()


def test_file_search_stops_at_the_next_arrays_key(tmp_path, monkeypatch):
    """The search for the next cut ends at the next split array's key, even one in the stretch it
    skipped, instead of running on to the end of the file."""
    monkeypatch.setattr(oj._File, "WINDOW", 32)
    monkeypatch.setattr(oj._File, "EDGE", 8)
    path = tmp_path / "f.json"
    body = b'{"nodes":[{"id":1},{"id":2}' + b" " * 40 + b'],"links":[{"id":3' + b" " * 60 + b'},{"id":4}]}'
    path.write_bytes(body)
    cut = re.compile(rb'\}\s*,\s*(\{\s*"id"\s*:)')
    stop = re.compile(rb'"links"\s*:\s*\['), b'"links"'
    key_at, far_cut = body.index(b'"links"'), body.rindex(b"},{")
    f = oj._File(path)
    try:
        m, at = f.search(cut, 0, stop=(*stop, 0))  # a cut before the key: found
        assert at + m.start() == body.index(b"},{")
        assert f.search(cut, 30, stop=(*stop, 0)) is None  # the key comes first
        assert f.search(cut, key_at + 3, stop=(*stop, 12)) is None  # the key is in the skipped stretch
        m, at = f.search(cut, key_at + 3)  # without a stop: the cut in the next array
        assert at + m.start() == far_cut
    finally:
        f.close()


def test_an_escaped_quote_in_a_run_falls_back_to_a_whole_parse(tmp_path, monkeypatch):
    """A run holding an escaped quote cannot be trusted (a string could hide a cut): one whole parse."""
    d = load_json(DATA / "small_v2.aut")
    d["positions"][2]["position_meta"]["note"] = ['say "hi"'] + [None] * (len(d["positions"][2]["coords_xyz_px"]) - 1)
    path = tmp_path / "quoted.aut"
    path.write_text(json.dumps(d, separators=(",", ":")))
    whole_calls = []
    real = oj.Document

    def doc(*a, **k):
        if not k.get("runs"):
            whole_calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(oj, "CHUNK_BYTES", 100)
    monkeypatch.setattr(oj, "Document", doc)
    t = ot.read(path)
    assert whole_calls  # the runs were given up for one parse of the whole document
    assert t.meta("position", "note").values.tolist() == ['say "hi"']
    assert shape(t) == shape(ot.read(DATA / "small_v2.aut"))


def test_the_file_is_closed_after_a_bad_run(tmp_path, monkeypatch):
    fds = Path("/proc/self/fd")
    d = load_json(DATA / "small_v2.aut")
    d["tracks"][3]["coords_xyz_px"] = []
    path = tmp_path / "bad.aut"
    path.write_text(json.dumps(d, separators=(",", ":")))
    monkeypatch.setattr(oj, "CHUNK_BYTES", 100)
    before = len(list(fds.iterdir()))
    with pytest.raises(ParseError, match=r"tracks\[3\].*has no coords_xyz_px"):
        ot.read(path)
    assert len(list(fds.iterdir())) == before


def test_organoidtracker_stdlib_spelling_read_in_runs(tmp_path, monkeypatch):
    """A big stdlib-spelled file with a bare NaN is cut into runs and parsed by the standard library."""
    d = load_json(DATA / "small_v2.aut")
    d["positions"][3]["position_meta"]["intensity"][0] = float("nan")
    path = tmp_path / "std.aut"
    path.write_text(json.dumps(d))  # ", " separators and a bare NaN token
    whole = ot.read(path)
    monkeypatch.setattr(oj, "CHUNK_BYTES", 300)
    runs = ot.read(path)
    assert compare_tables(whole, runs) == []
    assert np.isnan(runs.meta("position", "intensity").values).sum() == 1


def test_organoidtracker_misleading_keys_fall_back_to_a_whole_parse(tmp_path, monkeypatch):
    """A metadata key named like a bulk array, or a pattern inside a string, cannot fool the runs."""
    d = load_json(DATA / "small_v2.aut")
    d["positions"][0]["position_meta"]["tracks"] = [[{"time_point_start": 1}]] * len(d["positions"][0]["coords_xyz_px"])
    d["other_data"]["text"] = '},{"time_point":7,"coords_xyz_px":[]}'
    path = tmp_path / "tricky.aut"
    path.write_text(json.dumps(d, separators=(",", ":")))
    monkeypatch.setattr(oj, "CHUNK_BYTES", 100)
    t = ot.read(path)
    monkeypatch.undo()
    assert shape(t) == shape(ot.read(DATA / "small_v2.aut"))
    assert t.session_meta()["text"] == d["other_data"]["text"]
    assert t.meta("position", "tracks").values.tolist()[0] == [{"time_point_start": 1}]


# ---------------------------------------------------------------------------- round trips
def check_roundtrip(src: Path, tmp_path: Path, via_store: Store | None = None) -> None:
    t = ot.read(src)
    if via_store is not None:
        with via_store.transaction() as c:
            sid = via_store.write_session(c, t, content_hash=uuid.uuid4().hex)
        t = via_store.read_session(sid)
    orig = load_json(src)
    version = orig.get("version", "v1")
    out = tmp_path / f"{src.stem}.{uuid.uuid4().hex[:6]}.aut"
    w = write_quietly(t, out, version=version)
    assert not w, [str(x.message) for x in w]
    back = load_json(out)
    assert list(back) == list(orig), "top-level keys and their order"
    diff = strict_equal(free_order(orig), free_order(back))
    assert diff is None, f"{src.name}: {diff}"
    again = ot.read(out)
    assert compare_tables(ot.read(src), again, ignore_meta=["organoidtracker.key_order"]) == []


# Not byte-for-byte as parsed JSON, by design, each with its own test: a parent reference within
# tolerance is written with the parent's exact coordinates; a bare NaN token is written as null.
NOT_EXACT = {"parent_within_tolerance.aut", "stdlib_nan_tokens.aut"}


@pytest.mark.parametrize("path", [p for p in GOOD if p.name not in NOT_EXACT], ids=lambda p: p.name)
def test_organoidtracker_roundtrip_is_exact(path, tmp_path):
    check_roundtrip(path, tmp_path)


@needs_shared
@pytest.mark.parametrize("path", SHARED_AUT, ids=lambda p: p.name)
def test_organoidtracker_roundtrip_every_shared_file(path, tmp_path):
    check_roundtrip(path, tmp_path)


@pytest.mark.parametrize("name", ["kitchen_sink.saved_by_organoidtracker.aut", "WKS216_xy002_FRAP.t0-19.aut",
                                  "wide_time_points_division_merge.aut", "v1_nulls_reversed_unlisted.aut",
                                  "tiny_v2.resaved_by_organoidtracker.aut", "E482-AZ-pos3.t60.aut"])
def test_organoidtracker_roundtrip_through_the_store(name, tmp_path, store):
    check_roundtrip(DATA / name, tmp_path, via_store=store)


def test_organoidtracker_tolerance_reference_is_written_exact(tmp_path):
    t = ot.read(DATA / "parent_within_tolerance.aut")
    write_quietly(t, tmp_path / "o.aut")
    back = load_json(tmp_path / "o.aut")
    assert [tr.get("coords_xyz_px_before") for tr in back["tracks"]] == [None, [[10.0, 10.0, 1.0]],
                                                                        [[10.0, 10.0, 1.0]]]
    assert canonical(ot.read(tmp_path / "o.aut")) == canonical(t)


@pytest.mark.parametrize("a, b", [
    ("tiny_v1.aut", "tiny_v2.aut"),
    ("tiny_v2.aut", "tiny_v2.resaved_by_organoidtracker.aut"),
    ("small_v2.aut", "small_v2.resaved_by_organoidtracker.aut"),
])
def test_organoidtracker_v1_and_v2_of_one_experiment_read_alike(a, b):
    assert canonical(ot.read(DATA / a)) == canonical(ot.read(DATA / b))


@pytest.mark.parametrize("name", ["tiny_v1.aut", "tiny_v2.aut", "small_v2.aut",
                                  "kitchen_sink.saved_by_organoidtracker.aut", "Fluo-N3DH-CE_01_GT.t0-39.aut",
                                  "v1_nulls_reversed_unlisted.aut", "wide_time_points_division_merge.aut"])
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_organoidtracker_convert_between_versions(name, version, tmp_path):
    t = ot.read(DATA / name)
    w = write_quietly(t, tmp_path / "o.aut", version=version)
    back = ot.read(tmp_path / "o.aut")
    assert load_json(tmp_path / "o.aut")["version"] == version
    want = canonical(t)
    if version == "v2" and t.session.format_version == "v1":
        # v2 column lists cannot tell a null from an absent value: v1 nulls are dropped, with a warning
        nulls = sum(v[1] == "NoneType" for vals in want[2].values() for v in vals)
        assert nulls == 0 or any(f"{nulls} null metadata value(s)" in str(x.message) for x in w)
        want = (want[0], want[1], {k: [v for v in vals if v[1] != "NoneType"] for k, vals in want[2].items()})
        want[2].pop(("position", "note"), None)
    assert canonical(back) == want
    assert shape(back) == shape(t)
    lin = sorted(repr(v) for b in t.metadata if b.scope == "lineage" for v in b.values.tolist())
    assert sorted(repr(v) for b in back.metadata if b.scope == "lineage" for v in b.values.tolist()) == lin


@needs_shared
def test_organoidtracker_our_v1_to_v2_equals_organoidtrackers(tmp_path):
    """E482 (v1) written as v2 equals OrganoidTracker's own conversion, up to the orders the format leaves free."""
    t = ot.read(SHARED / "RodriguezColmanLab_napari-organoidtracker/E482-AZ-pos3.aut")
    write_quietly(t, tmp_path / "o.aut")
    ours = free_order(load_json(tmp_path / "o.aut"))
    theirs = free_order(load_json(SHARED / "generated_with_organoidtracker" /
                                  "E482-AZ-pos3.v1_to_v2_by_organoidtracker.aut"))
    theirs.pop("image_channel_descriptions")  # OrganoidTracker adds [] for the images it had loaded
    assert strict_equal(ours["positions"], theirs["positions"]) is None
    assert sorted(map(json.dumps, ours["tracks"])) == sorted(map(json.dumps, theirs["tracks"]))
    for k in theirs:
        if k not in ("positions", "tracks", "version", "warning_limits"):
            assert ours[k] == theirs[k], k


def test_organoidtracker_write_refuses_an_existing_file(tmp_path):
    t = ot.read(DATA / "tiny_v2.aut")
    out = tmp_path / "o.aut"
    out.write_text("keep me")
    with pytest.raises(WriteError, match="already exists"):
        ot.write(t, out)
    assert out.read_text() == "keep me"
    assert ot.write(t, out, overwrite=True) == [out]
    with pytest.raises(WriteError, match="version"):
        ot.write(t, tmp_path / "x.aut", version="v3")
    with pytest.raises(WriteError, match="gaps"):
        ot.write(t, tmp_path / "x.aut", gaps="interpolate")
    with pytest.raises(WriteError, match="trailing_null"):
        ot.write(t, tmp_path / "x.aut", trailing_null="no")
    with pytest.raises(ParseError, match="tolerance"):
        ot.read(DATA / "tiny_v2.aut", tolerance="a lot")


# ---------------------------------------------------------------------------- other formats' sessions
@pytest.mark.parametrize("name", sorted(examples.ALL))
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_organoidtracker_canonical_examples(name, version, tmp_path):
    t = examples.ALL[name]()
    out = tmp_path / "o.aut"
    w = write_quietly(t, out, version=version)
    back = ot.read(out)
    back.validate()
    if name == "gap":
        # 0 -- 1 -·-·- 4 -- 5: the gap link is filled with copies of position 1 at frames 2 and 3
        assert [str(x.message) for x in w if issubclass(x.category, LossyConversionWarning)] == [
            "1 link(s) skip time points, which AUT cannot store: filled 2 time point(s) with copies of the "
            "source position (as OrganoidTracker's TrackMate importer does)"]
        assert back.n_positions == 6 and back.n_links == 5 and back.n_tracks == 1
        fill = back.meta("position", "organoidtracker.not_in_positions").owners
        assert sorted(back.positions["frame"][fill].tolist()) == [2, 3]
        assert (back.positions["x"][fill] == 2.0).all()
        return
    assert not [x for x in w if issubclass(x.category, LossyConversionWarning)]
    want = canonical(t)
    got = canonical(back)
    if not t.is_3d and t.n_positions:  # AUT positions are 3D: 2D data gets z = 0
        want = (sorted([(f, x, y, 0.0) for f, x, y, _ in want[0]], key=repr),
                sorted([((a[0], a[1], a[2], 0.0), (b[0], b[1], b[2], 0.0)) for a, b in want[1]], key=repr), want[2])
    assert got[:2] == want[:2]
    assert shape(back)["div"] == shape(t)["div"] and shape(back)["merge"] == shape(t)["merge"]


def test_organoidtracker_gaps_split(tmp_path):
    t = examples.gap()
    with pytest.warns(LossyConversionWarning, match=r"1 link\(s\) skip time points.*split.*2 time point"):
        ot.write(t, tmp_path / "o.aut", gaps="split")
    back = ot.read(tmp_path / "o.aut")
    assert back.n_positions == 4 and back.n_links == 2 and back.n_tracks == 2


def _idtracker_like() -> TrackTables:
    """Three identities with NaN gaps (one link over each gap), like idtracker.ai data."""
    rng = np.random.default_rng(3)
    frame, x, y, track = [], [], [], []
    seen = {0: [0, 1, 2, 5, 6, 7], 1: [0, 1, 2, 3, 4, 5, 6, 7], 2: [1, 2, 6, 7]}
    for k, fs in seen.items():
        for f in fs:
            frame.append(f)
            x.append(float(rng.uniform(0, 100)))
            y.append(float(rng.uniform(0, 100)))
            track.append(k)
    t = TrackTables.from_columns(frame=frame, x=x, y=y, track_id=track, quality=rng.uniform(0.5, 1, len(frame)),
                                 session=SessionInfo(name="fish", source_format="idtrackerai", space_unit="pixel",
                                                     time_unit="second", frame_interval=1 / 30))
    tr = np.array(track)
    same = np.flatnonzero(tr[1:] == tr[:-1])
    t.links = {"source_id": same, "target_id": same + 1}
    t.tracks = {"name": np.array(["1", "2", "3"], object), "identity": np.array([1, 2, 3], object),
                "lineage_id": np.arange(3), "visible": np.ones(3, bool), "native_id": np.full(3, None, object)}
    t.metadata = [MetaBlock.scalar("session", "idtrackerai.version", "6.0.14"),
                  MetaBlock.scalar("session", "frames_per_second", 30.0)]
    return t


def test_organoidtracker_idtracker_identities_become_tracks(tmp_path):
    t = _idtracker_like()
    w = write_quietly(t, tmp_path / "fill.aut")
    msgs = [str(x.message) for x in w]
    assert any("2 link(s) skip time points" in m and "filled 5 time point(s)" in m for m in msgs), msgs
    assert any("idtrackerai.version" in m for m in msgs)  # another format's own key: named as not written
    d = load_json(tmp_path / "fill.aut")
    assert len(d["tracks"]) == 3  # one AUT track per identity
    assert [tr["lineage_meta"] for tr in d["tracks"]] == [{"identity": i, "track_name": str(i)} for i in (1, 2, 3)]
    assert d["other_data"] == {"frames_per_second": 30.0}
    assert d["image_resolution"]["t_m"] == pytest.approx(1 / 30 / 60)
    back = ot.read(tmp_path / "fill.aut")
    q = back.meta("position", "quality")
    got = {(int(back.positions["frame"][o]), float(back.positions["x"][o])): v
           for o, v in zip(q.owners.tolist(), q.values.tolist())}
    assert got == dict(zip(zip(t.positions["frame"].tolist(), t.positions["x"].tolist()),
                           t.positions["quality"].tolist()))
    w = write_quietly(t, tmp_path / "split.aut", gaps="split")
    assert any("2 link(s)" in str(x.message) and "split" in str(x.message) for x in w)
    assert len(load_json(tmp_path / "split.aut")["tracks"]) == 5  # each gap starts a new track


def test_organoidtracker_physical_coordinates_become_pixels(tmp_path):
    t = TrackTables.from_columns(frame=[0, 1], x=[1.0, 2.0], y=[4.0, 4.0], z=[6.0, 6.0], links=([0], [1]),
                                 session=SessionInfo(space_unit="micrometre", physical_unit="micrometre",
                                                     pixel_size=(0.5, 0.5, 2.0), time_unit="second",
                                                     frame_interval=30.0))
    track, lineage = derive_tracks(2, t.links["source_id"], t.links["target_id"])
    t.positions["track_id"] = track
    write_quietly(t, tmp_path / "o.aut")
    d = load_json(tmp_path / "o.aut")
    assert d["tracks"][0]["coords_xyz_px"] == [[2.0, 8.0, 3.0], [4.0, 8.0, 3.0]]
    assert d["image_resolution"] == {"x_um": 0.5, "y_um": 0.5, "z_um": 2.0, "t_m": 0.5}


def test_organoidtracker_random_forests_roundtrip(tmp_path):
    """Random lineages (divisions, merges, lone positions, odd floats) survive both layouts exactly."""
    rng = np.random.default_rng(7)
    for trial in range(6):
        n_frames = int(rng.integers(2, 12))
        frame, src, dst = [], [], []
        alive: list[int] = []
        for f in range(n_frames):
            nxt = []
            for p in alive:
                for _ in range(int(rng.choice([0, 1, 1, 1, 2]))):
                    q = len(frame)
                    frame.append(f)
                    src.append(p)
                    dst.append(q)
                    nxt.append(q)
            if len(nxt) >= 2 and rng.random() < 0.3:  # a merge
                a, b = nxt[-2], nxt[-1]
                src[dst.index(b)] = src[dst.index(b)]
                for j in [j for j, d in enumerate(dst) if d == b]:
                    dst[j] = a
                frame.pop(b) if b == len(frame) - 1 else None
                nxt.remove(b)
            for _ in range(int(rng.integers(0, 3))):
                nxt.append(len(frame))
                frame.append(f)
            alive = nxt
        n = len(frame)
        xyz = rng.normal(0, 100, (n, 3)) * rng.choice([1, 1e-9, 1e9], (n, 1))
        t = TrackTables.from_columns(frame=np.array(frame) - 3, x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2],
                                     links=(src, dst))
        track, lineage = derive_tracks(n, t.links["source_id"], t.links["target_id"], t.positions["frame"])
        t.positions["track_id"] = track
        t.tracks = {"lineage_id": lineage}
        t.add_meta("position", "v", rng.normal(size=n), np.arange(n))
        t.validate()
        for version in ("v1", "v2"):
            out = tmp_path / f"r{trial}{version}.aut"
            write_quietly(t, out, version=version)
            back = ot.read(out)
            assert canonical(back) == canonical(t), (trial, version)


def test_organoidtracker_real_idtracker_session_to_aut(tmp_path):
    """A real idtracker.ai session (20 fish, many NaN gaps): one AUT track per identity, gaps counted."""
    it = pytest.importorskip("trackstore.formats.idtrackerai")
    t = it.read(Path(__file__).parent / "data" / "idtrackerai" / "MoveR_SampleData" / "2602_ISA3080_Low_5.npy")
    f, s, d = t.positions["frame"], t.links["source_id"], t.links["target_id"]
    n_gaps, n_skipped = int((f[d] - f[s] > 1).sum()), int((f[d] - f[s] - 1).clip(0).sum())
    assert n_gaps > 1000
    w = write_quietly(t, tmp_path / "fish.aut")
    assert any(f"{n_gaps} link(s) skip time points" in str(x.message) and f"filled {n_skipped} time point(s)"
               in str(x.message) for x in w)
    d = load_json(tmp_path / "fish.aut")
    assert [tr["lineage_meta"]["identity"] for tr in d["tracks"]] == list(range(1, 21))
    back = ot.read(tmp_path / "fish.aut")
    assert back.n_tracks == 20 and back.n_positions == t.n_positions + n_skipped
    assert len(back.meta("position", "organoidtracker.not_in_positions")) == n_skipped
    w = write_quietly(t, tmp_path / "split.aut", gaps="split")
    assert len(load_json(tmp_path / "split.aut")["tracks"]) == 20 + n_gaps


def test_organoidtracker_ingest_and_export_through_the_api(tmp_path):
    import trackstore

    src = DATA / "kitchen_sink.saved_by_organoidtracker.aut"
    with trackstore.open_store(tmp_path / "s.duckdb") as store:
        (rep,) = trackstore.ingest(store, [src], tags={"lab": "jvz"})
        assert rep.status == "ingested" and rep.format == "organoidtracker"
        assert rep.counts["positions"] == 7 and rep.counts["links"] == 5
        again = trackstore.ingest(store, [src])
        assert again[0].status == "skipped"  # same content: ingested once
        paths, warned = trackstore.export(store, rep.session_id, "organoidtracker", tmp_path / "out.aut")
    assert paths == [tmp_path / "out.aut"] and warned == []
    assert strict_equal(free_order(load_json(src)), free_order(load_json(tmp_path / "out.aut"))) is None


def test_organoidtracker_trailing_null_like_organoidtrackers_writer(tmp_path):
    """trailing_null=True writes link_meta_before as OrganoidTracker's own saver does (one extra null)."""
    def parents(path: Path) -> dict:
        out = {}
        for tr in load_json(path)["tracks"]:
            lmb = tr.get("link_meta_before", {})
            for v in lmb.values():
                assert len(v) == len(tr["coords_xyz_px_before"]) + 1 and v[-1] is None
            pairs = [(c, {k: v[j] for k, v in lmb.items()}) for j, c in enumerate(tr.get("coords_xyz_px_before", []))]
            out[json.dumps(tr["coords_xyz_px"][0])] = sorted(map(json.dumps, pairs))  # parent order is free
        return out

    write_quietly(ot.read(DATA / "tiny_v2.aut"), tmp_path / "o.aut", trailing_null=True)
    ours = parents(tmp_path / "o.aut")
    assert ours == parents(DATA / "tiny_v2.resaved_by_organoidtracker.aut") and any(ours.values())


def _v2(tmp_path, positions, tracks, name="t.aut"):
    path = tmp_path / name
    path.write_text(json.dumps({"version": "v2", "positions": positions, "tracks": tracks}))
    return path


def test_a_parent_that_is_only_in_the_tracks_is_found(tmp_path):
    """A track's last position missing from ``positions`` is still a parent its children can name."""
    positions = [{"time_point": 0, "coords_xyz_px": [[1.0, 1.0, 0.0]]}]  # time point 1 is not listed
    tracks = [{"time_point_start": 0, "coords_xyz_px": [[1.0, 1.0, 0.0], [2.0, 2.0, 0.0]]},
              {"time_point_start": 2, "coords_xyz_px": [[3.0, 3.0, 0.0]], "coords_xyz_px_before": [[2.0, 2.0, 0.0]]},
              {"time_point_start": 2, "coords_xyz_px": [[4.0, 4.0, 0.0]], "coords_xyz_px_before": [[2.0, 2.0, 0.0]]}]
    t = ot.read(_v2(tmp_path, positions, tracks))
    t.validate()
    pos = list(zip(t.positions["frame"].tolist(), t.positions["x"].tolist()))
    assert pos == [(0, 1.0), (1, 2.0), (2, 3.0), (2, 4.0)]
    assert t.meta("position", "organoidtracker.not_in_positions").owners.tolist() == [1, 2, 3]
    assert sorted(zip(t.links["source_id"].tolist(), t.links["target_id"].tolist())) == [(0, 1), (1, 2), (1, 3)]


def test_a_position_in_two_tracks_is_an_error(tmp_path):
    positions = [{"time_point": 0, "coords_xyz_px": [[1.0, 1.0, 0.0], [5.0, 5.0, 0.0]]}]
    tracks = [{"time_point_start": 0, "coords_xyz_px": [[5.0, 5.0, 0.0]]},
              {"time_point_start": 0, "coords_xyz_px": [[1.0, 1.0, 0.0]]},
              {"time_point_start": 0, "coords_xyz_px": [[5.0, 5.0, -0.0]]}]
    with pytest.raises(ParseError, match=r"time point 0 \[5.0, 5.0, 0.0\] is in more than one place of the tracks "
                                         r"\(tracks\[0\] and tracks\[2\]\)"):
        ot.read(_v2(tmp_path, positions, tracks))


@pytest.mark.parametrize("text", [b"", b"\\", b'"', b'\\"', b'\\\\"', b'a\\nb"c', b'{"a":"x\\\\y"}',
                                  b'x' * 100 + b'\\"', b'\\u0022', b'"\\"', b'\\\\\\\\'])
def test_escaped_quote_is_a_backslash_before_a_quote(text):
    buf = bytearray(text + b'\\"')  # beyond n: not looked at
    assert oj._escaped_quote(buf, len(text)) == (b'\\"' in text)


def test_owners_of_pending_segments():
    """Owners of a column's pending values: ranges from each segment's first owner, or listed owners."""
    from trackstore.formats._organoidtracker_read import _owners

    assert _owners([(5, [1, 2, 3]), (0, []), (20, [4]), (8, [5, 6])]).tolist() == [5, 6, 7, 20, 8, 9]
    assert _owners([(3, ["a"]), (np.array([7, 1]), ["b", "c"])]).tolist() == [3, 7, 1]
    assert _owners([(0, [])]).tolist() == []


@pytest.mark.parametrize("piece", [1, 50, 1 << 20])
def test_write_file_writes_what_dumps_gives(tmp_path, monkeypatch, piece):
    """The export's streamed writer gives the bytes of one dump, whatever the size of its pieces."""
    monkeypatch.setattr(oj, "PIECE_BYTES", piece)
    doc = {"version": "v2", "positions": [{"time_point": t, "coords_xyz_px": [[t + 0.5, -0.0, 1e300]] * t}
                                          for t in range(7)],
           "tracks": [], "data_axes": [{"x": float("nan")}], "links": {"nodes": [1, {"a": [2]}], "links": [3]},
           "other": ["\x00trackstore:removed-run\x00"]}
    for arrays in ([("positions",), ("tracks",)], [("links", "nodes"), ("links", "links"), ("missing", "x")],
                   [("version",)]):
        out = tmp_path / "out.json"
        oj.write_file(out, doc, arrays)
        assert out.read_bytes() == oj.dumps(doc), arrays
    assert doc["positions"][3]["time_point"] == 3 and doc["links"]["links"] == [3]  # the document is as it was


def test_write_file_reports_a_failed_write(tmp_path):
    """A write that fails on the writer's thread is raised to the caller (and the thread ends)."""
    with pytest.raises(OSError):
        oj.write_file(tmp_path / "no such folder" / "out.json", {"tracks": [1, 2]}, [("tracks",)])

    class Full:
        def __init__(self):
            self.calls = 0

        def write(self, b):
            self.calls += 1
            if self.calls == 2:
                raise OSError(28, "No space left on device")

    w = oj._Writer(Full())
    with pytest.raises(OSError, match="No space"):
        for _ in range(5):
            w.write(b"piece")
        w.close()
    w.close()  # the failure was raised once; the other pieces were written
    assert w.pool._shutdown and w.f.calls >= 3
