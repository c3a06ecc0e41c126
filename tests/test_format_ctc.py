"""CTC folders: reading real GT/RES data, consistency checks and repairs, exact round trips."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")

from examples import ALL as EXAMPLES  # noqa: E402
from trackstore.errors import (  # noqa: E402
    LossyConversionWarning,
    ParseError,
    TrackstoreWarning,
    ValidationError,
    WriteError,
)
from trackstore.formats import _ctc_tiff, ctc  # noqa: E402
from trackstore.formats._ctc_topology import parse_track_file  # noqa: E402
from trackstore.model import TrackTables, compare_tables  # noqa: E402

DATA = Path(__file__).parent / "data" / "ctc"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ctc"

REAL = ["java_gt/TRA", "java_res", "official_03_GT/TRA", "official_03_RES", "organoidtracker_3d_GT/TRA"]


def _shared_folders() -> list[Path]:
    """Every CTC folder of the shared sample collection, when it is next to the repo."""
    if not SHARED.is_dir():
        return []
    return sorted({p.parent for p in SHARED.rglob("*_track.txt") if list(p.parent.glob("*.tif"))})


def _rows(folder: Path) -> list[tuple[int, int, int, int]]:
    txt = next(p for p in folder.iterdir() if p.name in ("man_track.txt", "res_track.txt"))
    return [(r.label, r.begin, r.end, r.parent) for r in parse_track_file(txt)]


def _masks(folder: Path) -> list[np.ndarray]:
    return [tifffile.imread(p) for p in sorted(folder.glob("*.tif"))]


def _read_quiet(path, **kw) -> TrackTables:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrackstoreWarning)
        return ctc.read(path, **kw)


# ------------------------------------------------------------------------------------------- sniff
def test_ctc_sniff_accepts_folders_and_track_files_only(tmp_path):
    assert ctc.sniff(DATA / "java_res")
    assert ctc.sniff(DATA / "java_gt")  # a *_GT folder with TRA/
    assert ctc.sniff(DATA / "java_gt" / "TRA" / "man_track.txt")
    assert not ctc.sniff(DATA)
    (tmp_path / "res_track.txt").write_text("not a track file\n")
    assert not ctc.sniff(tmp_path)
    assert not ctc.sniff(tmp_path / "missing")


# -------------------------------------------------------------------------------------------- read
def test_ctc_read_official_gt_topology_and_centroids():
    t = ctc.read(DATA / "official_03_GT")  # the *_GT folder; TRA/ is found inside
    assert (t.n_positions, t.n_links, t.n_tracks) == (25, 19, 10)
    f, lab = t.positions["frame"], t.positions["native_id"]
    src, dst = t.links["source_id"], t.links["target_id"]
    pairs = {(int(lab[s]), int(f[s]), int(lab[d]), int(f[d])) for s, d in zip(src, dst)}
    assert (4, 2, 6, 4) in pairs  # "6 4 5 4": a gap link from the parent's last frame
    assert {(1, 3, 9, 5), (1, 3, 10, 4)} <= pairs  # 9 and 10 are children of 1 (a gap division)
    assert (1, 0, 1, 1) in pairs and (12, 2, 12, 3) in pairs
    assert list(t.tracks["native_id"]) == [1, 2, 3, 4, 5, 6, 7, 9, 10, 12]
    # centroid, size and bbox of one label against a direct computation
    img = tifffile.imread(DATA / "official_03_GT/TRA/man_track002.tif")
    yx = np.argwhere(img == 12)
    i = int(np.flatnonzero((lab == 12) & (f == 2))[0])
    assert t.positions["x"][i] == pytest.approx(yx[:, 1].mean())
    assert t.positions["y"][i] == pytest.approx(yx[:, 0].mean())
    assert np.isnan(t.positions["z"][i])
    assert t.meta("position", "area").values[i] == len(yx)
    assert t.meta("position", "bbox_x_min").values[i] == yx[:, 1].min()
    assert t.meta("position", "bbox_y_max").values[i] == yx[:, 0].max()
    assert t.session_meta("ctc.") == {"ctc.kind": "GT", "ctc.digits": 3, "ctc.mask_shape": [700, 1100],
                                      "ctc.mask_dtype": "uint16", "ctc.compression": "LZW"}
    lin = t.tracks["lineage_id"]
    tracks = {int(n): k for k, n in enumerate(t.tracks["native_id"])}
    assert lin[tracks[1]] == lin[tracks[9]] == lin[tracks[10]] != lin[tracks[2]]


def test_ctc_read_3d_volumes_and_slices():
    t = ctc.read(DATA / "organoidtracker_3d_GT")
    assert t.is_3d and t.session.image_size == (80, 80, 8)
    img = tifffile.imread(DATA / "organoidtracker_3d_GT/TRA/man_track000.tif")
    zyx = np.argwhere(img == 3)
    i = int(np.flatnonzero((t.positions["native_id"] == 3) & (t.positions["frame"] == 0))[0])
    assert (t.positions["z"][i], t.positions["y"][i], t.positions["x"][i]) == pytest.approx(tuple(zyx.mean(0)))
    assert t.meta("position", "volume").values[i] == len(zyx)
    assert t.meta("position", "area") is None and t.meta("position", "bbox_z_min") is not None


def test_ctc_lzw_fallback_decoder_matches_imagecodecs():
    pytest.importorskip("imagecodecs")
    for path in sorted((DATA / "official_03_RES").glob("*.tif"))[:3]:
        with tifffile.TiffFile(path) as tf:
            expected = tf.asarray()
            got = _ctc_tiff._read_lzw_pages(tf, path)
        assert got.dtype == expected.dtype and np.array_equal(got, expected)


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("folder", [DATA / r for r in REAL] + _shared_folders(), ids=lambda p: str(p)[-40:])
def test_ctc_roundtrip_real_folder_is_exact(folder, tmp_path):
    t = ctc.read(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LossyConversionWarning)  # nothing may be lost
        written = ctc.write(t, tmp_path / "out")
    assert _rows(tmp_path / "out") == _rows(folder)
    original, copy = _masks(folder), _masks(tmp_path / "out")
    assert len(original) == len(copy) == len(written) - 1
    for a, b in zip(original, copy):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    assert compare_tables(t, ctc.read(tmp_path / "out")) == []


def test_ctc_roundtrip_through_the_store(store, tmp_path):
    t = ctc.read(DATA / "official_03_RES")
    with store.transaction() as conn:
        sid = store.write_session(conn, t, content_hash="x")
    back = store.read_session(sid)
    assert compare_tables(t, back) == []
    ctc.write(back, tmp_path / "out")
    assert _rows(tmp_path / "out") == _rows(DATA / "official_03_RES")
    for a, b in zip(_masks(DATA / "official_03_RES"), _masks(tmp_path / "out")):
        assert np.array_equal(a, b)


def test_ctc_digits_and_kind_are_kept(tmp_path):
    t = ctc.read(DATA / "java_gt")
    ctc.write(t, tmp_path / "four", digits=4)
    assert (tmp_path / "four" / "man_track0005.tif").is_file() and (tmp_path / "four" / "man_track.txt").is_file()
    back = ctc.read(tmp_path / "four")
    assert back.session_meta()["ctc.digits"] == 4
    ctc.write(back, tmp_path / "res", kind="RES")
    assert sorted(p.name for p in (tmp_path / "res").iterdir())[-1] == "res_track.txt"
    assert (tmp_path / "res" / "mask0000.tif").is_file()


# ------------------------------------------------------------------------- consistency
def test_ctc_real_violations_are_reported_and_repaired(tmp_path):
    folder = DATA / "organoidtracker_3d_RES"
    with pytest.warns(TrackstoreWarning) as rec:
        t = ctc.read(folder)
    msg = " ".join(str(w.message) for w in rec)
    assert "label 14: missing from frame(s) 7" in msg and "label 17" in msg and "in no mask" in msg
    assert str(folder) in msg
    assert len(t.session_meta()["ctc.violations"]) == 2
    with pytest.raises(ValidationError) as e:
        ctc.read(folder, strict=True)
    assert len(e.value.problems) == 2 and "label 14" in str(e.value)
    ctc.write(t, tmp_path / "fixed")
    fixed = ctc.read(tmp_path / "fixed", strict=True)  # the export follows the rules
    assert (14, 5, 6, 12) in _rows(tmp_path / "fixed") and 17 not in [r[0] for r in _rows(tmp_path / "fixed")]
    assert fixed.n_positions == t.n_positions


@pytest.mark.parametrize(("fixture", "keywords"), [
    ("bad_label_missing_inside", ["label 1", "missing from frame(s) 1", "linked across the gap"]),
    ("bad_undeclared_label", ["label 7", "frame(s) 1", "not declared"]),
    ("bad_parent_after_child", ["label 2", "begins at frame 1", "parent 1 ends at frame 2"]),
    ("bad_unknown_parent", ["label 2", "parent 9 is not declared"]),
    ("bad_missing_frame", ["frame 1: no mask image", "label 1"]),
])
def test_ctc_bad_fixture_is_repaired_or_refused(fixture, keywords):
    folder = DATA / fixture
    with pytest.warns(TrackstoreWarning) as rec:
        ctc.read(folder)
    msg = " ".join(str(w.message) for w in rec)
    assert str(folder) in msg
    for k in keywords:
        assert k in msg
    with pytest.raises(ValidationError) as e:
        ctc.read(folder, strict=True)
    assert str(folder) in str(e.value) and all(k in str(e.value) for k in keywords)


@pytest.mark.parametrize(("fixture", "keywords"), [
    ("bad_track_file_fields", ["res_track.txt", "line 2", "4 numbers"]),
    ("bad_frame_sizes", ["mask001.tif", "same size"]),
])
def test_ctc_bad_fixture_fails_to_parse(fixture, keywords):
    with pytest.raises(ParseError) as e:
        ctc.read(DATA / fixture)
    for k in keywords:
        assert k in str(e.value)


def test_ctc_hole_becomes_gap_link_then_a_new_label_on_export(tmp_path):
    t = _read_quiet(DATA / "bad_label_missing_inside")
    assert t.n_links == 1 and t.positions["frame"][t.links["target_id"][0]] == 2
    ctc.write(t, tmp_path / "out")
    assert _rows(tmp_path / "out") == [(1, 0, 0, 0), (2, 2, 2, 1)]
    ctc.read(tmp_path / "out", strict=True)


# ------------------------------------------------------------------------------- export
@pytest.mark.parametrize("name", [n for n in EXAMPLES if n != "merge"])
def test_ctc_write_example_is_valid_and_keeps_topology(name, tmp_path):
    ex = EXAMPLES[name]()
    with pytest.warns(LossyConversionWarning) if ex.n_positions else warnings.catch_warnings():
        ctc.write(ex, tmp_path / "out")
    back = ctc.read(tmp_path / "out", strict=True)
    assert back.n_positions == ex.n_positions and back.n_links == ex.n_links
    assert back.is_3d == ex.is_3d
    a = np.lexsort((ex.positions["x"], ex.positions["frame"]))
    b = np.lexsort((back.positions["x"], back.positions["frame"]))
    for col in ("x", "y"):
        assert np.abs(ex.positions[col][a] - back.positions[col][b]).max(initial=0) <= 0.5


def test_ctc_write_gap_as_new_label_with_parent(tmp_path):
    with pytest.warns(LossyConversionWarning):
        ctc.write(EXAMPLES["gap"](), tmp_path / "out")
    assert _rows(tmp_path / "out") == [(1, 0, 1, 0), (2, 4, 5, 1)]
    assert len(list((tmp_path / "out").glob("mask*.tif"))) == 6  # frames 2-3 are empty images


def test_ctc_write_refuses_merges_unless_dropped(tmp_path):
    with pytest.raises(WriteError) as e:
        ctc.write(EXAMPLES["merge"](), tmp_path / "out")
    assert "merges" in str(e.value) and e.value.hint and "drop_merges" in e.value.hint
    assert not (tmp_path / "out").exists()
    with pytest.warns(LossyConversionWarning, match=r"merges \(1 link"):
        ctc.write(EXAMPLES["merge"](), tmp_path / "out", drop_merges=True)
    back = ctc.read(tmp_path / "out", strict=True)
    assert back.n_links == 4


def test_ctc_write_draws_disks_from_radius(tmp_path):
    t = TrackTables.from_columns(frame=[0], x=[20.0], y=[20.0], radius=[5.0])
    with pytest.warns(LossyConversionWarning, match="radius"):
        ctc.write(t, tmp_path / "a")
    area = int(ctc.read(tmp_path / "a").meta("position", "area").values[0])
    assert abs(area - np.pi * 25) < 10
    with pytest.warns(LossyConversionWarning):
        ctc.write(t, tmp_path / "b", radius=2)
    assert int(ctc.read(tmp_path / "b").meta("position", "area").values[0]) == 13


def test_ctc_write_names_everything_lost(tmp_path):
    t = EXAMPLES["linear"]()
    t.add_meta("position", "intensity", np.ones(4), np.arange(4))
    t.add_meta("session", "trackmate.settings", "<Settings/>")
    with pytest.warns(LossyConversionWarning) as rec:
        ctc.write(t, tmp_path / "out")
    msg = str(rec[0].message)
    for what in ("'intensity'", "'trackmate.settings'", "track names", "sub-pixel coordinates"):
        assert what in msg


def test_ctc_write_refuses_existing_target_and_overwrite_removes_stale_frames(tmp_path):
    t = ctc.read(DATA / "java_res")
    ctc.write(t, tmp_path / "out")
    with pytest.raises(WriteError, match="already exists"):
        ctc.write(t, tmp_path / "out")
    (tmp_path / "out" / "mask009.tif").write_bytes(b"stale")
    (tmp_path / "out" / "notes.md").write_text("mine")
    ctc.write(t, tmp_path / "out", overwrite=True)
    assert not (tmp_path / "out" / "mask009.tif").exists() and (tmp_path / "out" / "notes.md").exists()
