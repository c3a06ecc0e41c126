"""idtracker.ai format: real samples and synthetic v3/v4/v5/v6 session folders round-trip exactly."""

from __future__ import annotations

import json
import pickle
import shutil
import struct
import warnings
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

from tests import examples
from trackstore.errors import LossyConversionWarning, ParseError, UnsafeInputError, WriteError
from trackstore.formats import discover, get_format
from trackstore.formats import idtrackerai as idt
from trackstore.model import ORIGIN_CODE, _same_value, compare_tables

DATA = Path(__file__).parent / "data" / "idtrackerai"
MOVER = DATA / "MoveR_SampleData" / "2602_ISA3080_Low_5.npy"
H5 = DATA / "animovement-movement-data" / "trajectories.h5"
DERIVED = DATA / "derived-idtrackerai_format-6.0.14"
OBS, GAP, VAL = ORIGIN_CODE["observed"], ORIGIN_CODE["gap_closed"], ORIGIN_CODE["validated"]

REAL = [
    MOVER,
    H5,
    DATA / "animovement-movement-data" / "trajectories_csv",
    DATA / "animovement-movement-data",
    DATA / "aniread-extdata" / "idtracker.csv",
    DERIVED / "trajectories.npy",
    DERIVED / "trajectories.pickle",
    DERIVED / "trajectories.parquet",
    DERIVED / "trajectories_tidy.csv",
    DERIVED / "trajectories_csv",
    DERIVED,
]


# ---------------------------------------------------------------------- helpers (trusted readers)
def _h5_dict(path: Path) -> dict:
    def walk(node):
        out = {k: node.attrs[k] for k in node.attrs}
        for k in node:
            out[k] = walk(node[k]) if isinstance(node[k], h5py.Group) else node[k][()]
        return out
    with h5py.File(path, "r") as f:
        return walk(f)


def _same_tree(a, b, where="") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            _same_tree(a[k], b[k], f"{where}/{k}")
    else:
        assert _same_value(a, b), f"{where}: {type(a).__name__} {a!r:.80} != {type(b).__name__} {b!r:.80}"


def _load_trusted(path: Path):
    """Content of an idtracker.ai file with numpy/h5py/pickle (test-only: trusted files)."""
    low = path.name.lower()
    if low.endswith(".npy"):
        a = np.load(path, allow_pickle=True)
        return a.item() if a.dtype == object and a.shape == () else a
    if low.endswith(".pickle"):
        with open(path, "rb") as f:
            return pickle.load(f)
    if low.endswith(".h5"):
        return _h5_dict(path)
    if low.endswith(".parquet"):
        t = pq.read_table(path)
        return {"metadata": dict(t.schema.metadata),
                **{c: t.column(c).to_numpy() for c in t.column_names}}
    return path.read_bytes()


def _assert_same_files(orig: Path, new: Path) -> list[str]:
    """Every file under ``orig`` has an identical twin under ``new`` (arrays bitwise, text bytewise)."""
    pairs = [(orig, new)] if orig.is_file() else \
        [(p, new / p.relative_to(orig)) for p in sorted(orig.rglob("*")) if p.is_file() and p.name != "README.md"]
    for a, b in pairs:
        assert b.is_file(), f"{b} not written"
        _same_tree(_load_trusted(a), _load_trusted(b), str(a.name))
    return [str(a) for a, _ in pairs]


def _npy_p2(path: Path, obj) -> None:
    """An npy holding a pickle of protocol 2 (as numpy <= 1.16 wrote), built by hand."""
    wrapper = np.empty((), dtype=object)
    wrapper[()] = obj
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (), }"
    header += " " * ((-(10 + len(header) + 1)) % 64) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
                     + pickle.dumps(wrapper, protocol=2))


def _savetxt(path: Path, arr, fmt, header, delimiter=",", comments="") -> None:
    np.savetxt(path, arr, fmt=fmt, delimiter=delimiter, header=header, comments=comments)


@pytest.fixture(scope="module")
def real_arrays():
    """trajectories, id_probabilities and attributes of the real 6.0.0a0 h5 (508 frames x 8)."""
    d = _h5_dict(H5)
    return d["trajectories"], d["id_probabilities"], d


