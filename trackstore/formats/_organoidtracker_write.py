"""Writing TrackTables as OrganoidTracker ``.aut`` files (v2, or v1 on request).

AUT tracks are unbranched runs of links between consecutive time points; they are rebuilt here from
the links (a link continues a track when its source has one outgoing link, its target one incoming
link, and both ends are in the same track of the session), so any format's session can be written.
Columns are gathered with numpy and serialised by orjson straight from numpy arrays where possible.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LossyConversionWarning, WriteError
from ..model import ORIGINS, MetaBlock, TrackTables
from . import _organoidtracker_json as oj
from ._base import prepare_target

NS = "organoidtracker."
#: The order in which OrganoidTracker's own saver writes the top-level keys.
DEFAULT_ORDER = ("version", "positions", "tracks", "name", "name_is_automatic", "data_axes", "data_axes_meta",
                 "beacons", "warning_limits", "connections", "image_resolution", "image_offsets", "image_filters",
                 "image_timings", "image_channel_descriptions", "color", "other_data")
_FORMAT_PREFIXES = ("idtrackerai.", "trackmate.", "ctc.", "geff.", "paraview_csv.", "trackstore.")
_TO_UM = {"micrometre": 1.0, "micrometer": 1.0, "micron": 1.0, "um": 1.0, "µm": 1.0, "μm": 1.0,
          "nanometre": 1e-3, "nanometer": 1e-3, "nm": 1e-3, "millimetre": 1e3, "millimeter": 1e3, "mm": 1e3,
          "metre": 1e6, "meter": 1e6, "m": 1e6}
_TO_MIN = {"minute": 1.0, "minutes": 1.0, "min": 1.0, "second": 1 / 60, "seconds": 1 / 60, "s": 1 / 60,
           "sec": 1 / 60, "hour": 60.0, "hours": 60.0, "h": 60.0, "millisecond": 1 / 60000, "ms": 1 / 60000}


def _warn(msg: str) -> None:
    warnings.warn(msg, LossyConversionWarning, stacklevel=4)


class _Graph:
    """Positions and links ready for AUT: no link skips a time point; tracklets in file order."""

    def __init__(self, t: TrackTables, gaps: str):
        n = t.n_positions
        self.frame = t.positions["frame"].astype(np.int64)
        self.xyz = np.column_stack([t.positions["x"], t.positions["y"], t.pos("z")]).astype(np.float64)
        self.track = t.pos("track_id").astype(np.int64)
        src = t.links["source_id"].astype(np.int64)
        dst = t.links["target_id"].astype(np.int64)
        self.n_listed = n
        self.link_of = np.arange(len(src), dtype=np.int64)  # session link index of each output link (-1: new)
        self.filler = np.zeros(n, dtype=bool)
        step = self.frame[dst] - self.frame[src]
        if (step < 1).any():
            j = int(np.flatnonzero(step < 1)[0])
            raise WriteError(f"link {j} goes from frame {int(self.frame[src[j]])} to frame {int(self.frame[dst[j]])}; "
                             "links must go forward in time")
        gap = np.flatnonzero(step > 1)
        if len(gap):
            skipped = int((step[gap] - 1).sum())
            if gaps == "split":
                keep = step == 1
                src, dst, self.link_of = src[keep], dst[keep], self.link_of[keep]
                _warn(f"{len(gap)} link(s) skip time points, which AUT cannot store: the tracks were split there "
                      f"({skipped} time point(s) without a position)")
            else:
                k = step[gap] - 1  # copies of the source position at each skipped time point
                owner = np.repeat(gap, k)
                rank = np.arange(len(owner)) - np.repeat(np.cumsum(k) - k, k)
                f_frame = self.frame[src[owner]] + rank + 1
                f_ids = n + np.arange(len(owner), dtype=np.int64)
                self.frame = np.concatenate([self.frame, f_frame])
                self.xyz = np.concatenate([self.xyz, self.xyz[src[owner]]])
                self.track = np.concatenate([self.track, self.track[src[owner]]])
                self.filler = np.concatenate([self.filler, np.ones(len(owner), bool)])
                # chain: source -> first copy (keeps the link and its metadata), copies -> next, last copy -> target
                last_of = np.cumsum(k) - 1 + n
                first_of = last_of - k + 1
                new_src = np.concatenate([f_ids[rank < np.repeat(k, k) - 1], last_of])
                new_dst = np.concatenate([f_ids[rank < np.repeat(k, k) - 1] + 1, dst[gap]])
                dst = dst.copy()
                dst[gap] = first_of
                src = np.concatenate([src, new_src])
                dst = np.concatenate([dst, new_dst])
                self.link_of = np.concatenate([self.link_of, np.full(len(new_src), -1, np.int64)])
                _warn(f"{len(gap)} link(s) skip time points, which AUT cannot store: filled {skipped} time point(s) "
                      "with copies of the source position (as OrganoidTracker's TrackMate importer does)")
        self.src, self.dst = src, dst
        self._tracklets()

    def _tracklets(self) -> None:
        n = len(self.frame)
        src, dst = self.src, self.dst
        outdeg = np.bincount(src, minlength=n)
        indeg = np.bincount(dst, minlength=n)
        cont = (outdeg[src] == 1) & (indeg[dst] == 1) & (self.track[src] == self.track[dst])
        self.cont = cont
        in_track = (outdeg + indeg > 0) | (self.track >= 0)
        prev = np.arange(n, dtype=np.int64)
        prev[dst[cont]] = src[cont]
        head = prev.copy()
        while True:
            nxt = head[head]
            if np.array_equal(nxt, head):
                break
            head = nxt
        heads = np.flatnonzero(in_track & (head == np.arange(n)))
        tk = self.track[heads]
        order = np.lexsort((heads, self.frame[heads], np.where(tk < 0, np.iinfo(np.int64).max, tk)))
        heads = heads[order]
        rank = np.full(n, -1, dtype=np.int64)
        rank[heads] = np.arange(len(heads))
        members = np.flatnonzero(in_track)
        tl = rank[head[members]]
        o = np.lexsort((self.frame[members], tl))
        self.rows = members[o]  # positions of every tracklet, tracklet after tracklet, in time order
        self.tl_of_row = tl[o]
        self.n_tl = len(heads)
        self.heads = heads
        self.starts = np.searchsorted(self.tl_of_row, np.arange(len(heads)))
        self.ends = np.append(self.starts[1:], len(self.rows))
        self.tracklet = np.full(n, -1, dtype=np.int64)
        self.tracklet[self.rows] = self.tl_of_row
        # the continuation link into each position (-1 for a head)
        self.cont_in = np.full(n, -1, dtype=np.int64)
        self.cont_in[dst[cont]] = np.flatnonzero(cont)
        # links into heads from other tracklets (parents), in link order
        par = np.flatnonzero(~cont)
        self.parent_links = par[np.argsort(self.tracklet[dst[par]], kind="stable")]
        self.parent_tl = self.tracklet[dst[self.parent_links]]
        self.is_root = np.ones(len(heads), dtype=bool)
        self.is_root[self.parent_tl] = False


def _dense(b: MetaBlock, n: int, remap: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(values, present)`` of a block over owner ids 0..n-1 (NaN or None where absent)."""
    owners = b.owners if remap is None else remap[b.owners]
    ok = (owners >= 0) & (owners < n)
    owners, vals = owners[ok], b.values[ok]
    present = np.zeros(n, dtype=bool)
    present[owners] = True
    if vals.dtype.kind == "f":
        out = np.full(n, np.nan)
    else:
        out = np.full(n, None, dtype=object)
    out[owners] = vals
    return out, present


