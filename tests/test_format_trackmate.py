"""TrackMate XML: real files read exactly and round-trip, any session exports, bad and unsafe input refused."""

from __future__ import annotations

import dataclasses
import math
import re
import subprocess
import sys
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from examples import ALL as EXAMPLES
from trackstore import formats
from trackstore.errors import LossyConversionWarning, ParseError, TrackstoreWarning, UnsafeInputError, WriteError
from trackstore.formats import _trackmate_units as units
from trackstore.formats import _trackmate_write, _trackmate_xml, trackmate
from trackstore.ingest import ingest
from trackstore.model import MetaBlock, SessionInfo, TrackTables, compare_tables, derive_tracks

DATA = Path(__file__).parent / "data" / "trackmate"
SHARED = Path(__file__).resolve().parents[2] / "shared"
FIXTURES = sorted(p for p in DATA.glob("*.xml") if not p.name.startswith("bad_"))
EXACT = [p for p in FIXTURES if p.name != "minimal.xml"]  # minimal.xml gains default Settings and Log
SHARED_FILES = sorted((SHARED / "data" / "trackmate").glob("*/*.xml")) if (SHARED / "data").is_dir() else []
LXML = [True, False] if _trackmate_xml._lxml is not None else [False]
JAVA_DOUBLE = re.compile(r"^(NaN|-?Infinity|[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)$")


def _read(path: Path, **kw) -> TrackTables:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrackstoreWarning)
        return trackmate.read(path, **kw)


def _write(t: TrackTables, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrackstoreWarning)
        trackmate.write(t, path, overwrite=True)
    return path


def _reference(path: Path) -> dict:
    """The file as TrackMate's reader sees it, parsed whole with ElementTree (small files only)."""
    root = ET.parse(path).getroot()
    model = root.find("Model")
    decl = {g.tag: {f.get("feature"): f.get("isint") == "true" for f in g} for g in model.find("FeatureDeclarations")}
    spots = {}
    for frame in model.find("AllSpots"):
        for s in frame:
            spots[int(s.get("ID"))] = (int(frame.get("frame")), dict(s.attrib), (s.text or "").strip())
    tracks = [(dict(t.attrib), [dict(e.attrib) for e in t]) for t in model.find("AllTracks")]
    filtered = [tid.get("TRACK_ID") for tid in model.find("FilteredTracks")]
    return {"root": root, "model": model, "decl": decl, "spots": spots, "tracks": tracks, "filtered": filtered}


def _block_value(t: TrackTables, scope: str, key: str, owner: int):
    b = t.meta(scope, key)
    if b is None:
        return None
    hit = np.flatnonzero(b.owners == owner)
    return b.values[hit[0]] if len(hit) else None


def _same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))


# ------------------------------------------------------------------------------------------ sniff
def test_trackmate_sniff_accepts_trackmate_xml_only(tmp_path):
    for p in FIXTURES + [DATA / "bad_billion_laughs.xml", DATA / "bad_xxe.xml"]:
        assert trackmate.sniff(p), p
    assert not trackmate.sniff(DATA / "bad_root_element.xml")
    (tmp_path / "comment.xml").write_text('<?xml version="1.0"?>\n<!-- <TrackMate> in a comment -->\n<Other/>\n')
    assert not trackmate.sniff(tmp_path / "comment.xml")
    (tmp_path / "utf16.xml").write_bytes('<?xml version="1.0" encoding="UTF-16"?><TrackMate/>'.encode("utf-16"))
    assert trackmate.sniff(tmp_path / "utf16.xml")
    assert not trackmate.sniff(tmp_path / "missing.xml")
    assert not trackmate.sniff(tmp_path)
    assert formats.detect_format(DATA / "minimal.xml") is trackmate
    assert formats.list_formats()["trackmate"]["suffixes"] == (".xml",)