# ---------------------------------------------------------------------- real samples
@pytest.mark.parametrize("src", REAL, ids=lambda p: str(p.relative_to(DATA)))
def test_idtrackerai_real_files_roundtrip_exactly(src, tmp_path):
    t = idt.read(src)
    assert idt.sniff(src)
    out = tmp_path / src.name
    written = idt.write(t, out)
    assert all(p.exists() for p in written)
    checked = _assert_same_files(src, out)
    base_in, base_out = (src.parent, tmp_path) if src.is_file() else (src, out)
    for p in written:  # nothing written that the source did not have (a tidy CSV's JSON is its sibling)
        twin = base_in / p.relative_to(base_out)
        assert twin.is_file(), p
        _same_tree(_load_trusted(twin), _load_trusted(p), p.name)
    assert len(written) >= len(checked)
    assert t.session.source_files and all(Path(f).is_file() for f in t.session.source_files)
    extra = [k for k in t.session_meta() if k.startswith(("idtrackerai.raw:", "idtrackerai.patch:"))]
    # binary files and the CSVs made from them are rebuilt from the positions alone
    assert extra == ([] if src.name != "trajectories_csv" or src.parent.name != DERIVED.name
                     else ["idtrackerai.raw:areas.csv"])


@pytest.mark.parametrize("src", [MOVER, H5, DERIVED], ids=["v3-npy", "v6-h5", "v6-folder"])
def test_idtrackerai_roundtrip_through_store(src, tmp_path, store):
    t = idt.read(src)
    with store.transaction() as conn:
        sid = store.write_session(conn, t, content_hash="x")
    back = store.read_session(sid)
    assert compare_tables(t, back) == []
    out = tmp_path / src.name
    idt.write(back, out)
    _assert_same_files(src, out)


def test_idtrackerai_h5_maps_to_model(real_arrays):
    traj, prob, attrs = real_arrays
    t = idt.read(H5)
    valid = ~np.isnan(traj[:, :, 0])
    n = int(valid.sum())
    assert t.n_positions == n and t.n_tracks == 8
    assert list(t.tracks["name"]) == [str(i) for i in range(1, 9)]
    assert list(t.tracks["identity"]) == list(range(1, 9))
    assert list(t.tracks["lineage_id"]) == list(range(8))
    # track-major order (animal by animal, frames ascending), animal k is track k
    k, f = np.nonzero(valid.T)
    assert np.array_equal(t.positions["frame"], f) and np.array_equal(t.positions["track_id"], k)
    assert np.array_equal(t.positions["x"], traj[f, k, 0])
    assert np.array_equal(t.positions["quality"], prob[f, k, 0], equal_nan=True)
    # gap closed = finite position with NaN probability (6.x, identity model ran)
    assert int((t.positions["origin"] == GAP).sum()) == int(np.isnan(prob[:, :, 0][valid]).sum()) > 0
    assert np.array_equal(t.frames["frame"], np.arange(508))
    assert np.array_equal(t.frames["time"], np.arange(508) / 28)
    assert t.session.frame_interval == 1 / 28 and t.session.space_unit == "pixel"
    assert t.session.time_unit == "second" and t.session.format_version == "6.0.0a0"
    # one link per consecutive pair of an animal's positions; NaN gaps are skipped by one link
    assert t.n_links == n - 8
    src, dst = t.links["source_id"], t.links["target_id"]
    assert (t.positions["track_id"][src] == t.positions["track_id"][dst]).all()
    gaps = t.positions["frame"][dst] - t.positions["frame"][src]
    assert gaps.min() == 1 and gaps.max() > 1
    meta = t.session_meta()
    assert list(k for k in meta if not k.startswith("idtrackerai."))[:3] == list(attrs)[:3]
    assert type(meta["frames_per_second"]) is np.int64 and meta["frames_per_second"] == 28
    assert meta["areas"]["mean"].dtype == np.float64
    t.validate()


def test_idtrackerai_v3_without_identities(tmp_path):
    t = idt.read(MOVER)
    ref = np.load(MOVER, allow_pickle=True).item()
    assert "quality" not in t.positions and (t.positions["origin"] == OBS).all()
    assert t.n_positions == int((~np.isnan(ref["trajectories"][:, :, 0])).sum())
    assert t.session_meta()["body_length"] == np.float64(29.0)
    assert t.session.frame_interval == 1 / 25


