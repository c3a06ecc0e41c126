"""TrackMate XML, the writer: any TrackTables to a file TrackMate's own reader accepts.

Spot and edge lines are assembled column-wise in Arrow (numbers to shortest round-trip text, then
element-wise string joins), ``_CHUNK`` rows at a time, so a 200 k-spot session is written in about
a second and only one chunk of text is in memory. Only Track, Settings and declaration lines go
through Python string formatting.

What TrackMate's reader needs (``TmXmlReader``): every spot has an integer ``ID`` and numeric
attributes; each frame has one ``SpotsInFrame``; edges name existing spots and are neither repeated
nor self-loops; ``TRACK_ID`` is an integer; edge and track features are read only when declared,
and ``isint`` edge features must be integers. Doubles are written as the shortest text that parses
back to the same double, with Java's ``NaN``/``Infinity`` spellings.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import LossyConversionWarning
from ..model import ORIGINS, MetaBlock, TrackTables, derive_tracks
from . import _trackmate_units as units
from ._trackmate_read import EDGE_ENDS, FEATURE_GROUPS, SPOT_COLUMNS, SPOT_NON_FEATURES
from ._trackmate_xml import escape_attr, escape_text

#: The version written for sessions that did not come from TrackMate (whose format is followed).
DEFAULT_VERSION = "7.14.0"
_CHUNK = 65536
_DEFAULT_GUI = '<GUIState state="ConfigureViews" />'
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_NEEDS_ESCAPE = "[&<>\"\r\n\t\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]"
#: Other formats' private metadata (for writing their own files back): never TrackMate features.
_PRIVATE = re.compile(r"^(idtrackerai|organoidtracker|ctc|geff|paraview_csv|aut|example)\.")

#: How TrackMate itself declares its standard features: feature, name, shortname, dimension.
_STANDARD = {
    "SpotFeatures": [("QUALITY", "Quality", "Quality", "QUALITY"), ("POSITION_X", "X", "X", "POSITION"),
                     ("POSITION_Y", "Y", "Y", "POSITION"), ("POSITION_Z", "Z", "Z", "POSITION"),
                     ("POSITION_T", "T", "T", "TIME"), ("FRAME", "Frame", "Frame", "NONE"),
                     ("RADIUS", "Radius", "R", "LENGTH"), ("VISIBILITY", "Visibility", "Visibility", "NONE"),
                     ("ORIGIN", "Origin (" + ", ".join(f"{i} {o}" for i, o in enumerate(ORIGINS)) + ")", "Origin",
                      "NONE")],
    "EdgeFeatures": [("SPOT_SOURCE_ID", "Source spot ID", "Source ID", "NONE"),
                     ("SPOT_TARGET_ID", "Target spot ID", "Target ID", "NONE"),
                     ("LINK_COST", "Edge cost", "Cost", "COST")],
    "TrackFeatures": [("TRACK_INDEX", "Track index", "Index", "NONE"), ("TRACK_ID", "Track ID", "ID", "NONE"),
                      ("IDENTITY", "Identity", "Identity", "NONE")],
}


def write_xml(tables: TrackTables, path: Path) -> None:
    """Write ``tables`` as TrackMate XML to ``path`` (the caller has checked the target)."""
    w = _Writer(tables)
    with open(path, "wb") as f:
        w.write(f)
    if w.lost:
        warnings.warn(f"{path}: TrackMate XML cannot hold {'; '.join(dict.fromkeys(w.lost))}",
                      LossyConversionWarning, stacklevel=3)


# ---------------------------------------------------------------------- numbers as text
def _float_text(values: np.ndarray, present: np.ndarray | None = None) -> pa.Array:
    """Shortest text that parses back to the same double; Java's NaN/Infinity; null where absent."""
    values = np.asarray(values, np.float64)
    s = pa.array(values, mask=None if present is None else ~present).cast(pa.string())
    finite = np.isfinite(values)
    integral = finite & (values == np.floor(values))
    if integral.any():  # "5" -> "5.0" as Java writes a double (both parse to the same value)
        whole = pc.and_(pa.array(integral), pc.invert(pc.match_substring(s, "e")))
        s = pc.if_else(whole, pc.binary_join_element_wise(s, ".0", ""), s)
    if not finite.all():
        s = pc.replace_substring_regex(s, "^nan$", "NaN")
        s = pc.replace_substring_regex(s, "^inf$", "Infinity")
        s = pc.replace_substring_regex(s, "^-inf$", "-Infinity")
    return s