# --------------------------------------------------------------------------- reading, value by value
@pytest.mark.parametrize("path", FIXTURES + SHARED_FILES, ids=lambda p: p.name)
def test_trackmate_read_keeps_every_spot_edge_track_and_feature_value(path):
    """Each attribute of each spot, edge and track, compared with an independent ElementTree read."""
    t = _read(path)
    ref = _reference(path)
    t.validate()
    spot_isint = ref["decl"].get("SpotFeatures", {})
    # spots: every one, singletons included, in spot ID order
    ids = sorted(ref["spots"])
    assert t.positions["native_id"].tolist() == ids
    flat = t.session.image_size[2] in (None, 1) and all(
        a.get("POSITION_Z") in (None, "0.0") for _, a, _ in ref["spots"].values())
    assert ("z" not in t.positions) == flat
    fi = t.session.frame_interval
    for i, sid in enumerate(ids):
        frame, attrs, text = ref["spots"][sid]
        assert t.positions["frame"][i] == frame
        for key, raw in attrs.items():
            if key == "ID":
                continue
            if key == "name":  # TrackMate's default name is not stored
                assert _block_value(t, "position", "name", i) == (None if raw == f"ID{sid}" else raw)
            elif key == "ROI_N_POINTS":
                nums = [float(v) for v in text.split()]
                roi = _block_value(t, "position", "ROI", i)
                assert len(roi) == int(raw) and [c for xy in roi for c in xy] == nums
            elif key in ("POSITION_X", "POSITION_Y", "POSITION_Z", "QUALITY", "RADIUS"):
                col = {"POSITION_X": "x", "POSITION_Y": "y", "POSITION_Z": "z"}.get(key, key.lower())
                got = t.pos(col)[i]
                assert (math.isnan(got) and col == "z" and flat) or _same_float(got, float(raw)), (sid, key)
            elif key == "FRAME":
                assert int(raw) == frame
            elif key == "POSITION_T" and t.meta("position", "POSITION_T") is None:
                assert float(raw) == frame * fi  # POSITION_T is frames.time
            else:
                got = _block_value(t, "position", key, i)
                if spot_isint.get(key):
                    assert type(got) is np.int64 and got == int(raw), (sid, key)
                else:
                    assert type(got) is np.float64 and _same_float(float(got), float(raw)), (sid, key)
    # edges, in file order, forward in time, with every feature
    edge_isint = ref["decl"].get("EdgeFeatures", {})
    edges = [e for _, es in ref["tracks"] for e in es]
    assert t.n_links == len(edges)
    nid, frame = t.positions["native_id"], t.positions["frame"]
    src, dst = t.links["source_id"], t.links["target_id"]
    for k, e in enumerate(edges):
        a, b = int(e["SPOT_SOURCE_ID"]), int(e["SPOT_TARGET_ID"])
        assert {int(nid[src[k]]), int(nid[dst[k]])} == {a, b}
        assert frame[dst[k]] > frame[src[k]]
        for key, raw in e.items():
            if key not in ("SPOT_SOURCE_ID", "SPOT_TARGET_ID"):
                got = _block_value(t, "link", key, k)
                assert (got == int(raw)) if edge_isint.get(key) else _same_float(float(got), float(raw))
    # tracks: one lineage each, with TRACK_ID, name, features and FilteredTracks membership
    with_edges = [(a, es) for a, es in ref["tracks"] if es]
    tid_block = t.meta("lineage", "TRACK_ID") or MetaBlock("lineage", "TRACK_ID", np.empty(0, np.int64), [])
    assert sorted(tid_block.values.tolist()) == sorted(int(a["TRACK_ID"]) for a, _ in with_edges)
    lineage_of_pos = t.tracks["lineage_id"][t.positions["track_id"]]
    for attrs, es in with_edges:
        lin = int(tid_block.owners[tid_block.values == int(attrs["TRACK_ID"])][0])
        spot_ids = {int(e[k]) for e in es for k in ("SPOT_SOURCE_ID", "SPOT_TARGET_ID")}
        assert set(nid[lineage_of_pos == lin].tolist()) == spot_ids
        assert _block_value(t, "lineage", "name", lin) == attrs.get("name")
        visible = attrs["TRACK_ID"] in ref["filtered"]
        assert bool(_block_value(t, "lineage", "visible", lin)) == visible
        assert set(t.tracks["visible"][t.tracks["lineage_id"] == lin].tolist()) == {visible}
        for key, raw in attrs.items():
            if key not in ("name", "TRACK_ID"):
                assert _same_float(float(_block_value(t, "lineage", key, lin)), float(raw)), key


