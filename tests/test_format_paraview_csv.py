"""Paraview CSV series: OrganoidTracker's exports read back and rewritten byte for byte."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from examples import ALL as EXAMPLES
from trackstore.errors import LossyConversionWarning, ParseError, WriteError
from trackstore.formats import paraview_csv as fmt
from trackstore.model import compare_tables

DATA = Path(__file__).parent / "data" / "paraview_csv"
STEM = "synthetic 5x8"


def test_paraview_sniff_folder_or_file_of_a_series(tmp_path):
    assert fmt.sniff(DATA / "plain")
    assert fmt.sniff(DATA / "plain" / f"{STEM}.csv.3")
    assert not fmt.sniff(DATA / "plain" / "How to import to Paraview.txt")
    assert not fmt.sniff(DATA)
    assert not fmt.sniff(DATA / "bad_header")
    (tmp_path / "cells.csv").write_text("x,y,z\n1,2,3\n")
    assert not fmt.sniff(tmp_path)


def test_paraview_read_plain_series():
    t = fmt.read(DATA / "plain")
    assert t.n_positions == 64 and t.n_links == 0 and t.is_3d
    assert t.frame_numbers().tolist() == list(range(8))
    assert t.session.name == STEM and t.session.space_unit == "pixel"
    first = (DATA / "plain" / f"{STEM}.csv.0").read_text().splitlines()[1].split(",")
    assert (t.positions["x"][0], t.positions["y"][0], t.positions["z"][0]) == tuple(float(v) for v in first)


def test_paraview_read_metadata_columns_with_types_and_missing():
    t = fmt.read(DATA / "meta", unit="micrometre")
    assert t.session.space_unit == "micrometre"
    intensity = t.meta("position", "intensity")
    assert intensity.values.dtype == np.float64 and len(intensity) == 55  # 9 NaN are missing
    divided = t.meta("position", "times_divided")
    assert divided.values.dtype == np.int64 and len(divided) == 49
    ending = t.meta("position", "ending")
    assert ending.values.tolist() == ["dead"] and type(ending.values[0]) is str
    assert t.meta("position", "lineage_id").values.min() == -1


@pytest.mark.parametrize("variant", ["plain", "meta"])
def test_paraview_rewrite_is_byte_identical(variant, tmp_path):
    t = fmt.read(DATA / variant)
    names = [b.key for b in t.metadata]
    with warnings.catch_warnings():
        warnings.simplefilter("error", LossyConversionWarning)
        fmt.write(t, tmp_path / "out", metadata=names)
    for f in sorted((DATA / variant).glob("*.csv.*")):
        assert (tmp_path / "out" / f.name).read_bytes() == f.read_bytes(), f.name
    assert compare_tables(t, fmt.read(tmp_path / "out")) == []


def test_paraview_units_are_converted_with_the_pixel_size(tmp_path):
    t = EXAMPLES["three_d"]()
    with pytest.raises(WriteError, match="no pixel size"):
        fmt.write(t, tmp_path / "a", unit="micrometre")
    t.session.pixel_size = (0.5, 0.5, 2.0)
    with pytest.warns(LossyConversionWarning):
        fmt.write(t, tmp_path / "a", unit="micrometre")
    back = fmt.read(tmp_path / "a", unit="micrometre")
    assert back.positions["x"].tolist() == (t.positions["x"] * 0.5).tolist()
    assert back.positions["z"].tolist() == (t.positions["z"] * 2.0).tolist()


def test_paraview_builtin_columns_and_colormap(tmp_path):
    t = EXAMPLES["division"]()
    t.add_meta("lineage", "color", np.array([[255, 0, 0]], dtype=object), np.array([0]))
    with pytest.warns(LossyConversionWarning, match=r"links \(6"):
        files = fmt.write(t, tmp_path / "d", metadata=True)
    names = [f.name for f in files]
    assert names[-2:] == [fmt.HELP_FILE, fmt.COLORMAP_FILE]
    assert names[:5] == [f"division.csv.{i}" for i in range(5)]
    back = fmt.read(tmp_path / "d")
    assert back.meta("position", "lineage_id").values.tolist() == [0] * 7  # a dividing family
    by_frame = np.argsort(t.positions["frame"], kind="stable")  # files list positions frame by frame
    assert back.meta("position", "track_id").values.tolist() == t.positions["track_id"][by_frame].tolist()
    cmap = json.loads((tmp_path / "d" / fmt.COLORMAP_FILE).read_text())[0]
    assert cmap["RGBPoints"][:8] == [-1, 1, 1, 1, 0, 1.0, 0.0, 0.0]
    assert "-1 to 0" in cmap["Name"] and "-1 to 0" in (tmp_path / "d" / fmt.HELP_FILE).read_text()
    with pytest.warns(LossyConversionWarning):
        fmt.write(EXAMPLES["linear"](), tmp_path / "l", metadata=["lineage_id", "ancestor_track_id"])
    lin = fmt.read(tmp_path / "l")
    assert lin.meta("position", "lineage_id").values.tolist() == [-1] * 4  # no division
    assert lin.meta("position", "ancestor_track_id").values.tolist() == [0] * 4


def test_paraview_2d_positions_come_back_2d_and_exact(tmp_path):
    t = EXAMPLES["gap"]()
    with pytest.warns(LossyConversionWarning):
        fmt.write(t, tmp_path / "g")
    back = fmt.read(tmp_path / "g")
    assert not back.is_3d
    assert back.frame_numbers().tolist() == list(range(6))  # empty frames are empty files
    same = EXAMPLES["gap"]()
    same.links = back.links
    same.positions.pop("track_id")
    same.tracks = {}
    assert compare_tables(same, back, check_ids=True) == []


def test_paraview_names_what_it_cannot_hold(tmp_path):
    t = EXAMPLES["merge"]()
    t.add_meta("position", "area", np.ones(6), np.arange(6))
    t.add_meta("track", "TRACK_LENGTH", np.ones(t.n_tracks), np.arange(t.n_tracks))
    with pytest.warns(LossyConversionWarning) as rec:
        fmt.write(t, tmp_path / "m")
    msg = str(rec[0].message)
    for what in ("links (5", "'area'", "metadata=True", "track metadata ('TRACK_LENGTH')"):
        assert what in msg


def test_paraview_refuses_existing_folder_and_unknown_columns(tmp_path):
    t = EXAMPLES["singleton"]()
    with pytest.warns(LossyConversionWarning):
        fmt.write(t, tmp_path / "s")
    with pytest.raises(WriteError, match="already exists"), warnings.catch_warnings():
        warnings.simplefilter("ignore", LossyConversionWarning)
        fmt.write(t, tmp_path / "s")
    with pytest.raises(WriteError, match="'nope'"), warnings.catch_warnings():
        warnings.simplefilter("ignore", LossyConversionWarning)
        fmt.write(t, tmp_path / "s2", metadata=["nope"])
    (tmp_path / "s" / "singleton.csv.9").write_text("x,y,z\n")
    with pytest.warns(LossyConversionWarning):
        fmt.write(t, tmp_path / "s", overwrite=True)
    assert not (tmp_path / "s" / "singleton.csv.9").exists()


@pytest.mark.parametrize(("fixture", "keywords"), [
    ("bad_header", ["cells.csv.0", "line 1", "x,y,z"]),
    ("bad_row_length", ["cells.csv.0", "line 3", "3 values for 4 columns"]),
    ("bad_coordinate", ["cells.csv.1", "line 2", "must be numbers"]),
])
def test_paraview_bad_fixture_raises_parse_error(fixture, keywords):
    with pytest.raises(ParseError) as e:
        fmt.read(DATA / fixture)
    for k in keywords:
        assert k in str(e.value)