def _int_text(values: np.ndarray, present: np.ndarray | None = None) -> pa.Array:
    return pa.array(np.asarray(values, np.int64), mask=None if present is None else ~present).cast(pa.string())


def _java_repr(v: float) -> str:
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "Infinity" if v > 0 else "-Infinity"
    return repr(v)


def _num_text(v: Any) -> str:
    """One number (track features, settings) as attribute text."""
    if isinstance(v, (bool, np.bool_)):
        return "1" if v else "0"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return _java_repr(float(v))


# ---------------------------------------------------------------------- feature columns
class _Column:
    """One attribute over every element of a kind: numbers (or fixed text), and where it is present."""

    def __init__(self, key: str, values: np.ndarray | None, isint: bool, present: np.ndarray | None,
                 fixed: str | None = None):
        self.key, self.values, self.isint, self.present, self.fixed = key, values, isint, present, fixed

    def text(self, idx: np.ndarray) -> pa.Array:
        present = None if self.present is None else self.present[idx]
        if self.fixed is not None:
            return pa.array(np.full(len(idx), self.fixed, object), pa.string(), mask=None if present is None
                            else ~present)
        if self.isint:
            return _int_text(self.values[idx], present)
        return _float_text(self.values[idx], present)

    def piece(self, idx: np.ndarray) -> pa.Array:
        return pc.binary_join_element_wise(f' {self.key}="', self.text(idx), '"', "")


def _numeric(block: MetaBlock) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """(owners, values, isint) of a block TrackMate can hold as a numeric feature, or None."""
    vals, owners = block.values, block.owners
    if owners is None:
        return None
    kind = vals.dtype.kind
    if kind == "f":
        return owners, vals.astype(np.float64), False
    if kind in "iub":
        return owners, vals.astype(np.int64), True
    if kind != "O":
        return None
    keep = np.array([v is not None for v in vals], bool)
    items = [v for v in vals if v is not None]
    if not items:
        return None
    if all(isinstance(v, (bool, np.bool_, int, np.integer)) for v in items):
        return owners[keep], np.array([int(v) for v in items], np.int64), True
    if all(isinstance(v, (int, float, np.integer, np.floating, bool, np.bool_)) for v in items):
        return owners[keep], np.array([float(v) for v in items], np.float64), False
    return None


def _column(key: str, n: int, owners: np.ndarray, values: np.ndarray, isint: bool) -> _Column:
    full = np.zeros(n, values.dtype)
    full[owners] = values
    present = np.zeros(n, bool)
    present[owners] = True
    return _Column(key, full, isint, None if present.all() else present)


