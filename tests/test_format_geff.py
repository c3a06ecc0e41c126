"""GEFF groups: real 1.x files round-trip, other formats' metadata survives, pre-1.0 best-effort."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

geff = pytest.importorskip("geff")

from geff.core_io import read_to_memory  # noqa: E402
from geff.validate.tracks import validate_lineages, validate_tracklets  # noqa: E402

from examples import ALL as EXAMPLES  # noqa: E402
from trackstore.errors import ParseError, TrackstoreWarning, WriteError  # noqa: E402
from trackstore.formats import geff as fmt  # noqa: E402
from trackstore.formats import list_formats  # noqa: E402
from trackstore.model import TrackTables, compare_tables  # noqa: E402

DATA = Path(__file__).parent / "data" / "geff"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL = ["ctc_testing_dataset_03_GT.zarr", "organoidtracker_export.geff", "pycellin_ecoli_first40.geff"]
OT = SHARED / "organoidtracker" / "generated_with_organoidtracker"
SHARED_REAL = [SHARED / "geff/Image-Analysis-Hub_pycellin/Ecoli_growth_on_agar_pad.geff",
               SHARED / "geff/derived_geff-1.3.1/ctc_testing_dataset_03_GT.zarr",
               SHARED / "organoidtracker/jvzonlab_OrganoidTracker/Fluo-N3DH-CE 01_GT.geff"]

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # zarr's own, on overwrite


def _track_errors(path: Path) -> list[str]:
    """geff's tracklet and lineage checks on the declared track props."""
    mem = read_to_memory(str(path))
    tnp = mem["metadata"].track_node_props or {}
    errors: list[str] = []
    if "tracklet" in tnp:
        errors += validate_tracklets(mem["node_ids"], mem["edge_ids"], mem["node_props"][tnp["tracklet"]]["values"])[1]
    if "lineage" in tnp:
        errors += validate_lineages(mem["node_ids"], mem["edge_ids"], mem["node_props"][tnp["lineage"]]["values"])[1]
    return errors


def _valid(path: Path, tracks: bool = True) -> dict:
    """Run geff's validation on a written group; returns its metadata as a dict."""
    geff.validate_structure(str(path))
    if tracks:
        assert _track_errors(path) == []
    return read_to_memory(str(path))["metadata"].model_dump(mode="json")