def _part(vals: np.ndarray) -> Any:
    return vals if vals.dtype.kind == "f" else vals.tolist()


def _json_ok(b: MetaBlock) -> bool:
    if b.values.dtype.kind in "fiub":
        return True
    return oj.check_serializable(b.values.tolist())


class _Meta:
    """The session's metadata, sorted into what each part of an AUT file needs."""

    def __init__(self, t: TrackTables):
        self.session: dict[str, Any] = {}
        self.other_data: dict[str, Any] = {}
        self.position: list[MetaBlock] = []
        self.link: list[MetaBlock] = []
        self.lineage: list[MetaBlock] = []
        self.track_lineage_meta: MetaBlock | None = None
        self.flags: dict[tuple[str, str], MetaBlock] = {}
        lost: dict[str, int] = {}
        for b in t.metadata:
            key = b.key
            if key.startswith(NS):
                if b.scope == "session":
                    self.session[key[len(NS):]] = b.values[0]
                elif b.scope == "track" and key == NS + "lineage_meta":
                    self.track_lineage_meta = b
                else:
                    self.flags[(b.scope, key[len(NS):])] = b
                continue
            if key.startswith(_FORMAT_PREFIXES) or b.scope in ("tag",):
                if b.scope != "tag":
                    lost[f"{b.scope} {key}"] = len(b)
                continue
            if b.scope in ("position", "lineage") and (key == "id" or key.startswith("__")):
                lost[f"{b.scope} {key} (a name OrganoidTracker refuses)"] = len(b)
                continue
            if b.scope == "session":
                v = b.values[0]
                if oj.check_serializable(v):
                    self.other_data[key] = v
                else:
                    lost[f"session {key}"] = 1
            elif b.scope in ("position", "link", "lineage"):
                if _json_ok(b):
                    getattr(self, b.scope).append(b)
                else:
                    lost[f"{b.scope} {key} (not JSON)"] = len(b)
            else:
                lost[f"{b.scope} {key}"] = len(b)
        if lost:
            _warn("AUT cannot hold this metadata, not written: " +
                  ", ".join(f"{k} ({v} value{'s' if v != 1 else ''})" for k, v in lost.items()))