def test_trackmate_read_edge_cases_exactly():
    t = _read(DATA / "edge_cases.xml")
    assert t.positions["native_id"].tolist() == [7, 42, 43, 44, 45, 46, 47, 48, 49, 100]
    assert "z" not in t.positions  # one slice, every POSITION_Z 0.0: a 2D file
    info = t.session
    assert (info.space_unit, info.time_unit, info.frame_interval) == ("micrometre", "second", 2.0)
    assert info.pixel_size == (0.5, 0.5, 1.0) and info.image_size == (32, 24, 1)
    assert t.frames["frame"].tolist() == [0, 1, 2, 3, 4] and t.frames["time"].tolist() == [0, 2, 4, 6, 8]
    # the spot without QUALITY stays without it; the one without name too
    assert math.isnan(t.positions["quality"][2]) and _block_value(t, "position", "trackmate.absent", 2) == "QUALITY"
    assert _block_value(t, "position", "name", 0) is None  # spot 7 has no name
    assert _block_value(t, "position", "name", 9) is None  # spot 100 is called "ID100", TrackMate's default
    assert _block_value(t, "position", "name", 1) == 'a&b <"c">'
    assert t.meta("position", "name").owners.tolist() == [1, 6, 7, 8]  # a&b.., lonely, B1, B2
    mean = t.meta("position", "MEAN_INTENSITY_CH1").values
    assert mean.dtype == np.float64 and np.isposinf(mean[0]) and np.isneginf(mean[1]) and np.isnan(mean[9])
    assert mean[2] == 5e-324 and np.signbit(mean[3]) and mean[3] == 0
    color = t.meta("position", "MANUAL_SPOT_COLOR")
    assert color.values.dtype == np.int64 and color.owners.tolist() == [3, 9]
    assert color.values.tolist() == [255, -16711936]
    assert t.meta("position", "EXTRA_FEATURE").owners.tolist() == [1]  # undeclared, sparse: kept
    assert t.meta("position", "POSITION_T").values.tolist()[4] == 4.5  # not FRAME x interval: kept
    assert _block_value(t, "position", "ROI", 2) == [[-1.0, 0.0], [1.0, 0.0], [0.0, 1.5]]
    # the edge written 46 -> 44 goes forward (44 -> 46) and is marked
    nid = t.positions["native_id"]
    assert (int(nid[t.links["source_id"][3]]), int(nid[t.links["target_id"][3]])) == (44, 46)
    assert t.meta("link", "trackmate.reversed").owners.tolist() == [3]
    assert t.meta("link", "SPEED").owners.tolist() == [0, 1, 2, 3, 4, 5]  # the edge of Track B has none
    # one lineage holds a split (42) and merges (45, 46); Track B is hidden; 43 and 47 are singletons
    src, dst = t.links["source_id"], t.links["target_id"]
    assert np.bincount(src, minlength=10)[1] == 2 and np.bincount(dst, minlength=10)[4] == 2
    vis = dict(zip(nid.tolist(), t.tracks["visible"][t.positions["track_id"]].tolist()))
    assert vis[48] is False and vis[100] is True and vis[47] is True
    assert t.tracks["native_id"][t.positions["track_id"][nid.tolist().index(48)]] == 5
    meta = t.session_meta("trackmate.")
    assert meta["trackmate.spatialunits"] == "micron" and meta["trackmate.timeunits"] == "sec"
    assert meta["trackmate.Log"] == "First line\r\nsecond line with & and <tags>\r\n"
    assert meta["trackmate.empty_tracks"] == [{"name": "Empty", "TRACK_ID": "9", "TRACK_INDEX": "2",
                                              "NUMBER_SPOTS": "0"}]
    assert meta["trackmate.filtered_unknown"] == ["77"]
    assert meta["trackmate.extra"] == [["Model", '<Annotations note="kept as it is"><Note>hello</Note></Annotations>'],
                                       ["TrackMate", '<Custom a="1">text<Child b="2"/>tail</Custom>']]
    assert meta["trackmate.DisplaySettings"].endswith('"note": "a & b"}')
    added = [d["feature"] for d in meta["trackmate.FeatureDeclarations"]["SpotFeatures"]][-1]
    assert added == "EXTRA_FEATURE"


def test_trackmate_read_warns_about_undeclared_features_and_unknown_filtered_tracks():
    with pytest.warns(TrackstoreWarning) as rec:
        trackmate.read(DATA / "edge_cases.xml")
    text = " ".join(str(w.message) for w in rec)
    assert "EXTRA_FEATURE" in text and "TRACK_CUSTOM" in text and "77" in text and "edge_cases.xml" in text


def test_trackmate_real_files_topology():
    """Splits, merges, gaps, singletons, FilteredTracks and 3D, as the README says."""
    def topo(name):
        t = _read(DATA / name)
        s, d, f = t.links["source_id"], t.links["target_id"], t.positions["frame"]
        out, inn = np.bincount(s, minlength=t.n_positions), np.bincount(d, minlength=t.n_positions)
        return t, ((out > 1).sum(), (inn > 1).sum(), ((f[d] - f[s]) > 1).sum(), ((out == 0) & (inn == 0)).sum())

    t, counts = topo("FakeTracks_frames_36-45.xml")
    assert counts == (1, 1, 1, 2) and (t.session.space_unit, t.session.time_unit) == ("pixel", "second")
    t, counts = topo("Ecoli_with_fusions_excerpt.xml")
    assert counts == (1, 1, 1, 0) and t.meta("position", "ROI").owners.tolist() == list(range(6))
    t, counts = topo("NapaTrackMater_frames_44-45.xml")
    assert t.is_3d and counts[0] == 1 and counts[3] == 4
    assert 0 < (~t.tracks["visible"]).sum() < t.n_tracks  # FilteredTracks lists only some tracks
    t, _ = topo("Celegans_frames_0-8.xml")
    assert t.is_3d and (t.session.space_unit, t.session.time_unit) == ("micrometre", "minute")
    assert t.meta("position", "CELL_DIVISION_TIME").owners.size == 1
    t, counts = topo("LabelImage_first_10_spots.xml")
    assert t.n_links == 0 and counts[3] == 10 and t.meta("position", "ROI").owners.size == 10


@pytest.mark.parametrize("raw,space", [("micron", "micrometre"), ("µm", "micrometre"), ("μm", "micrometre"),
                                       ("micrometer", "micrometre"), ("um", "micrometre"), ("pixel", "pixel"),
                                       ("nm", "nanometre"), ("parsec", "parsec"), (None, None)])
def test_trackmate_space_units_normalized(raw, space):
    assert units.space_unit(raw) == space


