"""Every reader x every writer on the canonical examples: file -> TrackTables -> file, no database.

For each registered format A and example E: ``A.write(E)`` makes a source file, ``A.read`` reads it
(that is what ``trackstore convert`` starts from), then every format B writes that session and
reads it back. Whatever E (or A's reading of it) has, B either holds or names in a
``LossyConversionWarning`` (for CTC merges: a ``WriteError`` unless ``drop_merges=True``, then the
warning). Nothing may disappear silently.

What each format can hold (a feature missing from its set must be warned about when present):

=================  =====  =========  ======  ====  ===========  ==  ==========  =====
format             links  divisions  merges  gaps  track joins  3D  singletons  exact
=================  =====  =========  ======  ====  ===========  ==  ==========  =====
ctc                yes    yes        no (1)  yes   yes          yes yes         no (2)
geff               yes    yes        yes     yes   yes          yes yes         yes
paraview_csv       no     no         no      no    no           yes yes         yes
trackmate          yes    yes        yes     yes   yes          yes yes         yes
organoidtracker    yes    yes        yes     no    yes          yes yes         yes
idtrackerai        yes    no         no      yes   no (3)       no  yes         yes
=================  =====  =========  ======  ====  ===========  ==  ==========  =====

(1) refused with a WriteError naming ``drop_merges``; with it, the dropped links are warned.
(2) positions without masks are drawn as disks and read back as their centroids, within 0.5 px.
(3) a "track join" is a link between two different tracks of the session (a division, a merge, or
    a CTC re-label: CTC writes a gap as a new label whose parent is the old one). idtracker.ai
    identities are fixed, so only links inside one track survive.

A format not in the table (added later) is assumed to hold everything until it is listed here.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from examples import ALL as EXAMPLES
from trackstore.errors import LossyConversionWarning, WriteError
from trackstore.formats import get_format, list_formats
from trackstore.model import TrackTables

FEATURES = ("links", "divisions", "merges", "gaps", "track_joins", "3d", "singletons")
ALL = frozenset(FEATURES) | {"exact"}
CAN_HOLD: dict[str, frozenset[str]] = {
    "ctc": ALL - {"merges", "exact"},
    "geff": ALL,
    "paraview_csv": ALL - {"links", "divisions", "merges", "gaps", "track_joins"},
    "trackmate": ALL,
    "organoidtracker": ALL - {"gaps"},
    "idtrackerai": ALL - {"divisions", "merges", "track_joins", "3d"},
}
TOLERANCE = {"ctc": 0.5}

FORMATS = [name for name, info in list_formats().items() if info["read"] and info["write"]]

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # zarr's own


def holds(fmt: str) -> frozenset[str]:
    return CAN_HOLD.get(fmt, ALL)


def features(t: TrackTables) -> set[str]:
    """The features of a session that the table above talks about."""
    n = t.n_positions
    src, dst = t.links["source_id"], t.links["target_id"]
    out = set()
    if t.n_links:
        out.add("links")
        if (np.bincount(src, minlength=n) > 1).any():
            out.add("divisions")
        if (np.bincount(dst, minlength=n) > 1).any():
            out.add("merges")
        f = t.positions["frame"]
        if (f[dst] - f[src] > 1).any():
            out.add("gaps")
        tid = t.positions.get("track_id")
        if tid is not None and ((tid[src] != tid[dst]) & (tid[src] >= 0) & (tid[dst] >= 0)).any():
            out.add("track_joins")
    if t.is_3d and np.any(t.positions["z"][np.isfinite(t.positions["z"])] != 0):
        out.add("3d")
    linked = np.zeros(n, bool)
    linked[src] = linked[dst] = True
    if n and not linked.all():
        out.add("singletons")
    return out


def target(tmp: Path, fmt: str, tag: str) -> Path:
    suffix = list_formats()[fmt]["suffixes"][0]
    return tmp / (f"{tag}_{fmt}" if suffix == "/" else f"{tag}_{fmt}{suffix}")


def convert(t: TrackTables, fmt: str, path: Path) -> tuple[TrackTables, list[str]]:
    """Write then read with one format; returns the session read and the lossy warnings."""
    mod = get_format(fmt)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        try:
            mod.write(t, path)
        except WriteError as e:
            assert fmt == "ctc" and "merges" in str(e) and "drop_merges" in (e.hint or ""), str(e)
            mod.write(t, path, drop_merges=True, overwrite=True)
        lossy = [str(w.message) for w in rec if issubclass(w.category, LossyConversionWarning)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = mod.read(path)
    return back, lossy


def _match(a: TrackTables, b: TrackTables, tol: float) -> np.ndarray:
    """For each position of ``a``, the position of ``b`` at the same frame and place."""
    out = np.full(a.n_positions, -1, np.int64)
    three = "3d" in features(a) and "3d" in features(b)
    coords_a = np.stack([a.positions["x"], a.positions["y"]] + ([a.positions["z"]] if three else []), axis=1)
    coords_b = np.stack([b.positions["x"], b.positions["y"]] + ([b.positions["z"]] if three else []), axis=1)
    for f in np.unique(a.positions["frame"]):
        ia = np.flatnonzero(a.positions["frame"] == f)
        ib = np.flatnonzero(b.positions["frame"] == f)
        assert len(ia) == len(ib), f"frame {f}: {len(ia)} vs {len(ib)} positions"
        d = np.abs(coords_a[ia][:, None, :] - coords_b[ib][None, :, :]).max(axis=2)
        best = d.argmin(axis=1)
        assert (d[np.arange(len(ia)), best] <= tol).all(), f"frame {f}: positions moved"
        assert len(set(best.tolist())) == len(ia), f"frame {f}: positions merged"
        out[ia] = ib[best]
    return out


def check(expected: TrackTables, got: TrackTables, fmt: str, lossy: list[str], what: str) -> None:
    """``got`` holds every feature of ``expected`` that ``fmt`` can hold; the rest was warned about."""
    have = features(expected)
    cannot = have - holds(fmt)
    if cannot:
        assert lossy, f"{what}: {fmt} cannot hold {sorted(cannot)} but gave no LossyConversionWarning"
    if not expected.n_positions:
        assert got.n_positions == 0
        return
    if got.n_positions != expected.n_positions:
        assert lossy, f"{what}: {expected.n_positions} positions became {got.n_positions} without a warning"
        return
    tol = TOLERANCE.get(fmt, 1e-9)
    m = _match(expected, got, tol)
    if "links" in have and not ({"links", "divisions", "merges", "gaps", "track_joins"} & cannot):
        pairs_e = sorted(zip(m[expected.links["source_id"]].tolist(), m[expected.links["target_id"]].tolist()))
        pairs_g = sorted(zip(got.links["source_id"].tolist(), got.links["target_id"].tolist()))
        assert pairs_e == pairs_g, f"{what}: links differ"
    if "3d" in have and "3d" in holds(fmt):
        assert got.is_3d, f"{what}: z was lost"
    if "3d" not in have and "3d" not in cannot:
        assert "3d" not in features(got), f"{what}: 2D data came back 3D"


SOURCES = [(fmt, ex) for fmt in FORMATS for ex in EXAMPLES]


@pytest.mark.parametrize(("src_fmt", "example"), SOURCES, ids=[f"{a}-{b}" for a, b in SOURCES])
def test_convert_every_reader_to_every_writer(src_fmt, example, tmp_path):
    ex = EXAMPLES[example]()
    first, lossy = convert(ex, src_fmt, target(tmp_path, src_fmt, "src"))
    check(ex, first, src_fmt, lossy, f"{example} -> {src_fmt}")
    failures = []
    for dst_fmt in FORMATS:
        try:
            second, lossy2 = convert(first, dst_fmt, target(tmp_path, dst_fmt, "dst"))
            check(first, second, dst_fmt, lossy2, f"{example} -> {src_fmt} -> {dst_fmt}")
        except Exception as e:  # collect every failing writer of this source, not only the first
            failures.append(f"{src_fmt} -> {dst_fmt}: {type(e).__name__}: {e}")
    assert not failures, "\n".join(failures)


def test_convert_matrix_check_catches_silent_losses():
    """The check above fails for a writer that drops links or positions without saying so."""
    ex = EXAMPLES["division"]()
    no_links = ex.copy()
    no_links.links = {"source_id": np.empty(0, np.int64), "target_id": np.empty(0, np.int64)}
    with pytest.raises(AssertionError, match="no LossyConversionWarning"):
        check(ex, no_links, "paraview_csv", [], "silent")
    with pytest.raises(AssertionError, match="links differ"):
        check(ex, no_links, "geff", ["something else was lost"], "wrong links")
    fewer = TrackTables.from_columns(frame=[0], x=[5.0], y=[5.0])
    with pytest.raises(AssertionError, match="without a warning"):
        check(ex, fewer, "geff", [], "dropped positions")
    moved = ex.copy()
    moved.positions["x"] = moved.positions["x"] + 0.4
    check(ex, moved, "ctc", ["drawn"], "within tolerance")
    with pytest.raises(AssertionError, match="moved"):
        check(ex, moved, "geff", [], "exact format")