def _um(unit: str | None) -> float | None:
    return _TO_UM.get((unit or "").strip().lower()) if unit else None


def _resolution(t: TrackTables, m: _Meta) -> dict | None:
    """image_resolution: the file's own when it still agrees with the session, else from the session."""
    info = t.session
    kept = m.session.get("image_resolution")
    f = _um(info.physical_unit)
    px = [None if v is None or f is None else float(v) * f for v in info.pixel_size]
    t_m = None
    if info.frame_interval is not None and info.time_unit:
        tf = _TO_MIN.get(info.time_unit.strip().lower())
        t_m = None if tf is None else float(info.frame_interval) * tf
    if isinstance(kept, dict):
        same = all(kept.get(k) == v or (v is None and kept.get(k) in (None, 0, 0.0))
                   for k, v in zip(("x_um", "y_um", "z_um", "t_m"), (*px, t_m)))
        if same:
            return kept
    if all(v is None for v in px) and t_m is None:
        return kept if isinstance(kept, dict) else None
    return {"x_um": px[0] or 0.0, "y_um": px[1] or 0.0, "z_um": px[2] or 0.0, "t_m": t_m or 0.0}


def _to_pixels(t: TrackTables, g: _Graph) -> None:
    """AUT stores pixels: convert physical coordinates with the pixel size (or warn that we cannot)."""
    unit = (t.session.space_unit or "pixel").strip().lower()
    if unit in ("pixel", "pixels", "px", "voxel"):
        return
    f = _um(unit)
    pf = _um(t.session.physical_unit)
    sizes = t.session.pixel_size
    if f is None or pf is None or sizes[0] is None or sizes[1] is None:
        _warn(f"coordinates are in {t.session.space_unit} and no pixel size is known: written unchanged "
              "(OrganoidTracker reads them as pixels)")
        return
    for j, s in enumerate(sizes):
        if s:
            g.xyz[:, j] = g.xyz[:, j] * (f / (float(s) * pf))