@pytest.mark.parametrize("raw,time", [("sec", "second"), ("s", "second"), ("min", "minute"), ("minute", "minute"),
                                      ("frame", "frame"), ("h", "hour"), ("ms", "millisecond"), ("fortnight",
                                                                                                  "fortnight")])
def test_trackmate_time_units_normalized(raw, time):
    assert units.time_unit(raw) == time


# ------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("path", EXACT + SHARED_FILES, ids=lambda p: p.name)
def test_trackmate_roundtrip_file_is_exact(path, tmp_path):
    a = _read(path)
    b = _read(_write(a, tmp_path / "out.xml"))
    assert compare_tables(a, b) == []
    same_but_where = dataclasses.replace(a.session, name="out", source_path=b.session.source_path,
                                         source_files=b.session.source_files)
    assert b.session == same_but_where
    c = _read(_write(b, tmp_path / "again.xml"))
    assert (tmp_path / "out.xml").read_bytes() == (tmp_path / "again.xml").read_bytes()  # a fixed point
    assert compare_tables(a, c) == []


@pytest.mark.parametrize("path", EXACT, ids=lambda p: p.name)
def test_trackmate_roundtrip_through_the_store(path, store, tmp_path):
    a = _read(path)
    with store.transaction() as conn:
        sid = store.write_session(conn, a, content_hash=f"a-{path.name}")
    b = store.read_session(sid)
    assert compare_tables(a, b) == []
    c = _read(_write(b, tmp_path / "from_db.xml"))
    assert compare_tables(a, c) == []
    with store.transaction() as conn:
        sid2 = store.write_session(conn, c, content_hash=f"c-{path.name}")
    assert compare_tables(b, store.read_session(sid2)) == []


def test_trackmate_ingest_detects_the_format(store):
    reports = ingest(store, [DATA / "FakeTracks_frames_36-45.xml"])
    assert reports[0].format == "trackmate" and reports[0].counts["positions"] == 43
    t = store.read_session(reports[0].session_id)
    assert t.session.source_format == "trackmate" and t.session.format_version == "3.4.2"


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_trackmate_stdlib_parser_reads_the_same(path):
    assert compare_tables(_read(path, use_lxml=True) if LXML[0] else _read(path), _read(path, use_lxml=False)) == []


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_trackmate_chunk_boundaries_change_nothing(path, tmp_path, monkeypatch):
    """Streaming in tiny chunks (a few rows) gives what one big chunk gives, reading and writing."""
    whole = _read(path)
    out = _write(whole, tmp_path / "whole.xml").read_bytes()
    monkeypatch.setattr(_trackmate_xml, "_CHUNK", 3)
    monkeypatch.setattr(_trackmate_xml, "_READ_BYTES", 1000)
    monkeypatch.setattr(_trackmate_write, "_CHUNK", 4)
    assert compare_tables(whole, _read(path)) == []
    assert _write(whole, tmp_path / "chunked.xml").read_bytes() == out


# --------------------------------------------------------------------------------------- the writer
def _check_trackmate_rules(path: Path, *, allow_unknown_filtered: bool = False) -> dict:
    """What TrackMate's TmXmlReader needs of a file (checked independently of our reader)."""
    ref = _reference(path)
    decl = ref["decl"]
    assert set(decl) >= {"SpotFeatures", "EdgeFeatures", "TrackFeatures"}
    frames = [int(f.get("frame")) for f in ref["model"].find("AllSpots")]
    assert len(frames) == len(set(frames)), "one SpotsInFrame per frame"
    assert int(ref["model"].find("AllSpots").get("nspots")) == len(ref["spots"])
    n_spot_elements = sum(1 for _ in ref["model"].iter("Spot"))
    assert n_spot_elements == len(ref["spots"]), "spot IDs are unique"
    for _, attrs, _ in ref["spots"].values():
        for key, raw in attrs.items():
            if key not in ("ID", "name", "ROI_N_POINTS"):
                assert key in decl["SpotFeatures"], f"undeclared spot feature {key}"
                assert JAVA_DOUBLE.match(raw), (key, raw)
                if decl["SpotFeatures"][key]:
                    assert re.fullmatch(r"-?\d+", raw), (key, raw)
    pairs = set()
    for attrs, edges in ref["tracks"]:
        assert re.fullmatch(r"-?\d+", attrs["TRACK_ID"])
        for key, raw in attrs.items():
            if key != "name":
                assert key in decl["TrackFeatures"] and JAVA_DOUBLE.match(raw), key
        for e in edges:
            a, b = int(e["SPOT_SOURCE_ID"]), int(e["SPOT_TARGET_ID"])
            assert a in ref["spots"] and b in ref["spots"] and a != b
            assert frozenset((a, b)) not in pairs
            pairs.add(frozenset((a, b)))
            for key, raw in e.items():
                assert key in decl["EdgeFeatures"], f"undeclared edge feature {key}"
                assert re.fullmatch(r"-?\d+", raw) if decl["EdgeFeatures"][key] else JAVA_DOUBLE.match(raw)
    track_ids = [a["TRACK_ID"] for a, _ in ref["tracks"]]
    assert len(track_ids) == len(set(track_ids))
    if not allow_unknown_filtered:
        assert set(ref["filtered"]) <= set(track_ids)
    settings_ = ref["root"].find("Settings")
    assert settings_ is not None and settings_.find("ImageData") is not None
    return ref


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_trackmate_written_file_follows_trackmate_rules(path, tmp_path):
    _check_trackmate_rules(_write(_read(path), tmp_path / "out.xml"), allow_unknown_filtered=True)


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_trackmate_exports_every_example(name, tmp_path):
    a = EXAMPLES[name]()
    out = _write(a, tmp_path / f"{name}.xml")
    ref = _check_trackmate_rules(out)
    assert len(ref["spots"]) == a.n_positions
    b = _read(out)
    # same positions (in the same order: spot IDs are the position indices) and links
    for col in ("frame", "x", "y", "z", "quality", "radius"):
        assert np.array_equal(a.pos(col), b.pos(col), equal_nan=True), col
    assert sorted(zip(a.links["source_id"].tolist(), a.links["target_id"].tolist())) == \
        sorted(zip(b.links["source_id"].tolist(), b.links["target_id"].tolist()))
    assert np.array_equal(a.track_col("lineage_id"), b.track_col("lineage_id"))
    assert b.positions["native_id"].tolist() == list(range(a.n_positions))
    # one TrackMate track per lineage that has links, every one visible
    linked_lineages = a.track_col("lineage_id")[a.positions["track_id"][a.links["source_id"]]]
    assert len(ref["tracks"]) == len(np.unique(linked_lineages))
    assert len(ref["filtered"]) == len(ref["tracks"])
    assert compare_tables(b, _read(_write(b, tmp_path / "again.xml"))) == []