def test_idtrackerai_sniff(tmp_path):
    assert idt.sniff(DERIVED) and idt.sniff(DATA / "animovement-movement-data" / "trajectories_csv")
    assert not idt.sniff(DATA)  # a plain parent folder
    assert not idt.sniff(DERIVED / "trajectories_csv" / "id_probabilities.csv")
    assert not idt.sniff(DATA / "README.md")
    (tmp_path / "other.npy").write_bytes(b"garbage")
    assert not idt.sniff(tmp_path / "other.npy")
    assert get_format("idtrackerai") is idt
    found = {p.resolve() for p, _ in discover([DATA]) }
    assert MOVER.resolve() in found and DERIVED.resolve() in found
    assert (DATA / "aniread-extdata" / "idtracker.csv").resolve() in found


# ---------------------------------------------------------------------- synthetic session folders
def _v5_dicts(traj, prob, attrs):
    """with_gaps, without_gaps, validated dicts in 5.2 key order, and what was edited."""
    gapc = ~np.isnan(traj[:, :, 0]) & np.isnan(prob[:, :, 0])
    with_gaps = traj.copy()
    with_gaps[gapc] = np.nan
    validated = traj.copy()
    changed = (10, 2)
    validated[changed] = [1.5, 2.5]
    added = tuple(int(v) for v in np.argwhere(np.isnan(traj[:, :, 0]))[0])
    validated[added] = [3.25, 4.75]
    ok = np.argwhere(~np.isnan(traj[:, :, 0]) & ~gapc)
    deleted = tuple(int(v) for v in ok[len(ok) // 2])
    validated[deleted] = np.nan

    def d(tr):
        return {"trajectories": tr, "version": "5.2.12", "video_paths": ["/v/a.avi"], "frames_per_second": 28.0,
                "body_length": np.float64(57.7),
                "stats": {"estimated_accuracy": 0.99, "estimated_accuracy_after_interpolation": None,
                          "percentage_identified": 0.98, "estimated_accuracy_identified": 1.0},
                "areas": {"mean": attrs["areas"]["mean"], "median": attrs["areas"]["median"],
                          "std": attrs["areas"]["std"]},
                "setup_points": {"border": np.array([[1, 2], [3, 4]])},
                "identities_labels": [str(i) for i in range(1, 9)],
                "identities_groups": {"males": [1, 2], "females": [7]}, "length_unit": None,
                "id_probabilities": prob.copy()}
    return d(with_gaps), d(traj.copy()), d(validated), dict(changed=changed, added=added, deleted=deleted,
                                                             gapc=gapc)


def _v5_csv(folder: Path, d: dict) -> None:
    folder.mkdir()
    n = d["trajectories"].shape[1]
    _savetxt(folder / "trajectories.csv", d["trajectories"].reshape(len(d["trajectories"]), -1), "%.3f",
             ",".join(f"x{i},y{i}" for i in range(1, n + 1)))
    _savetxt(folder / "id_probabilities.csv", d["id_probabilities"][:, :, 0], "%.3e",
             ",".join(f"id_probabilities{i}" for i in range(1, n + 1)))
    _savetxt(folder / "areas.csv", np.column_stack([d["areas"][k] for k in ("mean", "median", "std")]), "%.1f",
             "mean, median, standard_deviation")
    attrs = {k: v for k, v in d.items() if k not in ("trajectories", "id_probabilities", "areas")}

    def v5_default(o):
        if isinstance(o, np.ndarray):
            return {"py/object": "np.ndarray", "values": o.tolist()}
        raise TypeError(type(o))
    (folder / "attributes.json").write_text(json.dumps(attrs, indent=4, default=v5_default))


@pytest.fixture
def v5_session(tmp_path, real_arrays):
    traj, prob, attrs = real_arrays
    s = tmp_path / "session_v5"
    (s / "trajectories").mkdir(parents=True)
    wg, wog, val, edits = _v5_dicts(traj, prob, attrs)
    for name, d in (("with_gaps", wg), ("without_gaps", wog), ("validated", val)):
        np.save(s / "trajectories" / f"{name}.npy", d, allow_pickle=True)
        _v5_csv(s / "trajectories" / f"{name}_csv", d)
    (s / "session.json").write_text(json.dumps({"name": "v5", "number_of_animals": 8, "velocity_threshold": np.nan,
                                                "tracking_intervals": [[0, 508]], "version": "5.2.12"}, indent=4))
    return s, edits


def test_idtrackerai_v5_session_origins_and_exact_roundtrip(v5_session, tmp_path):
    s, edits = v5_session
    assert idt.sniff(s)
    t = idt.read(s)
    val = np.load(s / "trajectories" / "validated.npy", allow_pickle=True).item()["trajectories"]
    assert t.n_positions == int((~np.isnan(val[:, :, 0])).sum())
    origin = t.positions["origin"]
    cell = {(int(f), int(k)): i for i, (f, k) in enumerate(zip(t.positions["frame"], t.positions["track_id"]))}
    assert origin[cell[edits["changed"]]] == VAL and origin[cell[edits["added"]]] == VAL
    assert edits["deleted"] not in cell
    assert int((origin == VAL).sum()) == 2
    assert int((origin == GAP).sum()) == int(edits["gapc"].sum())
    assert len(t.session.source_files) == 3 * 5 + 1
    meta = t.session_meta()
    assert meta["stats"]["estimated_accuracy_after_interpolation"] is None
    assert meta["idtrackerai.session_json"]["number_of_animals"] == 8
    # the person's deletion is kept: without_gaps.npy cannot be rebuilt from the positions alone
    assert "idtrackerai.patch:trajectories/without_gaps.npy:trajectories" in meta
    assert not [k for k in meta if k.startswith("idtrackerai.raw:")]
    g = t.meta("track", "group")
    assert sorted(zip(g.owners.tolist(), g.values.tolist())) == [(0, "males"), (1, "males"), (6, "females")]
    written = idt.write(t, tmp_path / "back")
    assert len(written) == 16
    _assert_same_files(s, tmp_path / "back")


def test_idtrackerai_v5_through_store(v5_session, tmp_path, store):
    s, _ = v5_session
    t = idt.read(s)
    with store.transaction() as conn:
        sid = store.write_session(conn, t, content_hash="v5")
    back = store.read_session(sid)
    assert compare_tables(t, back) == []
    idt.write(back, tmp_path / "back")
    _assert_same_files(s, tmp_path / "back")


def test_idtrackerai_v5_without_gaps_missing(tmp_path, real_arrays):
    traj, prob, attrs = real_arrays
    wg, _, _, edits = _v5_dicts(traj, prob, attrs)
    s = tmp_path / "session_single"
    (s / "trajectories").mkdir(parents=True)
    np.save(s / "trajectories" / "with_gaps.npy", wg, allow_pickle=True)
    t = idt.read(s)
    assert (t.positions["origin"] == OBS).all()
    assert t.n_positions == int((~np.isnan(wg["trajectories"][:, :, 0])).sum())
    idt.write(t, tmp_path / "back")
    _assert_same_files(s, tmp_path / "back")


@pytest.mark.parametrize("version", ["v4", "v3"])
def test_idtrackerai_v3_v4_sibling_folders(tmp_path, real_arrays, version):
    traj, prob, _ = real_arrays
    gapc = ~np.isnan(traj[:, :, 0]) & np.isnan(prob[:, :, 0])
    with_gaps = traj.copy()
    with_gaps[gapc] = np.nan
    s = tmp_path / f"session_{version}"
    (s / "trajectories").mkdir(parents=True)
    (s / "trajectories_wo_gaps").mkdir()
    if version == "v4":
        def d(tr):
            return {"trajectories": tr, "version": "4.0.12", "video_path": "/v/a.avi", "frames_per_second": 28,
                    "body_length": 57.7, "stats": {"estimated_accuracy": 0.99}, "id_probabilities": prob.copy(),
                    "areas": np.full(traj.shape[:2], 300.5), "setup_points": None}
    else:
        def d(tr):
            return {"trajectories": tr, "id_probabilities": prob.copy(), "git_commit": "0",
                    "video_path": "/v/a.avi", "frames_per_second": 28, "body_length": np.float64(57.7)}
    _npy_p2(s / "trajectories" / "trajectories.npy", d(with_gaps))
    _npy_p2(s / "trajectories_wo_gaps" / "trajectories_wo_gaps.npy", d(traj.copy()))
    # v3/v4 CSV export next to the npy: %.18e, "# " header, compact JSON
    n = traj.shape[1]
    tdir = s / "trajectories"
    _savetxt(tdir / "trajectories.trajectories.csv", with_gaps.reshape(len(traj), -1), "%.18e",
             ",".join(f"x{i},y{i}" for i in range(1, n + 1)), comments="# ")
    _savetxt(tdir / "trajectories.id_probabilities.csv", prob[:, :, 0], "%.18e",
             ",".join(f"id_probabilities{i}" for i in range(1, n + 1)), comments="# ")
    attrs = {k: v for k, v in d(with_gaps).items() if not isinstance(v, np.ndarray)}
    (tdir / "trajectories.attributes.json").write_text(json.dumps(attrs, default=float))
    t = idt.read(s)
    assert t.session_meta()["idtrackerai.layout"]["layout"] == version
    assert int((t.positions["origin"] == GAP).sum()) == int(gapc.sum())
    assert t.n_positions == int((~np.isnan(traj[:, :, 0])).sum())
    assert not [k for k in t.session_meta() if k.startswith(("idtrackerai.raw:", "idtrackerai.patch:"))]
    idt.write(t, tmp_path / "back")
    _assert_same_files(s, tmp_path / "back")
    # the npy keeps the numpy-1 pickle flavour of the source
    raw = (tmp_path / "back" / "trajectories" / "trajectories.npy").read_bytes()
    assert raw[128:130] == b"\x80\x02" and b"numpy._core" in raw  # protocol 2 as read; module path as read


def test_idtrackerai_v5_0_names_inside_trajectories_folder(tmp_path, real_arrays):
    """5.0-5.1.6: trajectories.npy + trajectories_wo_gaps.npy side by side, CSVs in <stem>/ folders."""
    traj, prob, _ = real_arrays
    s = tmp_path / "session_v50"
    q = s / "trajectories" / "trajectories_wo_gaps"
    q.mkdir(parents=True)
    with_gaps = traj.copy()
    with_gaps[np.isnan(prob[:, :, 0])] = np.nan
    for name, tr in (("trajectories", with_gaps), ("trajectories_wo_gaps", traj)):
        np.save(s / "trajectories" / f"{name}.npy", {"trajectories": tr, "version": "5.0.0",
                                                     "frames_per_second": 28, "id_probabilities": prob},
                allow_pickle=True)
    _savetxt(q / "trajectories_wo_gaps.trajectories.csv", traj.reshape(len(traj), -1), "%.3f",
             ",".join(f"x{i},y{i}" for i in range(1, 17)), comments="# ")  # 5.0.0's 2N-pairs header bug
    t = idt.read(s)
    layout = t.session_meta()["idtrackerai.layout"]
    assert layout["layout"] == "v5" and layout["primary"] == "trajectories_wo_gaps"
    assert int((t.positions["origin"] == GAP).sum()) == int((np.isnan(prob[:, :, 0]) & ~np.isnan(traj[:, :, 0])).sum())
    assert not [k for k in t.session_meta() if k.startswith(("idtrackerai.raw:", "idtrackerai.patch:"))]
    idt.write(t, tmp_path / "back")
    _assert_same_files(s, tmp_path / "back")


def test_idtrackerai_v6_session_with_session_json(tmp_path):
    s = tmp_path / "session_v6"
    shutil.copytree(DERIVED, s / "trajectories")
    shutil.copy(H5, s / "trajectories" / "trajectories.h5")
    text = json.dumps({"first_frame_first_global_fragment": -1, "velocity_threshold": float("nan"),
                       "frames_per_second": 28.0, "timers": {"Tracking": {"start_time": "2024-01-01T00:00:00"}}},
                      indent=4)
    (s / "session.json").write_text(text)
    t = idt.read(s)
    assert t.session_meta()["idtrackerai.layout"]["layout"] == "v6"
    # npy is the most precise source; every other file was read and checked against it
    assert t.session.source_files[0].endswith("trajectories.npy")
    assert len(t.session.source_files) == 11
    idt.write(t, tmp_path / "back")
    _assert_same_files(s, tmp_path / "back")
    assert (tmp_path / "back" / "session.json").read_text() == text


# ---------------------------------------------------------------------- layouts and other sessions
def test_idtrackerai_convert_layouts(v5_session, tmp_path):
    s, edits = v5_session
    t = idt.read(s)
    with pytest.warns(LossyConversionWarning, match="with_gaps"):
        idt.write(t, tmp_path / "v6", layout="v6")
    v6 = np.load(tmp_path / "v6" / "trajectories" / "trajectories.npy", allow_pickle=True).item()
    val = np.load(s / "trajectories" / "validated.npy", allow_pickle=True).item()
    assert v6["trajectories"].tobytes() == val["trajectories"].tobytes()
    assert list(v6) == list(val)  # the source's key order and value types are kept across layouts
    assert all(_same_value(v6[k], val[k]) for k in val if k not in ("trajectories", "id_probabilities"))
    assert (tmp_path / "v6" / "trajectories" / "trajectories_csv" / "areas.csv").read_text().startswith(
        "mean, median, standard_deviation\n")
    back = idt.read(tmp_path / "v6")
    assert np.array_equal(back.positions["x"], t.positions["x"])
    # v5 regenerated from a v6 tree: with_gaps = observed only
    with pytest.warns(LossyConversionWarning):
        idt.write(idt.read(H5), tmp_path / "v5", layout="v5")
    wg = np.load(tmp_path / "v5" / "trajectories" / "with_gaps.npy", allow_pickle=True).item()["trajectories"]
    h5 = _h5_dict(H5)
    expect = h5["trajectories"].copy()
    expect[np.isnan(h5["id_probabilities"][:, :, 0])] = np.nan
    assert np.array_equal(wg, expect, equal_nan=True)
    again = idt.read(tmp_path / "v5")
    assert np.array_equal(again.positions["origin"], idt.read(H5).positions["origin"])
    idt.write(idt.read(MOVER), tmp_path / "same.npy", layout="npy")  # a file read as npy, asked for npy
    _assert_same_files(MOVER, tmp_path / "same.npy")
    for lay, name in (("h5", "x.h5"), ("pickle", "x.pickle"), ("parquet", "x.parquet"), ("tidy_csv", "x.csv"),
                      ("v3", "v3"), ("csv", "x_csv")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LossyConversionWarning)
            idt.write(t, tmp_path / name, layout=lay)
        r = idt.read(tmp_path / name)
        assert np.array_equal(r.positions["x"], t.positions["x"]) or lay in ("tidy_csv", "csv"), lay
        assert r.n_positions == t.n_positions, lay


def test_idtrackerai_write_other_sessions(tmp_path):
    gap = examples.gap()
    with warnings.catch_warnings():
        warnings.simplefilter("error", LossyConversionWarning)  # one track with a gap: nothing is lost
        paths = idt.write(gap, tmp_path / "gap.npy")
    d = np.load(paths[0], allow_pickle=True).item()
    assert d["trajectories"].shape == (6, 1, 2)
    assert np.isnan(d["trajectories"][2:4]).all() and d["trajectories"][4, 0].tolist() == [5.0, 4.0]
    back = idt.read(tmp_path / "gap.npy")
    assert compare_tables(gap, back, check_ids=False, ignore_meta=[b.key for b in back.metadata]) == []
    assert list(back.tracks["name"]) == ["track 0"]
    assert back.n_links == 3 and back.positions["frame"][back.links["target_id"]].tolist() == [1, 4, 5]
    with pytest.warns(LossyConversionWarning, match="2 links between different tracks"):
        idt.write(examples.division(), tmp_path / "div.npy")


def test_idtrackerai_track_with_two_positions_in_a_frame(tmp_path):
    t = examples.linear()
    t.positions["frame"] = np.array([0, 1, 1, 2])
    t.links = {"source_id": np.array([0, 1]), "target_id": np.array([1, 3])}
    with pytest.raises(WriteError, match="1 positions share a frame"):
        idt.write(t, tmp_path / "dup.npy")
    with pytest.warns(LossyConversionWarning, match="1 positions .* moved to 1 extra identity columns"):
        idt.write(t, tmp_path / "dup.npy", on_conflict="split")
    d = np.load(tmp_path / "dup.npy", allow_pickle=True).item()
    assert d["trajectories"].shape == (4, 2, 2) and d["trajectories"][1, 1].tolist() == [13.25, 21.0]


def test_idtrackerai_write_refuses_existing_target(tmp_path):
    t = idt.read(MOVER)
    idt.write(t, tmp_path / "a.npy")
    with pytest.raises(WriteError, match="already exists"):
        idt.write(t, tmp_path / "a.npy")
    idt.write(t, tmp_path / "a.npy", overwrite=True)
    with pytest.raises(WriteError, match="unknown idtracker.ai layout"):
        idt.write(t, tmp_path / "b", layout="v9")


def test_idtrackerai_odd_nans_and_fills_survive(tmp_path, store):
    traj, prob, _ = (lambda d: (d["trajectories"].copy(), d["id_probabilities"].copy(), d))(_h5_dict(H5))
    neg_nan = np.array([-np.nan])
    traj[0, 5] = neg_nan[0]  # a NaN with the sign bit set
    prob[np.isnan(traj[:, :, :1])] = 0.0  # 6.0.8+: probability 0 where there is no position
    prob[1, 5, 0] = 0.5  # ...but one odd value
    np.save(tmp_path / "odd.npy", {"trajectories": traj, "id_probabilities": prob}, allow_pickle=True)
    t = idt.read(tmp_path / "odd.npy")
    with store.transaction() as conn:
        sid = store.write_session(conn, t, content_hash="odd")
    idt.write(store.read_session(sid), tmp_path / "back.npy")
    _same_tree(np.load(tmp_path / "odd.npy", allow_pickle=True).item(),
               np.load(tmp_path / "back.npy", allow_pickle=True).item())


# ---------------------------------------------------------------------- bad input
@pytest.fixture
def bad_truncated_npy(tmp_path):
    p = tmp_path / "bad_truncated.npy"
    p.write_bytes(MOVER.read_bytes()[:100_000])
    return p


@pytest.fixture
def bad_forbidden_global(tmp_path):
    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {tmp_path / 'pwned'}",))
    p = tmp_path / "bad_forbidden_global.npy"
    wrapper = np.empty((), dtype=object)
    wrapper[()] = {"trajectories": Evil()}
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (), }"
    header += " " * ((-(10 + len(header) + 1)) % 64) + "\n"
    p.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
                  + pickle.dumps(wrapper, protocol=4))
    return p