def _rich(t: TrackTables) -> TrackTables:
    """An example with metadata of every kind other formats produce."""
    n = t.n_positions
    if n:
        t.add_meta("position", "MEAN_INTENSITY_CH1", np.linspace(1, 2, n), np.arange(n))
        odd = np.empty(3, dtype=object)
        odd[:] = [[1, 2, 3], {"cell_type": "stem", "p": 0.25}, None]
        t.add_meta("position", "aut_list_meta", odd, np.array([0, n - 1, n // 2])[: min(n, 3)] if n >= 3 else
                   np.arange(n))
        if n < 3:
            t.metadata[-1] = type(t.metadata[-1])("position", "aut_list_meta", odd[:n], np.arange(n))
        t.add_meta("position", "label", np.array(["a"] * n, dtype=object), np.arange(n))
        t.add_meta("position", "f32", np.array([np.float32(0.5)] * n, dtype=object), np.arange(n))
        t.add_meta("position", "polygon", np.array([np.ones((4, 2)) * i for i in range(n)] + [None],
                                                    dtype=object)[:n], np.arange(n))
        t.add_meta("track", "TRACK_MEAN_SPEED", np.ones(t.n_tracks), np.arange(t.n_tracks))
        t.add_meta("lineage", "color", np.array([[1, 0, 0]], dtype=object), np.array([0]))
        t.positions["quality"] = np.linspace(0, 1, n)
        t.positions["radius"] = np.full(n, 2.5)
    t.add_meta("session", "trackmate.Settings", '<Settings><ImageData width="10"/></Settings>')
    t.add_meta("session", "organoidtracker.other_data", {"drug": "none", "temperature": 37})
    t.add_meta("frame", "image_offset", np.array([[0, 1, 2]] * len(t.frame_numbers()), dtype=object),
               t.frame_numbers())
    if t.n_links:
        t.add_meta("link", "LINK_COST", np.linspace(0, 1, t.n_links), np.arange(t.n_links))
    return t


# ----------------------------------------------------------------------------------------- sniff
def test_geff_sniff_group_and_container(tmp_path):
    assert fmt.sniff(DATA / "organoidtracker_export.geff")
    assert fmt.sniff(DATA / "ctc_testing_dataset_03_GT.zarr")  # holds tracks.geff
    assert fmt.sniff(DATA / "geff_java_0.1.1_HeLa.zarr")
    assert not fmt.sniff(DATA)
    assert not fmt.sniff(Path(__file__).parent / "data" / "ctc" / "java_res")
    assert not fmt.sniff(tmp_path / "nothing")


# ------------------------------------------------------------------------------------------ read
def test_geff_read_ctc_derived_tracklets_and_skip_edges():
    t = fmt.read(DATA / "ctc_testing_dataset_03_GT.zarr")
    assert (t.n_positions, t.n_links, t.n_tracks) == (25, 19, 10)
    gaps = t.positions["frame"][t.links["target_id"]] - t.positions["frame"][t.links["source_id"]]
    assert sorted(gaps.tolist())[-2:] == [2, 2]  # two gap links survive as skip edges
    assert t.positions["native_id"].tolist() == list(range(25))
    assert t.session_meta()["geff.node_id_dtype"] == "uint64"
    tracklet = t.meta("position", "tracklet_id").values
    # positions of one tracklet share one track
    assert len({(a, b) for a, b in zip(tracklet.tolist(), t.positions["track_id"].tolist())}) == 10


def test_geff_read_pycellin_frames_units_polygons_lineages():
    t = fmt.read(DATA / "pycellin_ecoli_first40.geff")
    frame_prop = t.meta("position", "FRAME").values
    assert t.positions["frame"].tolist() == list(frame_prop)  # not POSITION_T (minutes)
    pos_t = t.meta("position", "POSITION_T").values
    assert np.array_equal(pos_t, frame_prop * 5.0)
    assert t.frames["time"].tolist() == sorted(set(pos_t.tolist()))
    assert (t.session.space_unit, t.session.time_unit) == ("micrometre", "minute")
    roi = t.meta("position", "ROI_coords")
    assert all(isinstance(v, np.ndarray) and v.ndim == 2 and v.shape[1] == 2 for v in roi.values)
    assert type(t.meta("position", "cell_name").values[0]) is str
    lineage = t.meta("position", "lineage_ID").values
    per_track = t.tracks["lineage_id"][t.positions["track_id"]]
    assert len(set(zip(lineage.tolist(), per_track.tolist()))) == len(set(lineage.tolist()))
    assert np.array_equal(t.positions["z"], np.zeros(40))


def test_geff_read_organoidtracker_scales_and_missing():
    t = fmt.read(DATA / "organoidtracker_export.geff")
    s = t.session
    assert (s.space_unit, s.pixel_size, s.physical_unit) == ("pixel", (2.0, 0.32, 0.32), "micrometre")
    assert (s.time_unit, s.frame_interval) == ("minute", 12.0)
    assert t.frames["time"].tolist() == [12.0 * f for f in range(8)]
    ending = t.meta("position", "ending")
    assert len(ending) == 1 and ending.values.tolist() == ["dead"]  # 63 missing values left out
    assert t.meta("link", "link_probability") is not None


def test_geff_read_pre_1_0_best_effort_says_what_was_not_read():
    with pytest.warns(TrackstoreWarning) as rec:
        t = fmt.read(DATA / "geff_java_0.1.1_HeLa.zarr")
    msg = " ".join(str(w.message) for w in rec)
    for k in ("pre-1.0 GEFF (version 0.1.1)", "roi_max", "not interpreted", "geff.node_id"):
        assert k in msg
    assert (t.n_positions, t.n_links) == (8639, 8562)
    assert t.meta("position", "geff.node_id").values[0] == "1_0"
    assert t.positions["x"][0] == pytest.approx(463.0488431876607)
    assert len(t.meta("position", "seg_id")) == 8639 - 41


@pytest.mark.parametrize(("fixture", "keywords"), [
    ("bad_edge_to_missing_node.geff", ["edge 1", "does not exist"]),
    ("bad_no_time_axis.geff", ["no time axis"]),
    ("bad_prop_without_metadata.geff", ["invalid GEFF", "Property x"]),
])
def test_geff_bad_fixture_raises_parse_error(fixture, keywords):
    with pytest.raises(ParseError) as e:
        fmt.read(DATA / fixture)
    assert fixture in str(e.value)
    for k in keywords:
        assert k in str(e.value)


# ------------------------------------------------------------------------------------ round trips
def _raw_equal(a: Path, b: Path) -> None:
    """Two GEFF groups hold the same ids, props (dtype, values where present, missing) and metadata."""
    ma, mb = read_to_memory(str(a)), read_to_memory(str(b))
    assert ma["node_ids"].dtype == mb["node_ids"].dtype and np.array_equal(ma["node_ids"], mb["node_ids"])
    assert np.array_equal(ma["edge_ids"], mb["edge_ids"])
    for kind in ("node_props", "edge_props"):
        assert list(ma[kind]) == list(mb[kind]) or set(ma[kind]) == set(mb[kind])
        for name, pa in ma[kind].items():
            pb = mb[kind][name]
            miss_a = np.zeros(len(pa["values"]), bool) if pa["missing"] is None else pa["missing"]
            miss_b = np.zeros(len(pb["values"]), bool) if pb["missing"] is None else pb["missing"]
            assert np.array_equal(miss_a, miss_b), name
            va, vb = pa["values"][~miss_a], pb["values"][~miss_b]
            if va.dtype == object:
                assert all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(va, vb)), name
            else:
                assert va.dtype == vb.dtype, name
                assert np.array_equal(va, vb, equal_nan=va.dtype.kind == "f"), name
    da = ma["metadata"].model_dump(mode="json")
    db = mb["metadata"].model_dump(mode="json")
    for key in ("directed", "axes", "sphere", "ellipsoid", "polygon", "track_node_props", "related_objects",
                "display_hints", "extra"):
        assert da[key] == db[key], key
    for kind in ("node_props_metadata", "edge_props_metadata"):
        assert da[kind] == db[kind]


@pytest.mark.parametrize("path", [DATA / r for r in REAL] + [p for p in SHARED_REAL if p.exists()],
                         ids=lambda p: p.name)
def test_geff_roundtrip_real_file(path, tmp_path):
    t = fmt.read(path)
    fmt.write(t, tmp_path / "out.geff")
    md = _valid(tmp_path / "out.geff", tracks=False)
    group = fmt._find_group(path)
    # the track props stay exactly as valid as they were (geff's own CTC converter writes
    # tracklets that its validator rejects: CTC re-labels are not tracklet ends)
    assert _track_errors(tmp_path / "out.geff") == _track_errors(group)
    assert "trackstore" not in md["extra"]  # a GEFF's own content needs no extra payload
    back = fmt.read(tmp_path / "out.geff")
    assert compare_tables(t, back, ignore_meta=("geff.metadata",)) == []
    _raw_equal(group, tmp_path / "out.geff")


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_geff_roundtrip_examples_with_every_kind_of_metadata(name, tmp_path, store):
    t = _rich(EXAMPLES[name]())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # GEFF holds everything: no warning at all
        fmt.write(t, tmp_path / "a.geff")
    _valid(tmp_path / "a.geff")
    back = fmt.read(tmp_path / "a.geff")
    assert compare_tables(t, back) == []
    assert back.session.name == t.session.name and back.session.frame_interval == t.session.frame_interval
    # ... and through the store and out again
    with store.transaction() as conn:
        sid = store.write_session(conn, back, content_hash=name)
    again = store.read_session(sid)
    fmt.write(again, tmp_path / "b.geff")
    assert compare_tables(t, fmt.read(tmp_path / "b.geff")) == []


def test_geff_declares_tracklets_and_lineages_when_valid(tmp_path):
    fmt.write(EXAMPLES["division"](), tmp_path / "d.geff")
    md = _valid(tmp_path / "d.geff")
    assert md["track_node_props"] == {"tracklet": "track_id", "lineage": "lineage_id"}
    axes = [(a["name"], a["type"], a["unit"]) for a in md["axes"]]
    assert axes == [("t", "time", "frame"), ("y", "space", "pixel"), ("x", "space", "pixel")]
    t = EXAMPLES["division"]()
    t.positions["track_id"] = np.zeros(t.n_positions, np.int64)  # one track with a division: no tracklet
    t.tracks = {k: v[:1] for k, v in t.tracks.items()}
    fmt.write(t, tmp_path / "e.geff")
    md = _valid(tmp_path / "e.geff")
    assert "tracklet" not in (md["track_node_props"] or {})
    assert compare_tables(t, fmt.read(tmp_path / "e.geff")) == []


def test_geff_zarr_v3_roundtrip(tmp_path):
    t = _rich(EXAMPLES["three_d"]())
    fmt.write(t, tmp_path / "v3.geff", zarr_format=3)
    assert (tmp_path / "v3.geff" / "zarr.json").is_file()
    assert compare_tables(t, fmt.read(tmp_path / "v3.geff")) == []


@pytest.mark.parametrize(("source", "path"), [
    ("trackmate", SHARED / "trackmate/Image-Analysis-Hub_pycellin/Ecoli_growth_on_agar_pad_with_fusions.xml"),
    ("trackmate", SHARED / "trackmate/Kapoorlabs-CAPED_NapaTrackMater/tracks.xml"),
    ("organoidtracker", OT / "kitchen_sink.saved_by_organoidtracker.aut"),
    ("organoidtracker", OT / "small_v2.aut"),
])
def test_geff_keeps_other_formats_metadata(source, path, tmp_path):
    if source not in list_formats():
        pytest.skip(f"the {source} format is not registered yet")
    if not path.exists():
        pytest.skip(f"{path} is not available")
    from trackstore.formats import get_format

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrackstoreWarning)
        t = get_format(source).read(path)
    fmt.write(t, tmp_path / "x.geff")
    _valid(tmp_path / "x.geff")
    back = fmt.read(tmp_path / "x.geff")
    assert compare_tables(t, back) == []
    keys = {b.key for b in t.metadata if b.scope == "session"}
    assert keys and keys <= {b.key for b in back.metadata if b.scope == "session"}