def test_trackmate_export_warns_for_what_it_cannot_hold(tmp_path):
    t = EXAMPLES["division"]()
    n = t.n_positions
    t.add_meta("position", "cell_type", np.array(["stem"] * n, dtype=object), np.arange(n))
    t.add_meta("position", "intensity", np.linspace(0, 1, n), np.arange(n))
    t.add_meta("position", "idtrackerai.attributes_json", np.array(["{}"] * n, dtype=object), np.arange(n))
    t.add_meta("track", "TRACK_MEAN_SPEED", np.ones(t.n_tracks), np.arange(t.n_tracks))
    t.add_meta("session", "experiment", "control")
    t.add_meta("session", "organoidtracker.other_data", {"drug": "none"})
    t.add_meta("position", "QUALITY", np.ones(n), np.arange(n))
    with pytest.warns(LossyConversionWarning) as rec:
        trackmate.write(t, tmp_path / "d.xml")
    text = " ".join(str(w.message) for w in rec)
    assert "'cell_type'" in text and "tracklet names" in text and "d.xml" in text
    assert "track metadata 'TRACK_MEAN_SPEED'" in text and "session metadata 'experiment'" in text
    assert "position metadata 'QUALITY'" in text
    # numeric: written; other formats' private keys: not data
    assert "intensity" not in text and "idtrackerai" not in text and "organoidtracker" not in text
    b = _read(tmp_path / "d.xml")
    assert b.meta("position", "intensity").values.tolist() == np.linspace(0, 1, n).tolist()
    assert b.meta("position", "cell_type") is None


def test_trackmate_export_keeps_identities_and_origins(tmp_path):
    """idtracker.ai-like session: each animal (identity) becomes a track; gap-closed positions are marked."""
    t = EXAMPLES["gap"]()
    t.tracks["identity"] = np.array([3], dtype=object)
    t.positions["origin"] = np.array([0, 1, 1, 0], np.int8)
    b = _read(_write(t, tmp_path / "id.xml"))
    assert b.tracks["identity"].tolist() == [3] and b.positions["origin"].tolist() == [0, 1, 1, 0]
    assert b.meta("lineage", "IDENTITY") is None and b.meta("position", "ORIGIN") is None
    ref = _reference(tmp_path / "id.xml")
    assert ref["tracks"][0][0]["IDENTITY"] == "3" and "IDENTITY" in ref["decl"]["TrackFeatures"]