# ---------------------------------------------------------------------- the writer
class _Writer:
    """Prepares every column and declaration first, then streams the document."""

    def __init__(self, t: TrackTables):
        self.t = t
        self.n = t.n_positions
        self.tm = t.session_meta("trackmate.")
        self.is_tm = "trackmate.FeatureDeclarations" in self.tm
        self.lost: list[str] = []
        self.meta: dict[tuple[str, str], MetaBlock] = {}
        for b in t.metadata:
            self.meta.setdefault((b.scope, b.key), b)
        stored = self.tm.get("trackmate.FeatureDeclarations")
        groups = [*FEATURE_GROUPS, *(stored if isinstance(stored, dict) else ())]
        self.decls = {g: [dict(d) for d in (stored or {}).get(g, [])] for g in dict.fromkeys(groups)}
        self.order = np.argsort(t.positions["frame"], kind="stable")  # spots grouped by frame
        self.spot_ids = self._spot_ids()
        self.spot_cols = self._spot_columns()
        self.names = self._names()
        self.tails = self._roi_tails()
        self._prepare_tracks()
        for b in t.metadata:  # scopes TrackMate has no place for
            if b.scope in ("track", "frame", "session") and not (b.key.startswith("trackmate.")
                                                                   or _PRIVATE.match(b.key)):
                self.lost.append(f"{b.scope} metadata {b.key!r} (TrackMate has no {b.scope} features)")

    # -- declarations
    def _declare(self, group: str, key: str, isint: bool) -> None:
        decl = self.decls.setdefault(group, [])
        for d in decl:
            if d.get("feature") == key:
                if d.get("isint", "false").strip().lower() == "true" and not isint:
                    d["isint"] = "false"  # the values are not integers: TrackMate must read doubles
                return
        std = {f: rest for f, *rest in _STANDARD.get(group, ())}
        name, short, dim = std.get(key, (key, key, "NONE"))
        decl.append({"feature": key, "name": name, "shortname": short, "dimension": dim,
                     "isint": "true" if isint else "false"})

    def _in_decl_order(self, group: str, cols: list[_Column]) -> list[_Column]:
        for c in cols:
            self._declare(group, c.key, c.isint)
        rank = {d.get("feature"): i for i, d in enumerate(self.decls[group])}
        return sorted(cols, key=lambda c: rank[c.key])

    def _usable(self, scope: str, skip: set[str]) -> list[tuple[str, tuple[np.ndarray, np.ndarray, bool]]]:
        """Numeric metadata of one scope that can be written as TrackMate features (first block per key)."""
        out = []
        for b in self.t.metadata:
            if b.scope != scope or b.key in skip or self.meta.get((scope, b.key)) is not b:
                continue
            if b.key.startswith("trackmate.") or _PRIVATE.match(b.key):
                continue
            num = _numeric(b)
            if num is None or not _NAME_RE.match(b.key) or b.key.lower().startswith("xml"):
                self.lost.append(f"{scope} metadata {b.key!r} (not numeric, or not an XML attribute name)")
                continue
            out.append((b.key, num))
        return out

    # -- spots
    def _spot_ids(self) -> np.ndarray:
        nat = self.t.positions.get("native_id")
        if nat is not None and self.n:
            nat = np.asarray(nat, np.int64)
            if nat.min() >= -(2**31) and nat.max() < 2**31 and len(np.unique(nat)) == self.n:
                return nat
            self.lost.append("the native ids as spot IDs (not unique 32-bit integers: spots get IDs 0..n-1)")
        return np.arange(self.n, dtype=np.int64)

    def _absent(self) -> dict[str, np.ndarray]:
        b = self.meta.get(("position", "trackmate.absent"))
        out: dict[str, np.ndarray] = {}
        if b is not None and b.owners is not None:
            for o, v in zip(b.owners.tolist(), b.values.tolist()):
                for key in str(v).split():
                    out.setdefault(key, np.zeros(self.n, bool))[o] = True
        return out

    def _spot_columns(self) -> list[_Column]:
        t, n = self.t, self.n
        absent = self._absent()
        cols: list[_Column] = []
        for key, col in SPOT_COLUMNS.items():
            present = ~absent[key] if key in absent else None
            if present is not None and not present.any():
                continue
            if key == "FRAME":
                cols.append(_Column(key, t.positions["frame"], True, present))
            elif key == "POSITION_Z" and not t.is_3d:
                cols.append(_Column(key, None, False, present, fixed="0.0"))  # TrackMate's z of a 2D spot
            else:
                cols.append(_Column(key, t.pos(col), False, present))
        skip = {"name", "ROI", *SPOT_NON_FEATURES, *SPOT_COLUMNS}
        for key in sorted({b.key for b in t.metadata if b.scope == "position"} & (skip - {"name", "ROI"})):
            self.lost.append(f"position metadata {key!r} (TrackMate's attribute of that name is written from "
                             "the positions table)")
        for key, (owners, values, isint) in self._usable("position", skip):
            cols.append(_column(key, n, owners, values, isint))
        keys = {c.key for c in cols}
        if "POSITION_T" not in keys:  # the spot's time: FRAME x frame interval, as TrackMate computes it
            present = ~absent["POSITION_T"] if "POSITION_T" in absent else None
            fi = t.session.frame_interval
            if present is None or present.any():
                cols.append(_Column("POSITION_T", t.positions["frame"] * (float(fi) if fi else 1.0), False, present))
        origin = t.pos("origin")
        if origin.any():  # positions a tool filled or a person validated (code = index in model.ORIGINS)
            cols = [c for c in cols if c.key != "ORIGIN"] + [_Column("ORIGIN", origin.astype(np.int64), True, None)]
        if t.is_3d and not self.is_tm and t.session.image_size[2] in (None, 1):
            z = t.pos("z")
            if np.array_equal(z.view(np.int64), np.zeros(n, np.int64)):
                self.lost.append("z = 0 of every position (TrackMate calls a one-slice file 2D: z reads back as "
                                 "missing)")
        if not self.is_tm:  # what TrackMate always has, for sessions from other formats
            if "VISIBILITY" not in keys:
                cols.append(_Column("VISIBILITY", np.ones(n, np.int64), True, None))
        return self._in_decl_order("SpotFeatures", cols)

    def _names(self) -> np.ndarray | None:
        """Escaped spot names in position order (None: TrackMate's default ``ID<ID>``), or None if all are."""
        b = self.meta.get(("position", "name"))
        if b is None or b.owners is None:
            return None
        names = np.full(self.n, None, dtype=object)
        names[b.owners] = [None if v is None else str(v) for v in b.values.tolist()]
        arr = pa.array(names, pa.string())
        if pc.any(pc.match_substring_regex(arr, _NEEDS_ESCAPE)).as_py():
            for i, s in enumerate(names.tolist()):
                if s is not None:
                    names[i] = self._clean(s)
        return names

    def _clean(self, s: str) -> str:
        if _ILLEGAL_XML.search(s):
            self.lost.append("control characters in names (written as U+FFFD)")
            s = _ILLEGAL_XML.sub("\ufffd", s)
        return escape_attr(s)

    def _roi_tails(self) -> np.ndarray:
        """What ends each spot line: `` />`` or ``ROI_N_POINTS="n">x0 y0 ...</Spot>``."""
        tails = np.full(self.n, " />\n", dtype=object)
        b = self.meta.get(("position", "ROI"))
        if b is not None and b.owners is not None and len(b.owners):
            owners, polys = b.owners, b.values.tolist()
            try:  # every coordinate formatted at once, then joined per polygon (all in Arrow)
                counts = np.array([len(p) for p in polys], np.int64)
                coords = np.array([c for p in polys for xy in p for c in _pair(xy)], np.float64)
            except (TypeError, ValueError):
                self.lost.append("ROI values that are not lists of [x, y] numbers")
                keep = [i for i, p in enumerate(polys) if _is_polygon(p)]
                owners, polys = owners[keep], [polys[i] for i in keep]
                counts = np.array([len(p) for p in polys], np.int64)
                coords = np.array([c for p in polys for xy in p for c in xy], np.float64)
            offsets = np.concatenate([[0], np.cumsum(2 * counts)]).astype(np.int32)
            text = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), _float_text(coords)), " ")
            line = pc.binary_join_element_wise(' ROI_N_POINTS="', _int_text(counts), '">', text, "</Spot>\n", "")
            tails[owners] = line.to_pylist()
        nb, tb = self.meta.get(("position", "trackmate.ROI_N_POINTS")), self.meta.get(("position",
                                                                                      "trackmate.ROI_text"))
        if nb is not None and tb is not None and nb.owners is not None and tb.owners is not None:
            texts = dict(zip(tb.owners.tolist(), tb.values.tolist()))
            for o, npts in zip(nb.owners.tolist(), nb.values.tolist()):
                attr = "" if npts is None else f' ROI_N_POINTS="{int(npts)}"'
                text = texts.get(o) or ""
                tails[o] = f"{attr}>{escape_text(str(text))}</Spot>\n" if text else f"{attr} />\n"
        return tails

    def _write_spots(self, f: IO[bytes]) -> None:
        n = self.n
        f.write(f'    <AllSpots nspots="{n}">\n'.encode())
        frames = self.t.positions["frame"][self.order]
        cur = None
        for a in range(0, n, _CHUNK):
            b = min(a + _CHUNK, n)
            idx = self.order[a:b]
            ids = _int_text(self.spot_ids[idx])
            pieces = [pc.binary_join_element_wise('        <Spot ID="', ids, '"', "")]
            names = pc.binary_join_element_wise("ID", ids, "")
            if self.names is not None:
                names = pc.coalesce(pa.array(self.names[idx], pa.string()), names)
            pieces.append(pc.binary_join_element_wise(' name="', names, '"', ""))
            pieces += [c.piece(idx) for c in self.spot_cols]
            pieces.append(pa.array(self.tails[idx], pa.string()))
            data, offs = _buffers(pc.binary_join_element_wise(*pieces, "", null_handling="skip"))
            fr = frames[a:b]
            cuts = np.flatnonzero(np.diff(fr)) + 1
            for s, e in zip([0, *cuts.tolist()], [*cuts.tolist(), b - a]):
                if int(fr[s]) != cur:
                    if cur is not None:
                        f.write(b"      </SpotsInFrame>\n")
                    cur = int(fr[s])
                    f.write(f'      <SpotsInFrame frame="{cur}">\n'.encode())
                f.write(data[offs[s]:offs[e]])
        if cur is not None:
            f.write(b"      </SpotsInFrame>\n")
        self._write_extra(f, "AllSpots")
        f.write(b"    </AllSpots>\n")

    # -- edges and tracks
    def _prepare_tracks(self) -> None:
        """Tracks = connected components with links; each keeps its stored lineage's metadata."""
        t, n = self.t, self.n
        src, dst = t.links["source_id"], t.links["target_id"]
        nl = len(src)
        self.tracks: list[dict[str, Any]] = []
        self.link_order = np.arange(nl)
        if nl:
            tr, lin = derive_tracks(n, src, dst)
            comp = lin[tr][src]
            first = np.full(int(comp.max()) + 1, nl, np.int64)
            np.minimum.at(first, comp, np.arange(nl))
            self.link_order = np.lexsort((np.arange(nl), first[comp]))  # tracks in order of their first link
            comps = comp[self.link_order]
            cuts = np.flatnonzero(np.diff(comps)) + 1
            tid = t.positions.get("track_id")
            has_tracks = tid is not None and len(tid) == n and t.n_tracks > 0
            lineage = t.track_col("lineage_id") if has_tracks else None
            visible = np.asarray(t.track_col("visible"), bool) if has_tracks else None
            tnames = t.track_col("name") if has_tracks else None
            ident = t.track_col("identity") if has_tracks else None
            vis_pos = np.ones(n, bool)  # a lineage is in FilteredTracks when all its tracklets are visible
            if has_tracks:
                ok = tid >= 0
                vis_pos[ok] = visible[tid[ok]]
            comp_vis = np.ones(int(comp.max()) + 1, bool)
            np.logical_and.at(comp_vis, comp, vis_pos[src] & vis_pos[dst])
            # what TrackMate keeps once per track: the tracklets' names and identities when they agree
            per_comp: dict[int, tuple[set, set]] = {}
            if has_tracks:
                track_of_link = np.concatenate([tid[src], tid[dst]])
                comp2 = np.concatenate([comp, comp])
                span = int(track_of_link.max()) + 2
                pairs = np.unique(comp2 * span + (track_of_link + 1))  # (component, tracklet) pairs
                for c, k in zip((pairs // span).tolist(), (pairs % span - 1).tolist()):
                    if k >= 0:
                        names_ids = per_comp.setdefault(c, (set(), set()))
                        names_ids[0].add(tnames[k])
                        names_ids[1].add(ident[k])
            split_names = split_ids = 0
            for s, e in zip([0, *cuts.tolist()], [*cuts.tolist(), nl]):
                i = int(self.link_order[s])
                c = int(comp[i])
                ts = int(tid[src[i]]) if has_tracks else -1
                names_c, ids_c = per_comp.get(c, ({None}, {None}))
                split_names += len(names_c) > 1
                split_ids += len(ids_c) > 1
                ident_c = next(iter(ids_c)) if len(ids_c) == 1 else None
                self.tracks.append({"links": (s, e), "visible": bool(comp_vis[c]),
                                    "lineage": int(lineage[ts]) if ts >= 0 else c,
                                    "tracklet_name": tnames[ts] if ts >= 0 else None,
                                    "identity": ident_c if isinstance(ident_c, (int, np.integer)) else None})
            if has_tracks:
                in_links = np.zeros(n, bool)
                in_links[src] = in_links[dst] = True
                lone = np.unique(tid[~in_links & (tid >= 0)])
                named = sum(tnames[k] is not None or ident[k] is not None for k in lone.tolist())
                if named:
                    self.lost.append(f"names/identities of {named} single-spot tracklet(s) (TrackMate has no "
                                     "track without an edge)")
            if split_names:
                self.lost.append(f"tracklet names in {split_names} track(s) whose tracklets are named differently "
                                 "(a TrackMate track has one name: its first tracklet's)")
            if split_ids:
                self.lost.append(f"identities of {split_ids} track(s) that join tracklets of different identities")
        # TRACK_IDs: the stored ones where they are usable, new ones after them otherwise
        stored = self._lineage_values("TRACK_ID")
        used: set[int] = set()
        for tr in self.tracks:
            v = stored.get(tr["lineage"])
            ok = isinstance(v, (int, np.integer)) and not isinstance(v, bool) and -(2**31) <= v < 2**31
            tr["id"] = int(v) if ok and int(v) not in used else None
            if tr["id"] is not None:
                used.add(tr["id"])
        nxt = max(used, default=-1) + 1
        for tr in self.tracks:
            if tr["id"] is None:
                tr["id"], nxt = nxt, nxt + 1
        names = self._lineage_values("name")
        for tr in self.tracks:
            name = names.get(tr["lineage"])
            if name is None and not (self.is_tm and tr["lineage"] in stored):
                name = tr["tracklet_name"] if tr["tracklet_name"] is not None else f"Track_{tr['id']}"
            tr["name"] = None if name is None else self._clean(str(name))
        tcols = [_column(k, 0 if not len(o) else int(o.max()) + 1, o, v, isint)
                 for k, (o, v, isint) in self._usable("lineage", {"TRACK_ID", "name", "visible"})]
        if self.tracks:
            self._declare("TrackFeatures", "TRACK_ID", True)
        if any(tr["identity"] is not None for tr in self.tracks):  # tracks.identity (idtracker.ai animals)
            ids = np.array([-1 if tr["identity"] is None else int(tr["identity"]) for tr in self.tracks], np.int64)
            lins = np.array([tr["lineage"] for tr in self.tracks], np.int64)
            col = _column("IDENTITY", int(lins.max()) + 1, lins[ids >= 0], ids[ids >= 0], True)
            tcols = [c for c in tcols if c.key != "IDENTITY"] + [col]
        self.track_cols = self._in_decl_order("TrackFeatures", tcols)
        # edge columns
        rev = np.zeros(nl, bool)
        rb = self.meta.get(("link", "trackmate.reversed"))
        if rb is not None and rb.owners is not None:
            rev[rb.owners[np.asarray(rb.values, bool)]] = True
        ecols = [_Column("SPOT_SOURCE_ID", self.spot_ids[np.where(rev, dst, src)], True, None),
                 _Column("SPOT_TARGET_ID", self.spot_ids[np.where(rev, src, dst)], True, None)]
        for key, (owners, values, isint) in self._usable("link", set(EDGE_ENDS)):
            ecols.append(_column(key, nl, owners, values, isint))
        self.edge_cols = self._in_decl_order("EdgeFeatures", ecols) if nl else []

    def _lineage_values(self, key: str) -> dict[int, Any]:
        b = self.meta.get(("lineage", key))
        if b is None or b.owners is None:
            return {}
        return dict(zip(b.owners.tolist(), b.values.tolist()))

    def _write_tracks(self, f: IO[bytes]) -> None:
        f.write(b"    <AllTracks>\n")
        # Edge lines are made for all links at once, _CHUNK at a time (tracks are consecutive runs
        # of link_order), so the Arrow calls do not multiply with the number of tracks.
        nl = len(self.link_order)
        ti = 0
        for a in range(0, nl, _CHUNK):
            b = min(a + _CHUNK, nl)
            idx = self.link_order[a:b]
            rows = pc.binary_join_element_wise("        <Edge", *[c.piece(idx) for c in self.edge_cols],
                                               " />\n", "", null_handling="skip")
            data, offs = _buffers(rows)
            pos = a
            while pos < b:
                tr = self.tracks[ti]
                s, e = tr["links"]
                if pos == s:
                    f.write(self._track_open(tr))
                end = min(e, b)
                f.write(data[offs[pos - a]:offs[end - a]])
                pos = end
                if end == e:
                    f.write(b"      </Track>\n")
                    ti += 1
        for attrs in self.tm.get("trackmate.empty_tracks") or []:
            f.write(f"      <Track{_attrs(attrs)} />\n".encode())
        self._write_extra(f, "AllTracks")
        f.write(b"    </AllTracks>\n")
        f.write(b"    <FilteredTracks>\n")
        for tr in self.tracks:
            if tr["visible"]:
                f.write(f'      <TrackID TRACK_ID="{tr["id"]}" />\n'.encode())
        for s in self.tm.get("trackmate.filtered_unknown") or []:
            f.write(f'      <TrackID TRACK_ID="{escape_attr(str(s))}" />\n'.encode())
        self._write_extra(f, "FilteredTracks")
        f.write(b"    </FilteredTracks>\n")

    def _track_open(self, tr: dict[str, Any]) -> bytes:
        attrs = "" if tr["name"] is None else f' name="{tr["name"]}"'
        attrs += f' TRACK_ID="{tr["id"]}"'
        lin = tr["lineage"]
        for c in self.track_cols:
            if lin < len(c.values) and (c.present is None or c.present[lin]):
                attrs += f' {c.key}="{_num_text(c.values[lin])}"'
        return f"      <Track{attrs}>\n".encode()

    # -- the document
    def write(self, f: IO[bytes]) -> None:
        t, tm = self.t, self.tm
        root = {"version": tm.get("trackmate.version") or DEFAULT_VERSION,
                **(tm.get("trackmate.root_attributes") or {})}
        f.write(f'<?xml version="1.0" encoding="UTF-8"?>\n<TrackMate{_attrs(root)}>\n'.encode())
        log = tm.get("trackmate.Log")
        if log is None:
            log = f"Written by trackstore from the {t.session.source_format or 'unknown'} session {t.session.name!r}."
        f.write(f"  <Log>{escape_text(str(log))}</Log>\n".encode())
        model = {"spatialunits": tm.get("trackmate.spatialunits") or _unit(t.session.space_unit,
                                                                          units.SPACE_TO_TRACKMATE, "pixel"),
                 "timeunits": tm.get("trackmate.timeunits") or _unit(t.session.time_unit,
                                                                    units.TIME_TO_TRACKMATE, "frame"),
                 **(tm.get("trackmate.model_attributes") or {})}
        f.write(f"  <Model{_attrs(model)}>\n".encode())
        f.write(self._declarations_xml().encode())
        self._write_spots(f)
        self._write_tracks(f)
        self._write_extra(f, "Model")
        f.write(b"  </Model>\n")
        settings = tm.get("trackmate.Settings")
        f.write(f"  {settings or self._default_settings()}\n".encode())
        f.write(f"  {tm.get('trackmate.GUIState') or _DEFAULT_GUI}\n".encode())
        ds = tm.get("trackmate.DisplaySettings")
        if ds is not None:  # absent for other formats: TrackMate then uses the user's defaults
            f.write(f"  <DisplaySettings>{escape_text(str(ds))}</DisplaySettings>\n".encode())
        self._write_extra(f, "TrackMate")
        f.write(b"</TrackMate>\n")
        for parent, xml in tm.get("trackmate.extra") or []:
            if parent not in ("TrackMate", "Model", "AllSpots", "AllTracks", "FilteredTracks"):
                self.lost.append(f"an unknown element under <{parent}>: {xml[:40]}")

    def _write_extra(self, f: IO[bytes], parent: str) -> None:
        for p, xml in self.tm.get("trackmate.extra") or []:
            if p == parent:
                f.write(f"  {xml}\n".encode())

    def _declarations_xml(self) -> str:
        lines = ["    <FeatureDeclarations>\n"]
        for group, decl in self.decls.items():
            lines.append(f"      <{group}>\n")
            lines += [f"        <Feature{_attrs(d)} />\n" for d in decl]
            lines.append(f"      </{group}>\n")
        lines.append("    </FeatureDeclarations>\n")
        return "".join(lines)

    def _default_settings(self) -> str:
        """Settings for a session from another format: its image geometry, manual detector and tracker."""
        t, info = self.t, self.t.session
        frames = t.frame_numbers()
        nframes = int(frames.max()) + 1 if len(frames) else 1

        def extent(v, col: str) -> int:
            """Pixels along one axis: the session's image size, else what the positions span."""
            if v is not None:
                return int(v)
            c = t.pos(col)
            c = c[np.isfinite(c)]
            return int(min(max(np.ceil(c.max()) + 1, 1), 2**31 - 1)) if len(c) else 1

        w, h = extent(info.image_size[0], "x"), extent(info.image_size[1], "y")
        d = extent(info.image_size[2], "z") if t.is_3d or info.image_size[2] else 1
        physical = info.space_unit not in (None, "pixel")
        px = [p if (physical and p) else 1.0 for p in info.pixel_size]
        if not physical and any(p not in (None, 1.0) for p in info.pixel_size):
            self.lost.append("the pixel size (positions are in pixels, so ImageData says 1.0)")
        r = t.pos("radius")
        radius = float(np.nanmedian(r)) if self.n and np.isfinite(r).any() else 2.5
        return (
            "<Settings>\n"
            f'    <ImageData filename="" folder="" width="{w}" height="{h}" nslices="{d}" nframes="{nframes}" '
            f'pixelwidth="{_num_text(px[0])}" pixelheight="{_num_text(px[1])}" voxeldepth="{_num_text(px[2])}" '
            f'timeinterval="{_num_text(info.frame_interval or 1.0)}" />\n'
            f'    <BasicSettings xstart="0" xend="{w - 1}" ystart="0" yend="{h - 1}" zstart="0" zend="{d - 1}" '
            f'tstart="0" tend="{nframes - 1}" />\n'
            f'    <DetectorSettings DETECTOR_NAME="MANUAL_DETECTOR" RADIUS="{_num_text(radius)}" />\n'
            '    <InitialSpotFilter feature="QUALITY" value="0.0" isabove="true" />\n'
            "    <SpotFilterCollection />\n"
            '    <TrackerSettings TRACKER_NAME="MANUAL_TRACKER" />\n'
            "    <TrackFilterCollection />\n"
            "    <AnalyzerCollection>\n"
            "      <SpotAnalyzers />\n"
            '      <EdgeAnalyzers>\n        <Analyzer key="Edge target" />\n      </EdgeAnalyzers>\n'
            '      <TrackAnalyzers>\n        <Analyzer key="Track index" />\n      </TrackAnalyzers>\n'
            "    </AnalyzerCollection>\n"
            "  </Settings>")


def _pair(xy) -> tuple[float, float]:
    x, y = xy  # a vertex is exactly two numbers
    return float(x), float(y)


def _is_polygon(p) -> bool:
    try:
        for xy in p:
            _pair(xy)
        return True
    except (TypeError, ValueError):
        return False


def _attrs(d: dict[str, Any]) -> str:
    return "".join(f' {k}="{escape_attr(str(v))}"' for k, v in d.items())


def _unit(u: str | None, table: dict[str, str], default: str) -> str:
    return default if u is None else table.get(u, u)


def _buffers(rows: pa.Array) -> tuple[memoryview, np.ndarray]:
    """The UTF-8 data buffer and row offsets of a string array: rows are contiguous text."""
    width = np.int64 if rows.type == pa.large_string() else np.int32
    bufs = rows.buffers()
    offs = np.frombuffer(bufs[1], width)[rows.offset:rows.offset + len(rows) + 1].astype(np.int64)
    data = memoryview(bufs[2]) if bufs[2] is not None else memoryview(b"")
    return data, offs