# ----------------------------------------------------------------------------------------- write
def test_geff_write_refuses_existing_and_non_geff_targets(tmp_path):
    t = EXAMPLES["linear"]()
    fmt.write(t, tmp_path / "a.geff")
    with pytest.raises(WriteError, match="already exists"):
        fmt.write(t, tmp_path / "a.geff")
    fmt.write(EXAMPLES["gap"](), tmp_path / "a.geff", overwrite=True)
    assert fmt.read(tmp_path / "a.geff").n_positions == 4
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(WriteError, match="not a GEFF"):
        fmt.write(t, tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "thesis.tex").exists()


def test_geff_write_physical_units_become_axis_units(tmp_path):
    t = EXAMPLES["three_d"]()
    t.session.space_unit, t.session.pixel_size, t.session.physical_unit = "pixel", (0.5, 0.5, 2.0), "micrometre"
    t.session.time_unit, t.session.frame_interval = "minute", 5.0
    fmt.write(t, tmp_path / "u.geff")
    md = _valid(tmp_path / "u.geff")
    by = {a["name"]: a for a in md["axes"]}
    assert (by["z"]["scale"], by["z"]["scaled_unit"], by["x"]["unit"]) == (2.0, "micrometer", "pixel")
    assert (by["t"]["unit"], by["t"]["scale"], by["t"]["scaled_unit"]) == ("frame", 5.0, "minute")