def test_trackmate_export_of_merges_and_divisions_of_another_format(tmp_path):
    """An AUT-like lineage with a division and a merge becomes one TrackMate track holding both."""
    t = TrackTables.from_columns(frame=[0, 1, 2, 2, 3], x=[0.0, 1, 2, 3, 4], y=[0.0] * 5, z=[1.0, 2, 3, 4, 5],
                                 links=([0, 1, 1, 2, 3], [1, 2, 3, 4, 4]),
                                 session=SessionInfo(name="aut", source_format="organoidtracker",
                                                     space_unit="pixel", time_unit="minute", frame_interval=12.0,
                                                     pixel_size=(0.3, 0.3, 2.0), physical_unit="micrometre"))
    tr, lin = derive_tracks(5, t.links["source_id"], t.links["target_id"], t.positions["frame"])
    t.positions["track_id"] = tr
    t.tracks = {"lineage_id": lin, "visible": np.ones(len(lin), bool)}
    with pytest.warns(LossyConversionWarning, match="pixel size"):
        trackmate.write(t, tmp_path / "aut.xml")
    ref = _check_trackmate_rules(tmp_path / "aut.xml")
    assert len(ref["tracks"]) == 1 and len(ref["tracks"][0][1]) == 5
    assert ref["model"].get("spatialunits") == "pixel" and ref["model"].get("timeunits") == "min"
    img = ref["root"].find("Settings/ImageData")
    assert (img.get("pixelwidth"), img.get("timeinterval"), img.get("nslices")) == ("1.0", "12.0", "6")
    assert [float(a["POSITION_T"]) for _, a, _ in ref["spots"].values()] == [0, 12, 24, 24, 36]
    b = _read(tmp_path / "aut.xml")
    assert b.session.time_unit == "minute" and b.session.frame_interval == 12.0
    assert compare_tables(t, b, check_ids=False, ignore_meta=[m.key for m in b.metadata]) == [
        "positions.native_id present in one only"]


def _other_format(name: str):
    try:
        return formats.get_format(name)
    except Exception as e:  # a missing extra of another format
        pytest.skip(f"{name} format unavailable: {e}")


def test_trackmate_exports_idtrackerai_identities_as_tracks(tmp_path):
    src = Path(__file__).parent / "data" / "idtrackerai" / "aniread-extdata" / "idtracker.csv"
    a = _read_other(_other_format("idtrackerai"), src)
    ref = _check_trackmate_rules(_write(a, tmp_path / "animals.xml"))
    assert sorted(int(attrs["IDENTITY"]) for attrs, _ in ref["tracks"]) == list(range(1, 9))  # one per animal
    b = _read(tmp_path / "animals.xml")
    assert sorted(b.track_col("identity").tolist()) == sorted(a.track_col("identity").tolist())
    assert compare_tables(a, b, check_ids=False, ignore_meta=[m.key for m in a.metadata + b.metadata]) == [
        "positions.native_id present in one only"]
    assert b.session.frame_interval == a.session.frame_interval and b.session.time_unit == "second"


def test_trackmate_exports_an_aut_lineage_with_divisions_and_merges(tmp_path):
    src = SHARED / "data" / "organoidtracker" / "generated_with_organoidtracker" / "small_v2.aut"
    if not src.exists():
        pytest.skip("shared OrganoidTracker sample not next to the repository")
    a = _read_other(_other_format("organoidtracker"), src)
    s, d = a.links["source_id"], a.links["target_id"]
    assert (np.bincount(s) > 1).any() and (np.bincount(d) > 1).any()  # the sample has both
    ref = _check_trackmate_rules(_write(a, tmp_path / "aut.xml"))
    b = _read(tmp_path / "aut.xml")
    assert compare_tables(a, b, check_ids=False, ignore_meta=[m.key for m in a.metadata + b.metadata]) == [
        "positions.native_id present in one only"]
    lineages = a.track_col("lineage_id")[a.positions["track_id"][s]]
    assert len(ref["tracks"]) == len(np.unique(lineages))


def _read_other(module, path: Path) -> TrackTables:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return module.read(path)


def test_trackmate_write_refuses_an_existing_file(tmp_path):
    t = EXAMPLES["linear"]()
    trackmate.write(t, tmp_path / "x.xml")
    with pytest.raises(WriteError, match="already exists") as e:
        trackmate.write(t, tmp_path / "x.xml")
    assert "x.xml" in str(e.value)
    assert trackmate.write(t, tmp_path / "x.xml", overwrite=True) == [tmp_path / "x.xml"]


def test_trackmate_minimal_file_gets_sane_defaults(tmp_path):
    a = _read(DATA / "minimal.xml")
    assert a.n_positions == 3 and a.n_links == 2 and a.session.frame_interval is None
    ref = _check_trackmate_rules(_write(a, tmp_path / "m.xml"))
    assert ref["root"].find("Settings/DetectorSettings").get("DETECTOR_NAME") == "MANUAL_DETECTOR"
    b = _read(tmp_path / "m.xml")
    assert compare_tables(a, b, ignore_meta=["trackmate.Settings", "trackmate.Log", "trackmate.GUIState"]) == []


# ------------------------------------------------------------------------------- properties (hypothesis)
# a NaN's sign has no text (Java's Double.toString has one "NaN" too): NaNs are drawn positive
_floats = st.floats(allow_nan=True, allow_infinity=True, width=64).map(lambda v: math.nan if v != v else v) | \
    st.sampled_from([0.0, -0.0, 5e-324, 1e16, 1e-7, 2.0**53 + 2])
_names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")) | st.sampled_from("\t\n\r&<>\"'"),
                 max_size=12)


@settings(max_examples=60, deadline=None)
@given(xs=st.lists(_floats, min_size=1, max_size=6), names=st.lists(_names, min_size=6, max_size=6),
       ints=st.lists(st.integers(-(2**63), 2**63 - 1), min_size=6, max_size=6))