def _lineage_meta(g: _Graph, t: TrackTables, m: _Meta) -> dict[int, dict]:
    """lineage_meta per tracklet: lineage values on each lineage's first root, plus per-track dicts."""
    out: dict[int, dict] = {}
    lineage_of_track = t.track_col("lineage_id") if t.n_tracks else np.empty(0, np.int64)
    tid = g.track[g.heads]
    ok = (tid >= 0) & (tid < len(lineage_of_track))
    lin = np.full(len(tid), -1, dtype=np.int64)
    lin[ok] = lineage_of_track[tid[ok]]
    roots = np.flatnonzero(g.is_root)
    primary: dict[int, int] = {}
    for tl in roots.tolist():
        if lin[tl] >= 0:
            primary.setdefault(int(lin[tl]), tl)
    for b in m.lineage:
        for owner, v in zip(b.owners.tolist(), b.values.tolist()):
            tl = primary.get(owner)
            if tl is not None:
                out.setdefault(tl, {})[b.key] = v
    if m.track_lineage_meta is not None:
        b = m.track_lineage_meta
        first_tl_of_track = {}
        for tl in range(g.n_tl):
            first_tl_of_track.setdefault(int(tid[tl]), tl)
        for owner, v in zip(b.owners.tolist(), b.values.tolist()):
            tl = first_tl_of_track.get(owner)
            if tl is not None and isinstance(v, dict):
                out.setdefault(tl, {}).update(v)
    # tracks of other formats: their identity and name are kept on the root (AUT has no track fields)
    if t.n_tracks and t.session.source_format != "organoidtracker":
        ident, name = t.track_col("identity"), t.track_col("name")
        for tl in roots.tolist():
            k = int(tid[tl])
            if not 0 <= k < t.n_tracks:
                continue
            d = out.setdefault(tl, {})
            if ident[k] is not None and "identity" not in d:
                d["identity"] = int(ident[k])
            if name[k] is not None and "track_name" not in d:
                d["track_name"] = str(name[k])
            if not d:
                del out[tl]
    return out