@pytest.fixture
def bad_h5_without_trajectories(tmp_path):
    p = tmp_path / "bad_h5_without_trajectories.h5"
    with h5py.File(p, "w") as f:
        f.attrs["frames_per_second"] = 28
        f["id_probabilities"] = np.zeros((3, 2, 1))
    return p


@pytest.fixture
def bad_malformed_row(tmp_path):
    p = tmp_path / "bad_malformed_row.csv"
    lines = (DATA / "aniread-extdata" / "idtracker.csv").read_text().splitlines()
    lines[5] = lines[5].replace(",", ",oops,", 1)
    p.write_text("\n".join(lines) + "\n")
    return p


@pytest.fixture
def bad_not_a_dict(tmp_path):
    p = tmp_path / "bad_not_a_dict.npy"
    np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return p


@pytest.mark.parametrize("fixture, error, place", [
    ("bad_truncated_npy", ParseError, "truncated"),
    ("bad_forbidden_global", UnsafeInputError, "posix.system"),
    ("bad_h5_without_trajectories", ParseError, "dataset /trajectories"),
    ("bad_malformed_row", ParseError, "line 6"),
    ("bad_not_a_dict", ParseError, "trajectories"),
])
def test_idtrackerai_bad_input(request, fixture, error, place, tmp_path):
    path = request.getfixturevalue(fixture)
    with pytest.raises(error) as e:
        idt.read(path)
    assert path.name in str(e.value)
    assert place in str(e.value)
    assert not (tmp_path / "pwned").exists()