def test_trackmate_any_float_int_and_name_round_trips_exactly(tmp_path_factory, xs, names, ints):
    n = len(xs)
    t = TrackTables.from_columns(frame=list(range(n)), x=xs, y=xs[::-1], quality=xs, radius=[abs(v) for v in xs],
                                 links=(list(range(n - 1)), list(range(1, n))))
    tr, lin = derive_tracks(n, t.links["source_id"], t.links["target_id"])
    t.positions["track_id"] = tr
    t.tracks = {"lineage_id": lin, "visible": np.ones(len(lin), bool)}
    t.add_meta("position", "name", np.array(names[:n], dtype=object), np.arange(n))
    t.add_meta("position", "FEATURE", np.array(xs, np.float64), np.arange(n))
    t.add_meta("position", "COUNT", np.array(ints[:n], np.int64), np.arange(n))
    if n > 1:
        t.add_meta("link", "COST", np.array(xs[: n - 1], np.float64), np.arange(n - 1))
    out = tmp_path_factory.mktemp("h") / "h.xml"
    b = _read(_write(t, out))
    back = b.meta("position", "name")
    names_back = [f"ID{i}" for i in range(n)]  # TrackMate's default, not stored
    for o, v in zip([] if back is None else back.owners.tolist(), [] if back is None else back.values.tolist()):
        names_back[o] = v
    assert names_back == names[:n]
    for key in ("FEATURE", "COUNT") + (("COST",) if n > 1 else ()):
        scope = "link" if key == "COST" else "position"
        assert compare_tables(TrackTables(metadata=[t.meta(scope, key)]),
                              TrackTables(metadata=[b.meta(scope, key)])) == []
    for col in ("x", "y", "quality", "radius"):
        assert np.array_equal(t.pos(col).view(np.int64), b.pos(col).view(np.int64)) or \
            all(_same_float(p, q) for p, q in zip(t.pos(col), b.pos(col))), col


# ------------------------------------------------------------------------------------- bad input
BAD = [
    ("bad_billion_laughs.xml", UnsafeInputError, ["DOCTYPE", "billion laughs"]),
    ("bad_xxe.xml", UnsafeInputError, ["DOCTYPE", "XXE"]),
    ("bad_not_well_formed.xml", ParseError, ["not well-formed", "line 30"]),
    ("bad_undefined_entity.xml", ParseError, ["not well-formed", "line 26"]),
    ("bad_root_element.xml", ParseError, ["root element", "<Experiment>"]),
    ("bad_no_model.xml", ParseError, ["<Model>"]),
    ("bad_spot_without_id.xml", ParseError, ["spot number 2", "no ID"]),
    ("bad_duplicate_spot_id.xml", ParseError, ["spot ID 2", "more than one spot"]),
    ("bad_feature_not_a_number.xml", ParseError, ["spot ID 2", "QUALITY='high'", "not a number"]),
    ("bad_edge_to_missing_spot.xml", ParseError, ["edge 2", "Track_0", "SPOT_TARGET_ID=99"]),
    ("bad_self_loop_edge.xml", ParseError, ["edge 2", "spot ID 2 to itself"]),
    ("bad_same_frame_edge.xml", ParseError, ["edge 3", "frame 0", "IDs 1 and 4"]),
    ("bad_duplicate_edge.xml", ParseError, ["edge 3", "repeats", "spot IDs 3 and 2"]),
    ("bad_track_not_connected.xml", ParseError, ["'Track_0'", "not connected"]),
    ("bad_tracks_share_spots.xml", ParseError, ["'Track_0' and 'Track_1'", "share spots"]),
    ("bad_frame_mismatch.xml", ParseError, ["spot ID 2", "FRAME=5", 'frame="1"']),
    ("bad_duplicate_track_id.xml", ParseError, ["TRACK_ID 0", "more than one track"]),
    ("bad_spot_inside_spot.xml", ParseError, ["<Mesh>", "<Spot>"]),
]


@pytest.mark.parametrize("use_lxml", LXML, ids=lambda v: "lxml" if v else "stdlib")
@pytest.mark.parametrize("name,error,words", BAD, ids=[b[0] for b in BAD])
def test_trackmate_bad_file_is_refused_with_a_clear_message(name, error, words, use_lxml):
    with pytest.raises(error) as e:
        trackmate.read(DATA / name, use_lxml=use_lxml)
    msg = str(e.value)
    assert name in msg
    for w in words:
        assert w in msg, (w, msg)


@pytest.mark.parametrize("use_lxml", LXML, ids=lambda v: "lxml" if v else "stdlib")
@pytest.mark.parametrize("name", ["bad_billion_laughs.xml", "bad_xxe.xml"])
def test_trackmate_parsers_refuse_a_dtd_even_past_the_prolog_check(name, use_lxml, monkeypatch):
    """Defence in depth: with the byte check switched off, both parsers still stop at the DOCTYPE."""
    monkeypatch.setattr(_trackmate_xml, "check_prolog", lambda path: None)
    with pytest.raises(UnsafeInputError, match="DOCTYPE"):
        _trackmate_xml.parse(DATA / name, use_lxml=use_lxml)