def _position_flags(m: _Meta, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(listed in ``positions``?, v1 node index or None) per session position."""
    listed = np.ones(n, dtype=bool)
    b = m.flags.get(("position", "not_in_positions"))
    if b is not None:
        listed[b.owners[b.owners < n]] = False
    node = None
    b = m.flags.get(("position", "v1_node_index"))
    if b is not None:
        node = np.full(n, -1, dtype=np.int64)
        node[b.owners] = b.values.astype(np.int64)
    return listed, node


def _coords(xyz: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(xyz, dtype=np.float64)


# ---------------------------------------------------------------------------- v2
def _positions_v2(g: _Graph, listed: np.ndarray, m: _Meta) -> list[dict]:
    rows = np.flatnonzero(listed)
    rows = rows[np.argsort(g.frame[rows], kind="stable")]
    fr = g.frame[rows]
    cut = np.flatnonzero(np.diff(fr)) + 1
    starts = np.concatenate([[0], cut]).astype(np.int64)
    ends = np.append(cut, len(rows)).astype(np.int64)
    out = [{"time_point": int(fr[a]), "coords_xyz_px": _coords(g.xyz[rows[a:b]])} for a, b in zip(starts, ends)]
    n = g.n_listed
    for blk in m.position:
        vals, present = _dense(blk, n)
        vals, present = vals[rows[rows < n]], present[rows[rows < n]]
        if not len(vals):
            continue
        has = np.logical_or.reduceat(present, starts) if len(starts) else np.zeros(0, bool)
        for i in np.flatnonzero(has).tolist():
            out[i].setdefault("position_meta", {})[blk.key] = _part(vals[starts[i]:ends[i]])
    return out


def _tracks_v2(g: _Graph, t: TrackTables, m: _Meta, trailing_null: bool) -> list[dict]:
    tracks = []
    for i in range(g.n_tl):
        a, b = int(g.starts[i]), int(g.ends[i])
        tracks.append({"time_point_start": int(g.frame[g.rows[a]]), "coords_xyz_px": _coords(g.xyz[g.rows[a:b]])})
    n_links = t.n_links
    # link_meta: the continuation links of each tracklet, in order
    cin = g.cont_in[g.rows]  # output link into each row (-1 at heads)
    sess_link = np.where(cin >= 0, g.link_of[np.clip(cin, 0, None)], -1)
    for blk in m.link:
        vals, present = _dense(blk, n_links)
        ok = sess_link >= 0
        v_rows = np.full(len(cin), np.nan) if vals.dtype.kind == "f" else np.full(len(cin), None, object)
        v_rows[ok] = vals[sess_link[ok]]
        p_rows = np.zeros(len(cin), bool)
        p_rows[ok] = present[sess_link[ok]]
        has = np.logical_or.reduceat(p_rows, g.starts) if len(g.starts) else np.zeros(0, bool)
        for i in np.flatnonzero(has).tolist():
            a, b = int(g.starts[i]), int(g.ends[i])
            tracks[i].setdefault("link_meta", {})[blk.key] = _part(v_rows[a + 1:b])
    # parents: coords_xyz_px_before and link_meta_before
    pl = g.parent_links
    if len(pl):
        bounds = np.flatnonzero(np.diff(g.parent_tl)) + 1
        p_starts = np.concatenate([[0], bounds])
        p_ends = np.append(bounds, len(pl))
        sl = g.link_of[pl]
        metas = []
        for blk in m.link:
            vals, present = _dense(blk, n_links)
            ok = sl >= 0
            pv = np.full(len(pl), None, dtype=object)
            pv[ok] = vals[sl[ok]]
            if vals.dtype.kind == "f":
                pv[ok & np.isnan(vals[np.clip(sl, 0, None)])] = None
            pp = np.zeros(len(pl), bool)
            pp[ok] = present[sl[ok]]
            metas.append((blk.key, pv, pp))
        for a, b in zip(p_starts.tolist(), p_ends.tolist()):
            tl = int(g.parent_tl[a])
            tracks[tl]["coords_xyz_px_before"] = _coords(g.xyz[g.src[pl[a:b]]])
            for key, pv, pp in metas:
                if pp[a:b].any():
                    lst = pv[a:b].tolist()
                    if trailing_null:
                        lst.append(None)
                    tracks[tl].setdefault("link_meta_before", {})[key] = lst
    for tl, d in _lineage_meta(g, t, m).items():
        tracks[tl]["lineage_meta"] = d
    return tracks


# ---------------------------------------------------------------------------- v1
def _id(frame: int, xyz: np.ndarray) -> dict:
    x, y, z = xyz.tolist()
    return {"x": x, "y": y, "z": z, "_time_point_number": frame}


def _positions_v1(g: _Graph, listed: np.ndarray, m: _Meta) -> dict:
    rows = np.flatnonzero(listed)
    rows = rows[np.argsort(g.frame[rows], kind="stable")]
    fr = g.frame[rows]
    cut = np.flatnonzero(np.diff(fr)) + 1
    out = {}
    extra = m.flags.get(("position", "v1_extra"))
    ex = {} if extra is None else dict(zip(extra.owners.tolist(), extra.values.tolist()))
    for a, b in zip(np.concatenate([[0], cut]).tolist(), np.append(cut, len(rows)).tolist()):
        r = rows[a:b]
        if ex and any(int(p) in ex for p in r):
            out[str(int(fr[a]))] = [g.xyz[p].tolist() + list(ex.get(int(p), [])) for p in r]
        else:
            out[str(int(fr[a]))] = _coords(g.xyz[r])
    return out


def _links_v1(g: _Graph, t: TrackTables, m: _Meta, listed: np.ndarray, node_index: np.ndarray | None) -> dict:
    n = g.n_listed
    if node_index is not None:
        nodes_at = np.flatnonzero(node_index >= 0)
        nodes_at = nodes_at[np.argsort(node_index[nodes_at], kind="stable")]
    else:
        nodes_at = np.flatnonzero(listed)
    frames = g.frame.tolist()
    xyz = g.xyz.tolist()
    ids = [{"x": c[0], "y": c[1], "z": c[2], "_time_point_number": f} for c, f in zip(xyz, frames)]
    nodes = [{"id": ids[p]} for p in nodes_at.tolist()]
    pos_in_nodes = np.full(len(frames), -1, dtype=np.int64)
    pos_in_nodes[nodes_at] = np.arange(len(nodes_at))
    for blk in m.position:
        owners = blk.owners[blk.owners < n]
        vals = blk.values[blk.owners < n].tolist()
        at = pos_in_nodes[owners].tolist()
        for j, v in zip(at, vals):
            if j >= 0:
                nodes[j][blk.key] = v
    links = []
    rev_b = m.flags.get(("link", "v1_reversed"))
    rev = np.zeros(t.n_links, bool)
    if rev_b is not None:
        rev[rev_b.owners[rev_b.owners < t.n_links]] = True
    out_rev = np.zeros(len(g.src), bool)
    ok = g.link_of >= 0
    out_rev[ok] = rev[g.link_of[ok]]
    for s, d, r in zip(g.src.tolist(), g.dst.tolist(), out_rev.tolist()):
        links.append({"source": ids[d], "target": ids[s]} if r else {"source": ids[s], "target": ids[d]})
    where = np.full(t.n_links, -1, dtype=np.int64)
    where[g.link_of[ok]] = np.flatnonzero(ok)
    for blk in m.link:
        at = where[blk.owners[blk.owners < t.n_links]].tolist()
        for j, v in zip(at, blk.values[blk.owners < t.n_links].tolist()):
            if j >= 0:
                links[j][blk.key] = v
    # lineage data goes on every link leaving the first position of a root track
    lm = _lineage_meta(g, t, m)
    if lm:
        first_pos = {int(g.rows[g.starts[tl]]): d for tl, d in lm.items() if g.is_root[tl]}
        for j, s in enumerate(g.src.tolist()):
            d = first_pos.get(s)
            if d:
                for k, v in d.items():
                    links[j]["__lineage_" + k] = v
    keys = m.session.get("d3_keys")
    d3 = dict(keys) if isinstance(keys, dict) else {"directed": False, "multigraph": False, "graph": {},
                                                     "nodes": None, "links": None}
    d3["nodes"] = nodes
    d3["links"] = links
    return d3


# ---------------------------------------------------------------------------- entry
def write_aut(t: TrackTables, path: Path, *, overwrite: bool, version: str, gaps: str,
              trailing_null: bool | None) -> list[Path]:
    """Write ``t`` to ``path``; see ``organoidtracker.write``."""
    if version not in ("v1", "v2"):
        raise WriteError(f"unknown AUT version {version!r}", path=path, hint="use version='v2' or 'v1'")
    if gaps not in ("fill", "split"):
        raise WriteError(f"unknown gaps option {gaps!r}", path=path, hint="use gaps='fill' or 'split'")
    if trailing_null not in (None, True, False):
        raise WriteError(f"trailing_null must be true or false, not {trailing_null!r}", path=path)
    path = prepare_target(Path(path), overwrite=overwrite)
    m = _Meta(t)
    _column_blocks(t, m)
    g = _Graph(t, gaps)
    _to_pixels(t, g)
    listed, node_index = _position_flags(m, t.n_positions)
    listed = np.concatenate([listed, np.zeros(len(g.frame) - t.n_positions, bool)])  # fillers: tracks only
    if not t.is_3d and t.n_positions:
        g.xyz[:, 2] = np.where(np.isnan(g.xyz[:, 2]), 0.0, g.xyz[:, 2])  # 2D: z = 0, as OrganoidTracker's CTC import
    if trailing_null is None:
        trailing_null = bool(m.session.get("link_meta_before_trailing_null", False))
    if version == "v2":
        nulls = sum(int(sum(v is None for v in b.values.tolist())) for b in m.position + m.link
                    if b.values.dtype.kind == "O")
        if nulls:
            _warn(f"{nulls} null metadata value(s) written as absent: v2 column lists cannot tell a null "
                  "from a missing value (v1 can)")

    order = m.session.get("key_order")
    own = isinstance(order, list)
    order = list(order) if own else list(DEFAULT_ORDER)
    pos_key = "shapes" if "shapes" in order and "positions" not in order else "positions"
    bulk = "tracks" if version == "v2" else "links"
    other = "links" if version == "v2" else "tracks"
    if bulk not in order:
        if other in order:
            order[order.index(other)] = bulk
        else:
            at = order.index(pos_key) + 1 if pos_key in order else len(order)
            order.insert(at, bulk)
    if version == "v2" and "version" not in order:
        order.insert(0, "version")
    if pos_key not in order:
        order.insert(1 if order and order[0] == "version" else 0, pos_key)

    orig = set(m.session.get("key_order") or ()) if own else set()
    has_links = len(g.src) > 0 or g.n_tl > 0
    doc: dict[str, Any] = {}
    for key in order:
        if key == "version":
            doc[key] = version
        elif key == pos_key:
            if key in orig or listed.any():
                doc[key] = _positions_v2(g, listed, m) if version == "v2" else _positions_v1(g, listed, m)
        elif key == "tracks" and version == "v2":
            if has_links or "tracks" in orig:
                doc[key] = _tracks_v2(g, t, m, trailing_null)
        elif key == "links" and version == "v1":
            if has_links or m.position or "links" in orig:
                doc[key] = _links_v1(g, t, m, listed, node_index)
        elif key == "other_data":
            if m.other_data or key in orig:
                doc[key] = m.other_data
        elif key == "image_resolution":
            res = _resolution(t, m)
            if res is not None:
                doc[key] = res
        elif key in m.session:
            doc[key] = m.session[key]
        elif not own:
            default = _default(key, t)
            if default is not None:
                doc[key] = default
    if "image_resolution" not in doc and _resolution(t, m) is not None:
        doc["image_resolution"] = _resolution(t, m)
    if "other_data" not in doc and m.other_data:
        doc["other_data"] = m.other_data
    tmp = path.with_name(path.name + ".part")
    arrays = [(pos_key,), ("tracks",)] if version == "v2" else [("links", "nodes"), ("links", "links")]
    try:
        oj.write_file(tmp, doc, arrays)
        tmp.replace(path)
    except (TypeError, ValueError) as e:  # pragma: no cover - values were checked above
        tmp.unlink(missing_ok=True)
        raise WriteError(f"cannot write as JSON: {e}", path=path) from e
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise WriteError(f"cannot write: {e.strerror or e}", path=path) from e
    return [path]


def _default(key: str, t: TrackTables) -> Any:
    """What OrganoidTracker writes for a session that did not come from an AUT file."""
    if key == "name":
        return t.session.name or None
    if key == "name_is_automatic":
        return False if t.session.name else None
    if key in ("image_offsets", "image_channel_descriptions"):
        return []
    if key == "color":
        return [0.0, 0.0, 0.0]
    if key == "image_timings":
        return _timings(t)
    return None


def _timings(t: TrackTables) -> dict | None:
    """image_timings for frame times that are not evenly spaced (cumulative minutes)."""
    fr, tm = t.frames.get("frame"), t.frames.get("time")
    tf = _TO_MIN.get((t.session.time_unit or "").strip().lower())
    if fr is None or tm is None or tf is None or len(fr) < 2 or not np.all(np.diff(fr) == 1):
        return None
    mins = (np.asarray(tm, np.float64) - float(tm[0])) * tf
    if not np.isfinite(mins).all():
        return None
    steps = np.diff(mins)
    if np.allclose(steps, steps[0]):
        return None
    return {"min_time_point": int(fr[0]), "timings_m": mins.tolist()}


def _column_blocks(t: TrackTables, m: _Meta) -> None:
    """Position columns AUT has no field for become position metadata of the same name."""
    taken = {b.key for b in m.position}
    lost = []
    n = t.n_positions
    for col in ("quality", "radius", "native_id", "origin"):
        v = t.positions.get(col)
        if v is None:
            continue
        if col == "origin":
            keep = v != 0
            vals = np.array([ORIGINS[int(o)] for o in v[keep]], dtype=object)
        elif col == "native_id":
            keep = np.ones(n, bool)
            vals = v.astype(np.int64)
        else:
            keep = np.isfinite(v)
            vals = v[keep].astype(np.float64)
        if not keep.any():
            continue
        if col in taken:
            lost.append(f"positions.{col} ({int(keep.sum())} values; the name is taken by metadata)")
            continue
        m.position.append(MetaBlock("position", col, vals, np.flatnonzero(keep)))
    if lost:
        _warn("AUT cannot hold these columns, not written: " + ", ".join(lost))
