"""TrackMate XML, the model layer: the raw columns of one file become a TrackTables.

The mapping (see also the module docstring of :mod:`trackstore.formats.trackmate`):

* positions: one per spot, in spot ID order (so a session written by trackstore, whose spot IDs
  are its position indices when it has no native ids, reads back in its own order); ``native_id``
  = spot ``ID``; x/y/z/quality/radius/frame from the features of those names. A 2D file (one
  slice, every ``POSITION_Z`` exactly 0) gets NaN z; the exporter writes ``0.0`` back.
* position metadata: ``name`` (when it is not TrackMate's default ``ID<spot ID>``, which TrackMate
  also gives a spot without a name), every other spot feature (int64 for ``isint`` features, float64
  otherwise, declaration order), ``ROI`` (the polygon as ``[[dx, dy], ...]`` relative to the spot
  centre, as TrackMate stores it), and ``trackmate.absent`` (column features a spot lacks).
  POSITION_T, which TrackMate sets to FRAME x frame interval, is ``frames.time`` and kept as
  metadata only when some spot's value differs (bit for bit) from that product. An
  integer ``ORIGIN`` spot feature (how trackstore writes positions.origin) is ``positions.origin``.
* links: one per edge, oriented forward in time (``trackmate.reversed`` marks edges the file wrote
  backwards); link metadata: every edge feature except the two spot IDs.
* tracks: tracklets from :func:`derive_tracks`; a TrackMate track is a lineage. Lineage metadata:
  ``TRACK_ID``, ``name``, ``visible`` (listed in FilteredTracks) and every track feature; an
  integer ``IDENTITY`` track feature (how trackstore writes idtracker.ai animals) is
  ``tracks.identity``.
* session metadata ``trackmate.*``: version, raw unit strings, Log, FeatureDeclarations (JSON,
  completed with any feature the file uses without declaring it), Settings and GUIState (XML),
  DisplaySettings (its JSON text), and anything unknown, so the file can be written back.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ParseError, TrackstoreWarning
from ..model import ORIGINS, MetaBlock, SessionInfo, TrackTables, derive_tracks
from . import _trackmate_units as units
from ._trackmate_xml import Node, RawTrackMate, _Rows, java_double, serialize, to_float, to_int

#: Spot features that have a positions column.
SPOT_COLUMNS = {"POSITION_X": "x", "POSITION_Y": "y", "POSITION_Z": "z", "QUALITY": "quality",
                "RADIUS": "radius", "FRAME": "frame"}
#: Spot attributes that are not features.
SPOT_NON_FEATURES = ("ID", "name", "ROI_N_POINTS")
EDGE_ENDS = ("SPOT_SOURCE_ID", "SPOT_TARGET_ID")
FEATURE_GROUPS = ("SpotFeatures", "EdgeFeatures", "TrackFeatures")
_INT_FEATURES = {"FRAME", "VISIBILITY", "SPOT_SOURCE_ID", "SPOT_TARGET_ID", "TRACK_ID", "TRACK_INDEX", "IDENTITY",
                 "ORIGIN"}


def build_tables(raw: RawTrackMate, path: Path) -> TrackTables:
    """Turn the raw columns of one file into a TrackTables (raises ParseError naming the element)."""
    decls = _declarations(raw.captured.get("FeatureDeclarations"))
    info = _session_info(raw, path)
    spots = _Spots(raw, decls, info, path)
    edges = _Edges(raw, decls, spots, path)
    t = TrackTables()
    t.session = info
    t.positions = spots.columns(raw, t.session)
    t.frames = _frames(raw, t.positions["frame"], t.session)
    t.links = {"source_id": edges.src, "target_id": edges.dst}
    n = spots.n
    track_of_pos, lineage_of_track = derive_tracks(n, edges.src, edges.dst, t.positions["frame"])
    t.positions["track_id"] = track_of_pos
    lineages = _Lineages(raw, decls, edges, track_of_pos, lineage_of_track, path)
    t.tracks = lineages.tracks_table(lineage_of_track)

    undeclared = {g: [] for g in FEATURE_GROUPS}
    t.metadata.extend(spots.metadata(decls, undeclared["SpotFeatures"]))
    t.metadata.extend(edges.metadata(decls, undeclared["EdgeFeatures"]))
    t.metadata.extend(lineages.metadata(decls, undeclared["TrackFeatures"]))
    t.metadata[:0] = _session_metadata(raw, decls, undeclared, lineages, path)
    return t


# ---------------------------------------------------------------------- declarations
def _declarations(node: Node | None) -> dict[str, list[dict[str, str]]]:
    """FeatureDeclarations as ``{group: [Feature attributes, ...]}`` in file order."""
    out: dict[str, list[dict[str, str]]] = {g: [] for g in FEATURE_GROUPS}
    if node is None:
        return out
    for group in node.children:
        out.setdefault(group.tag, [])
        out[group.tag].extend(dict(f.attrib) for f in group.children if f.tag == "Feature")
    return out


def _isint(decls: dict[str, list[dict[str, str]]], group: str) -> dict[str, bool]:
    return {d.get("feature", ""): d.get("isint", "false").strip().lower() == "true" for d in decls.get(group, [])}


def _declared_order(decls, group: str, present: list[str], skip) -> list[str]:
    """Feature keys present in the data: declared ones in declaration order, then the others."""
    declared = [d.get("feature", "") for d in decls.get(group, [])]
    have = set(present)
    keys = [k for k in declared if k in have and k not in skip]
    seen = set(keys)
    keys += [k for k in present if k not in seen and k not in skip]
    return keys


# ---------------------------------------------------------------------- raw attribute access
def _attributes(rows: _Rows) -> dict[str, tuple[np.ndarray, list[pa.Array]]]:
    """``key -> (owner indices, string chunks)`` over every layout, keys in order of appearance."""
    owners: dict[str, list[np.ndarray]] = {}
    chunks: dict[str, list[tuple[str, ...]]] = {}
    for lay in rows.layouts.values():
        idx = lay.indices()
        for k in lay.keys:
            owners.setdefault(k, []).append(idx)
            chunks.setdefault(k, []).extend(lay.column(k))
    return {k: (np.concatenate(owners[k]) if len(owners[k]) > 1 else owners[k][0], chunks[k]) for k in owners}


def _nth(chunks: list[pa.Array], i: int) -> str:
    for c in chunks:
        if i < len(c):
            return c[i].as_py()
        i -= len(c)
    raise IndexError(i)


class _Values:
    """Parses attribute strings to numbers; a bad value raises ParseError naming its element."""

    def __init__(self, kind: str, describe, path: Path):
        self.kind, self.describe, self.path = kind, describe, path

    def floats(self, key: str, owners: np.ndarray, chunks) -> np.ndarray:
        vals, bad = to_float(chunks)
        if bad is not None:
            raise ParseError(f"{self.describe(int(owners[bad]))}: {key}={_nth(chunks, bad)!r} is not a number",
                             path=self.path)
        return vals

    def ints(self, key: str, owners: np.ndarray, chunks) -> np.ndarray:
        vals = to_int(chunks)
        if vals is None:
            for i, s in enumerate(s for c in chunks for s in c.to_pylist()):
                if not isinstance(s, int) and not (isinstance(s, str) and re.fullmatch(r"\s*[+-]?\d+\s*", s)):
                    text = s if isinstance(s, str) else repr(s)
                    raise ParseError(f"{self.describe(int(owners[i]))}: {key}={text!r} is not an integer",
                                     path=self.path)
        return vals

    def feature(self, key: str, owners: np.ndarray, chunks, isint: bool) -> np.ndarray:
        """int64 for an ``isint`` feature whose values are all integers, else float64."""
        if isint:
            vals = to_int(chunks)
            if vals is not None:
                return vals
        return self.floats(key, owners, chunks)


def _sorted_by_owner(owners: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(owners) > 1 and np.any(owners[1:] < owners[:-1]):
        order = np.argsort(owners, kind="stable")
        return owners[order], values[order]
    return owners, values


# ---------------------------------------------------------------------- spots
class _Spots:
    """Spot columns, features and ROIs, indexed by position (spot ID order)."""

    def __init__(self, raw: RawTrackMate, decls, info: SessionInfo, path: Path):
        self.path = path
        self.n = n = raw.spots.n
        self.attrs = _attributes(raw.spots)
        self._raw_roi_text = raw.roi_text
        self.ids = np.zeros(n, np.int64)
        self._ids_known = False
        val = _Values("spot", self._describe, path)
        self.val = val
        if n and ("ID" not in self.attrs or len(self.attrs["ID"][0]) != n):
            missing = np.setdiff1d(np.arange(n), self.attrs.get("ID", (np.empty(0, np.int64),))[0])
            raise ParseError(f"spot number {int(missing[0]) + 1} (in file order) has no ID attribute", path=path)
        own, ch = self.attrs.get("ID", (np.empty(0, np.int64), []))
        self.ids[own] = val.ints("ID", own, ch)
        self._ids_known = True
        # frame of each spot from its <SpotsInFrame>, checked against its FRAME feature
        starts = np.array([s for s, _ in raw.spot_frames] + [n], np.int64)
        frames = []
        for (_, f) in raw.spot_frames:
            try:
                frames.append(int(f.strip()))
            except ValueError:
                raise ParseError(f"<SpotsInFrame frame={f!r}> is not an integer frame", path=path) from None
        self.container_frame = np.repeat(np.array(frames, np.int64), np.diff(starts)) if n else np.empty(0, np.int64)
        self.present: dict[str, np.ndarray] = {}
        self.cols: dict[str, np.ndarray] = {}
        for key, col in SPOT_COLUMNS.items():
            if key not in self.attrs:
                continue
            own, ch = self.attrs[key]
            if key == "FRAME":
                fv = to_int(ch)
                if fv is None:
                    fl = val.floats(key, own, ch)
                    if not np.all(fl == np.round(fl)):
                        i = int(np.flatnonzero(fl != np.round(fl))[0])
                        raise ParseError(f"{self._describe(int(own[i]))}: FRAME={_nth(ch, i)!r} is not a whole number",
                                         path=path)
                    fv = fl.astype(np.int64)
                bad = fv != self.container_frame[own]
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    raise ParseError(f"{self._describe(int(own[i]))}: FRAME={int(fv[i])} but it is listed under "
                                     f"<SpotsInFrame frame=\"{int(self.container_frame[own[i]])}\">", path=path)
            else:
                arr = np.full(n, np.nan)
                arr[own] = val.floats(key, own, ch)
                self.cols[col] = arr
            mask = np.zeros(n, bool)
            mask[own] = True
            self.present[key] = mask
        for key in ("POSITION_X", "POSITION_Y"):
            if n and (key not in self.present or not self.present[key].all()):
                i = int(np.flatnonzero(~self.present.get(key, np.zeros(n, bool)))[0])
                raise ParseError(f"{self._describe(i)} has no {key}", path=path)
        # POSITION_T is frames.time (FRAME x frame interval) in TrackMate; kept as metadata only
        # when some spot says otherwise (the exporter recomputes it bit for bit)
        self.time_is_column = True
        if "POSITION_T" in self.attrs:
            own, ch = self.attrs["POSITION_T"]
            pt = val.floats("POSITION_T", own, ch)
            fi = info.frame_interval
            expected = self.container_frame[own] * float(fi) if fi else None
            if expected is None or not np.array_equal(pt.view(np.int64), expected.view(np.int64)):
                self.time_is_column = False
            else:
                mask = np.zeros(n, bool)
                mask[own] = True
                self.present["POSITION_T"] = mask
        # ORIGIN (written by trackstore for positions a tool or a person added) is positions.origin
        self.origin: np.ndarray | None = None
        if "ORIGIN" in self.attrs and len(self.attrs["ORIGIN"][0]) == n:
            own, ch = self.attrs["ORIGIN"]
            codes = to_int(ch)
            if codes is not None and codes.min() >= 0 and codes.max() < len(ORIGINS):
                self.origin = np.zeros(n, np.int8)
                self.origin[own] = codes
        self.order: np.ndarray | None = None
        if n and np.any(self.ids[1:] < self.ids[:-1]):
            self.order = np.argsort(self.ids, kind="stable")
        self.inverse = None
        if self.order is not None:
            self.inverse = np.empty(n, np.int64)
            self.inverse[self.order] = np.arange(n)
        self.position_ids = self.ids if self.order is None else self.ids[self.order]
        sorted_ids = np.sort(self.ids)
        dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
        if len(dup):
            raise ParseError(f"spot ID {int(sorted_ids[dup[0]])} is used by more than one spot", path=path)

    def _describe(self, i: int) -> str:
        if self._ids_known:
            return f"spot ID {int(self.ids[i])}"
        return f"spot number {i + 1} (in file order)"

    def to_position(self, owners: np.ndarray) -> np.ndarray:
        """Spot indices in file order -> position indices."""
        return owners if self.inverse is None else self.inverse[owners]

    def _perm(self, a: np.ndarray) -> np.ndarray:
        return a if self.order is None else a[self.order]

    def columns(self, raw: RawTrackMate, info: SessionInfo) -> dict[str, np.ndarray]:
        n = self.n
        empty = np.empty(0, np.float64)
        pos = {"frame": self._perm(self.container_frame).astype(np.int64),
               "x": self._perm(self.cols.get("x", empty)), "y": self._perm(self.cols.get("y", empty))}
        z = self.cols.get("z")
        flat = info.image_size[2] is None or info.image_size[2] <= 1
        zp = self.present.get("POSITION_Z")
        if z is not None and not (flat and np.array_equal(z[zp].view(np.int64), np.zeros(int(zp.sum()), np.int64))):
            pos["z"] = self._perm(z)  # 3D, or a 2D file whose z is not exactly 0: keep it
        for col in ("quality", "radius"):
            if col in self.cols:
                pos[col] = self._perm(self.cols[col])
        pos["native_id"] = self.position_ids
        pos["origin"] = np.zeros(n, np.int8) if self.origin is None else self._perm(self.origin)
        return pos

    def id_to_position(self, spot_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Position index of each spot ID, and a mask of the IDs found."""
        ids = self.position_ids
        order = np.argsort(ids, kind="stable")
        sids = ids[order]
        if not len(sids):
            return np.zeros(len(spot_ids), np.int64), np.zeros(len(spot_ids), bool)
        at = np.minimum(np.searchsorted(sids, spot_ids), len(sids) - 1)
        found = sids[at] == spot_ids
        return order[at], found

    def metadata(self, decls, undeclared: list[str]) -> list[MetaBlock]:
        out: list[MetaBlock] = []
        if "name" in self.attrs:
            own, ch = self.attrs["name"]
            names = pa.chunked_array(ch, pa.string())
            # TrackMate names a spot "ID<ID>" unless told otherwise (and reads a missing name so):
            # only other names carry information, like POSITION_T other than FRAME x interval
            default = pc.binary_join_element_wise("ID", pa.array(self.ids[own]).cast(pa.string()), "")
            own = own[~pc.equal(names, default).to_numpy(zero_copy_only=False)]
            names = pc.filter(names, pc.not_equal(names, default))
            if len(own):
                longest = pc.max(pc.utf8_length(names)).as_py() or 0
                # short names as a fixed-width str array: the store encodes those in bulk
                vals = names.to_numpy().astype(f"<U{max(longest, 1)}" if longest <= 64 else object)
                o, v = _sorted_by_owner(self.to_position(own), vals)
                out.append(MetaBlock("position", "name", v, o))
        isint = _isint(decls, "SpotFeatures")
        present = [k for k in self.attrs if k not in SPOT_NON_FEATURES]
        skip = {*SPOT_COLUMNS, "POSITION_T"} if self.time_is_column else set(SPOT_COLUMNS)
        if self.origin is not None:
            skip.add("ORIGIN")
            if "ORIGIN" not in isint:
                undeclared.append("ORIGIN")
        for key in _declared_order(decls, "SpotFeatures", present, skip):
            if key not in isint:
                undeclared.append(key)
            own, ch = self.attrs[key]
            vals = self.val.feature(key, own, ch, isint.get(key, False))
            o, v = _sorted_by_owner(self.to_position(own), vals)
            out.append(MetaBlock("position", key, v, o))
        out.extend(self._rois())
        absent = self._absent()
        if absent is not None:
            out.append(absent)
        return out

    def _rois(self) -> list[MetaBlock]:
        """ROI polygons (``[[dx, dy], ...]``); texts that do not match ROI_N_POINTS are kept verbatim."""
        npts_owner, npts_ch = self.attrs.get("ROI_N_POINTS", (np.empty(0, np.int64), []))
        npts = np.full(self.n, -1, np.int64)
        if len(npts_owner):
            npts[npts_owner] = self.val.ints("ROI_N_POINTS", npts_owner, npts_ch)
        text_own = np.array([i for i, _ in self._raw_roi_text], np.int64)
        spots = np.union1d(text_own, npts_owner)  # every spot with a ROI text or a point count
        if not len(spots):
            return []
        texts: list[str] = [""] * len(spots)
        for j, (_, text) in zip(np.searchsorted(spots, text_own).tolist(), self._raw_roi_text):
            texts[j] = text
        # every number of every polygon parsed at once, in C (exact, like Double.parseDouble)
        trimmed = pc.utf8_trim_whitespace(pa.array(texts, pa.string()))
        trimmed = pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)
        parts = pc.utf8_split_whitespace(trimmed)
        counts = parts.value_lengths().fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        flat = parts.flatten()
        bad = np.zeros(len(spots), bool)
        try:
            coords = flat.cast(pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            parsed = [java_double(v) for v in flat.to_pylist()]
            coords = np.array([np.nan if v is None else v for v in parsed], np.float64)
            owner_of_value = np.repeat(np.arange(len(spots)), counts)
            bad[np.unique(owner_of_value[[v is None for v in parsed]])] = True
        n_pts = npts[spots]
        ok = (counts == 2 * n_pts) & (n_pts > 0) & ~bad
        out = []
        if ok.any():
            ends = np.cumsum(counts)
            starts = ends - counts
            pairs = coords.reshape(-1, 2).tolist() if len(coords) % 2 == 0 else None
            polys = []
            for j in np.flatnonzero(ok).tolist():
                a, b = int(starts[j]), int(ends[j])
                polys.append(pairs[a // 2:b // 2] if pairs is not None and a % 2 == 0
                             else coords[a:b].reshape(-1, 2).tolist())
            o, v = _sorted_by_owner(self.to_position(spots[ok]), _objects(polys))
            out.append(MetaBlock("position", "ROI", v, o))
        if not ok.all():
            odd = np.flatnonzero(~ok)
            warnings.warn(f"{self.path}: {len(odd)} spot(s) have ROI text that does not match ROI_N_POINTS "
                          f"(first: {self._describe(int(spots[odd[0]]))}); kept verbatim as trackmate.ROI_text",
                          TrackstoreWarning, stacklevel=4)
            own = self.to_position(spots[odd])
            o, v = _sorted_by_owner(own, _objects([int(n_pts[j]) if n_pts[j] >= 0 else None for j in odd.tolist()]))
            out.append(MetaBlock("position", "trackmate.ROI_N_POINTS", v, o))
            o, v = _sorted_by_owner(own, _objects([texts[j] for j in odd.tolist()]))
            out.append(MetaBlock("position", "trackmate.ROI_text", v, o))
        return out

    def _absent(self) -> MetaBlock | None:
        """Spots lacking a column feature (so the exporter leaves it out again), or None."""
        missing = [(k, ~m) for k, m in self.present.items() if not m.all()]
        columns = [*SPOT_COLUMNS, "POSITION_T"] if self.time_is_column else SPOT_COLUMNS
        missing += [(k, np.ones(self.n, bool)) for k in columns if k not in self.present and self.n]
        if not missing:
            return None
        any_missing = np.zeros(self.n, bool)
        for _, m in missing:
            any_missing |= m
        own = np.flatnonzero(any_missing)
        vals = [" ".join(k for k, m in missing if m[i]) for i in own.tolist()]
        o, v = _sorted_by_owner(self.to_position(own), _objects(vals))
        return MetaBlock("position", "trackmate.absent", v, o)


def _objects(items: list) -> np.ndarray:
    a = np.empty(len(items), dtype=object)
    for i, v in enumerate(items):
        a[i] = v
    return a


# ---------------------------------------------------------------------- edges
class _Edges:
    """Links (forward in time) and edge features, in file order."""

    def __init__(self, raw: RawTrackMate, decls, spots: _Spots, path: Path):
        self.path = path
        self.n = n = raw.edges.n
        counts = np.diff(np.array(raw.track_first_edge + [n], np.int64))
        self.track_of_edge = np.repeat(np.arange(len(raw.tracks), dtype=np.int64), counts)
        self.track_names = [t.get("name") for t in raw.tracks]
        self.attrs = _attributes(raw.edges)
        self.val = _Values("edge", self._describe, path)
        ends = []
        for key in EDGE_ENDS:
            own, ch = self.attrs.get(key, (np.empty(0, np.int64), []))
            if len(own) != n:
                i = int(np.setdiff1d(np.arange(n), own)[0])
                raise ParseError(f"{self._describe(i)} has no {key}", path=path)
            col = np.empty(n, np.int64)
            col[own] = self.val.ints(key, own, ch)
            ends.append(col)
        self.src_ids, self.dst_ids = ends
        src, found_s = spots.id_to_position(self.src_ids)
        dst, found_d = spots.id_to_position(self.dst_ids)
        for found, ids, key in ((found_s, self.src_ids, EDGE_ENDS[0]), (found_d, self.dst_ids, EDGE_ENDS[1])):
            if not found.all():
                i = int(np.flatnonzero(~found)[0])
                raise ParseError(f"{self._describe(i)}: {key}={int(ids[i])} is not the ID of any spot "
                                 f"({int((~found).sum())} such edge ends)", path=path)
        frame = spots.container_frame if spots.order is None else spots.container_frame[spots.order]
        same = src == dst
        if same.any():
            i = int(np.flatnonzero(same)[0])
            raise ParseError(f"{self._describe(i)} links spot ID {int(self.src_ids[i])} to itself", path=path)
        flat = frame[src] == frame[dst]
        if flat.any():
            i = int(np.flatnonzero(flat)[0])
            raise ParseError(f"{self._describe(i)} links two spots of frame {int(frame[src[i]])} (IDs "
                             f"{int(self.src_ids[i])} and {int(self.dst_ids[i])}); links must go forward in time",
                             path=path)
        self.reversed = frame[src] > frame[dst]
        self.src = np.where(self.reversed, dst, src)
        self.dst = np.where(self.reversed, src, dst)
        if n:
            lo, hi = np.minimum(self.src, self.dst), np.maximum(self.src, self.dst)
            key = lo * max(spots.n, 1) + hi
            sk = np.sort(key)
            dup = np.flatnonzero(sk[1:] == sk[:-1])
            if len(dup):
                i = int(np.flatnonzero(key == sk[dup[0]])[1])
                raise ParseError(f"{self._describe(i)} repeats the edge between spot IDs {int(self.src_ids[i])} and "
                                 f"{int(self.dst_ids[i])} (TrackMate refuses duplicate edges)", path=path)

    def _describe(self, i: int) -> str:
        t = int(self.track_of_edge[i]) if i < len(self.track_of_edge) else -1
        name = self.track_names[t] if t >= 0 else None
        return f"edge {i + 1} (of track {name!r})" if name is not None else f"edge {i + 1}"

    def metadata(self, decls, undeclared: list[str]) -> list[MetaBlock]:
        out = []
        isint = _isint(decls, "EdgeFeatures")
        for key in _declared_order(decls, "EdgeFeatures", list(self.attrs), EDGE_ENDS):
            if key not in isint:
                undeclared.append(key)
            own, ch = self.attrs[key]
            o, v = _sorted_by_owner(own, self.val.feature(key, own, ch, isint.get(key, False)))
            out.append(MetaBlock("link", key, v, o))
        for key in EDGE_ENDS:
            if key not in isint and self.n:
                undeclared.append(key)
        if self.reversed.any():
            own = np.flatnonzero(self.reversed)
            out.append(MetaBlock("link", "trackmate.reversed", np.ones(len(own), bool), own))
        return out


# ---------------------------------------------------------------------- tracks / lineages
class _Lineages:
    """TrackMate tracks as lineages: each track with edges must be one connected component."""

    def __init__(self, raw: RawTrackMate, decls, edges: _Edges, track_of_pos, lineage_of_track, path: Path):
        self.path = path
        nt = len(raw.tracks)
        self.raw_tracks = raw.tracks
        self.n_lineages = int(lineage_of_track.max()) + 1 if len(lineage_of_track) else 0
        lin_of_edge = lineage_of_track[track_of_pos[edges.src]] if edges.n else np.empty(0, np.int64)
        tr = edges.track_of_edge
        has_edges = np.bincount(tr, minlength=nt) > 0 if nt else np.zeros(0, bool)
        self.lineage_of_tm = np.full(nt, -1, np.int64)
        if edges.n:
            first = np.searchsorted(tr, np.arange(nt))  # edges are grouped by track in file order
            self.lineage_of_tm[has_edges] = lin_of_edge[first[has_edges]]
            split = lin_of_edge != self.lineage_of_tm[tr]
            if split.any():
                i = int(np.flatnonzero(split)[0])
                raise ParseError(f"track {self._name(int(tr[i]))} is not connected: its edges form more than one "
                                 "component (TrackMate tracks are connected components)", path=path)
            used = self.lineage_of_tm[has_edges]
            su = np.sort(used)
            dup = np.flatnonzero(su[1:] == su[:-1])
            if len(dup):
                both = np.flatnonzero(self.lineage_of_tm == su[dup[0]])
                raise ParseError(f"tracks {self._name(int(both[0]))} and {self._name(int(both[1]))} share spots; "
                                 "TrackMate tracks are disjoint connected components", path=path)
        self.with_edges = np.flatnonzero(has_edges)
        self.empty = np.flatnonzero(~has_edges)
        val = _Values("track", lambda i: f"track {self._name(int(self.with_edges[i]))}", path)
        self.val = val
        tids = []
        for k in self.with_edges.tolist():
            s = raw.tracks[k].get("TRACK_ID")
            if s is None:
                raise ParseError(f"track {self._name(k)} has no TRACK_ID", path=path)
            try:
                tids.append(int(s.strip()))
            except ValueError:
                raise ParseError(f"track {self._name(k)}: TRACK_ID={s!r} is not an integer", path=path) from None
        self.track_ids = np.array(tids, np.int64)
        st = np.sort(self.track_ids)
        dup = np.flatnonzero(st[1:] == st[:-1])
        if len(dup):
            raise ParseError(f"TRACK_ID {int(st[dup[0]])} is used by more than one track", path=path)
        # IDENTITY (written by trackstore for idtracker.ai animals) is the tracks.identity column
        self.identity: list[int | None] | None = None
        idv = [raw.tracks[k].get("IDENTITY") for k in self.with_edges.tolist()]
        if any(v is not None for v in idv):
            try:
                self.identity = [None if v is None else int(v.strip()) for v in idv]
            except ValueError:
                self.identity = None  # not integers: an ordinary track feature
        filtered = raw.filtered
        self.filtered_unknown: list[str] = []
        if filtered is None:
            self.visible = np.ones(len(self.with_edges), bool)
        else:
            fset = set()
            for s in filtered:
                try:
                    fset.add(int(s.strip()))
                except ValueError:
                    raise ParseError(f"<FilteredTracks><TrackID TRACK_ID={s!r}> is not an integer", path=path) from None
            self.visible = np.isin(self.track_ids, np.array(sorted(fset), np.int64))
            known = set(self.track_ids.tolist()) | {_int_or_none(raw.tracks[k].get("TRACK_ID"))
                                                    for k in self.empty.tolist()}
            self.filtered_unknown = [s for s in filtered if _int_or_none(s) not in known]

    def _name(self, k: int) -> str:
        t = self.raw_tracks[k]
        return repr(t["name"]) if "name" in t else f"TRACK_ID={t.get('TRACK_ID')}"

    def tracks_table(self, lineage_of_track: np.ndarray) -> dict[str, np.ndarray]:
        nl = self.n_lineages
        name = np.full(nl, None, dtype=object)
        native = np.full(nl, None, dtype=object)
        ident = np.full(nl, None, dtype=object)
        vis = np.ones(nl, bool)
        owners = self.lineage_of_tm[self.with_edges]
        for j, (lin, k) in enumerate(zip(owners.tolist(), self.with_edges.tolist())):
            name[lin] = self.raw_tracks[k].get("name")
            native[lin] = int(self.track_ids[j])
            if self.identity is not None:
                ident[lin] = self.identity[j]
        vis[owners] = self.visible
        nt = len(lineage_of_track)
        return {"name": name[lineage_of_track] if nt else np.empty(0, object),
                "identity": ident[lineage_of_track] if nt else np.empty(0, object),
                "lineage_id": lineage_of_track.astype(np.int64),
                "visible": vis[lineage_of_track] if nt else np.empty(0, bool),
                "native_id": native[lineage_of_track] if nt else np.empty(0, object)}

    def metadata(self, decls, undeclared: list[str]) -> list[MetaBlock]:
        owners = self.lineage_of_tm[self.with_edges]
        if not len(owners):
            return []
        out = [MetaBlock("lineage", "TRACK_ID", self.track_ids.copy(), owners)]
        rows = [self.raw_tracks[k] for k in self.with_edges.tolist()]
        named = [j for j, r in enumerate(rows) if "name" in r]
        if named:
            out.append(MetaBlock("lineage", "name", _objects([rows[j]["name"] for j in named]), owners[named]))
        out.append(MetaBlock("lineage", "visible", self.visible.copy(), owners))
        isint = _isint(decls, "TrackFeatures")
        present: list[str] = []
        seen: set[str] = set()
        for r in rows:
            for k in r:
                if k not in seen:
                    seen.add(k)
                    present.append(k)
        skip = ("name", "TRACK_ID", "IDENTITY") if self.identity is not None else ("name", "TRACK_ID")
        if self.identity is not None and "IDENTITY" not in isint:
            undeclared.append("IDENTITY")
        for key in _declared_order(decls, "TrackFeatures", present, skip):
            if key not in isint:
                undeclared.append(key)
            js = [j for j, r in enumerate(rows) if key in r]
            own = np.array(js, np.int64)
            chunks = [pa.array([rows[j][key] for j in js], pa.string())]
            vals = self.val.feature(key, own, chunks, isint.get(key, False))
            out.append(MetaBlock("lineage", key, vals, owners[own]))
        if "TRACK_ID" not in isint:
            undeclared.append("TRACK_ID")
        return out


def _int_or_none(s: str | None) -> int | None:
    try:
        return int(s.strip()) if s is not None else None
    except ValueError:
        return None


# ---------------------------------------------------------------------- session
def _number(s: str | None, kind=float):
    if s is None:
        return None
    v = java_double(s)
    if v is None or not np.isfinite(v):
        return None
    if kind is int:
        return int(v) if v == int(v) else None
    return v


def _session_info(raw: RawTrackMate, path: Path) -> SessionInfo:
    model = raw.model_attrib or {}
    settings = raw.captured.get("Settings")
    img = settings.child("ImageData").attrib if settings is not None and settings.child("ImageData") else {}
    space = units.space_unit(model.get("spatialunits"))
    interval = _number(img.get("timeinterval"))
    return SessionInfo(
        name=path.stem,
        source_format="trackmate",
        format_version=raw.root_attrib.get("version"),
        source_path=str(path.resolve()),
        space_unit=space,
        time_unit=units.time_unit(model.get("timeunits")),
        pixel_size=(_number(img.get("pixelwidth")), _number(img.get("pixelheight")), _number(img.get("voxeldepth"))),
        physical_unit=space if img else None,
        frame_interval=interval if interval else None,
        image_size=(_number(img.get("width"), int), _number(img.get("height"), int),
                    _number(img.get("nslices"), int)),
        source_files=(str(path),),
    )


def _frames(raw: RawTrackMate, frame: np.ndarray, info: SessionInfo) -> dict[str, np.ndarray]:
    settings = raw.captured.get("Settings")
    img = settings.child("ImageData") if settings is not None else None
    nframes = _number(img.attrib.get("nframes"), int) if img is not None else None
    frames = np.unique(frame)
    if nframes and nframes > 0:
        frames = np.union1d(np.arange(nframes, dtype=np.int64), frames)
    fi = info.frame_interval
    return {"frame": frames.astype(np.int64),
            "time": frames * float(fi) if fi else np.full(len(frames), np.nan)}


def _session_metadata(raw: RawTrackMate, decls, undeclared, lineages: _Lineages, path: Path) -> list[MetaBlock]:
    model = raw.model_attrib or {}
    out = [MetaBlock.scalar("session", "trackmate.version", raw.root_attrib.get("version")),
           MetaBlock.scalar("session", "trackmate.spatialunits", model.get("spatialunits")),
           MetaBlock.scalar("session", "trackmate.timeunits", model.get("timeunits"))]
    extra_root = {k: v for k, v in raw.root_attrib.items() if k != "version"}
    extra_model = {k: v for k, v in model.items() if k not in ("spatialunits", "timeunits")}
    if extra_root:
        out.append(MetaBlock.scalar("session", "trackmate.root_attributes", extra_root))
    if extra_model:
        out.append(MetaBlock.scalar("session", "trackmate.model_attributes", extra_model))
    cap = raw.captured
    if "Log" in cap:
        out.append(MetaBlock.scalar("session", "trackmate.Log", cap["Log"].text_str()))
    added = []
    for group, keys in undeclared.items():
        for k in keys:
            decls.setdefault(group, []).append({"feature": k, "name": k, "shortname": k, "dimension": "NONE",
                                                "isint": "true" if k in _INT_FEATURES else "false"})
            added.append(k)
    if added:
        warnings.warn(f"{path}: attribute(s) {', '.join(sorted(set(added)))} are not in FeatureDeclarations; "
                      "kept, and declared when the session is written as TrackMate XML", TrackstoreWarning,
                      stacklevel=3)
    out.append(MetaBlock.scalar("session", "trackmate.FeatureDeclarations", decls))
    for tag in ("Settings", "GUIState"):
        if tag in cap:
            out.append(MetaBlock.scalar("session", f"trackmate.{tag}", serialize(cap[tag])))
    if "DisplaySettings" in cap:
        out.append(MetaBlock.scalar("session", "trackmate.DisplaySettings", cap["DisplaySettings"].text_str()))
    if raw.extra:
        out.append(MetaBlock.scalar("session", "trackmate.extra",
                                    [[parent, serialize(node)] for parent, node in raw.extra]))
    if len(lineages.empty):
        out.append(MetaBlock.scalar("session", "trackmate.empty_tracks",
                                    [dict(raw.tracks[k]) for k in lineages.empty.tolist()]))
    if lineages.filtered_unknown:
        warnings.warn(f"{path}: FilteredTracks lists TRACK_ID(s) {', '.join(lineages.filtered_unknown[:5])} that "
                      "no track has; kept as trackmate.filtered_unknown", TrackstoreWarning, stacklevel=3)
        out.append(MetaBlock.scalar("session", "trackmate.filtered_unknown", list(lineages.filtered_unknown)))
    return out