def test_trackmate_prolog_check_reads_utf16_and_long_comments(tmp_path):
    p = tmp_path / "u16.xml"
    p.write_bytes('<?xml version="1.0" encoding="UTF-16"?>\n<!DOCTYPE x [<!ENTITY a "b">]>\n<TrackMate/>'
                  .encode("utf-16"))
    with pytest.raises(UnsafeInputError):
        _trackmate_xml.check_prolog(p)
    p.write_text("<!--" + "x" * 200_000 + "-->\n<!DOCTYPE TrackMate>\n<TrackMate/>")
    with pytest.raises(UnsafeInputError):
        _trackmate_xml.check_prolog(p)
    p.write_text("<!--" + "x" * 200_000 + "-->\n<TrackMate/>")
    _trackmate_xml.check_prolog(p)
    p.write_text("hello")
    with pytest.raises(ParseError, match="not an XML file"):
        _trackmate_xml.check_prolog(p)


def test_trackmate_roi_text_that_does_not_match_its_point_count_is_kept_verbatim(tmp_path):
    text = (DATA / "minimal.xml").read_text()
    text = text.replace('FRAME="0" RADIUS="1.0" />', 'FRAME="0" RADIUS="1.0" ROI_N_POINTS="3">1.0 2.0 3.0</Spot>')
    text = text.replace('FRAME="1" RADIUS="1.0" />',
                        'FRAME="1" RADIUS="1.0" ROI_N_POINTS="2"> 0.5 -0.5\n 1E-3 7 </Spot>')
    (tmp_path / "odd.xml").write_text(text)
    with pytest.warns(TrackstoreWarning, match="1 spot.*ROI_N_POINTS.*spot ID 1"):
        t = trackmate.read(tmp_path / "odd.xml")
    assert _block_value(t, "position", "ROI", 1) == [[0.5, -0.5], [0.001, 7.0]]
    assert _block_value(t, "position", "trackmate.ROI_N_POINTS", 0) == 3
    assert _block_value(t, "position", "trackmate.ROI_text", 0) == "1.0 2.0 3.0"
    b = _read(_write(t, tmp_path / "back.xml"))
    assert compare_tables(t, b, ignore_meta=["trackmate.Settings", "trackmate.Log", "trackmate.GUIState"]) == []
    assert '"3">1.0 2.0 3.0</Spot>' in (tmp_path / "back.xml").read_text()


def test_trackmate_read_rejects_unknown_options():
    with pytest.raises(ParseError, match="unknown read option"):
        trackmate.read(DATA / "minimal.xml", frames="all")


# --------------------------------------------------------------------------- generated files (shared tool)
GEN = SHARED / "tools" / "gen_trackmate.py"


@pytest.mark.skipif(not GEN.exists(), reason="shared/tools/gen_trackmate.py is not next to the repository")
@pytest.mark.parametrize("extra", [[], ["--depth", "8", "--roi-points", "5"]], ids=["2d", "3d_roi"])
def test_trackmate_generated_file_reads_and_round_trips(extra, tmp_path):
    out = tmp_path / "gen.xml"
    subprocess.run([sys.executable, str(GEN), "--frames", "30", "--per-frame", "40", "--p-die", "0.02",
                    "--p-div", "0.02", "--p-gap", "0.02", "--out", str(out), *extra], check=True, capture_output=True)
    t = _read(out)
    ref = _reference(out)
    assert t.n_positions == len(ref["spots"]) and t.n_links == sum(len(es) for _, es in ref["tracks"])
    assert t.is_3d == bool(extra) and (t.meta("position", "ROI") is not None) == bool(extra)
    assert t.meta("position", "POSITION_T") is None  # FRAME x 5.0 for every spot: frames.time
    assert t.session.space_unit == "micrometre" and t.session.time_unit == "second"
    assert compare_tables(t, _read(_write(t, tmp_path / "back.xml"))) == []


@pytest.mark.skipif(not GEN.exists(), reason="shared/tools/gen_trackmate.py is not next to the repository")
def test_trackmate_parse_holds_a_bounded_python_working_set(tmp_path, monkeypatch):
    """Streaming: the Python objects alive while parsing do not grow with the file (5x the spots)."""
    import tracemalloc

    monkeypatch.setattr(_trackmate_xml, "_CHUNK", 256)
    _trackmate_xml.parse(DATA / "edge_cases.xml")  # first-use imports are not the working set
    peaks = []
    for frames in (10, 50):
        out = tmp_path / f"g{frames}.xml"
        subprocess.run([sys.executable, str(GEN), "--frames", str(frames), "--per-frame", "300", "--out", str(out)],
                       check=True, capture_output=True)
        tracemalloc.start()
        raw = _trackmate_xml.parse(out)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert raw.spots.n >= frames * 300
    assert peaks[1] < 1.5 * peaks[0], peaks

