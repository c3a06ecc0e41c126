"""TrackTables: the in-memory, columnar, normalized form of one tracking session.

Every format module reads a file into a :class:`TrackTables` and writes one back; the store moves
them in and out of the database in bulk. Nothing here touches a database or a file.

The model (one session)::

    frames     frame, time                       every time point of the session
    positions  frame, x, y, z, track_id, origin, native_id, quality, radius
    tracks     track_id, name, identity, lineage_id, visible, native_id
    links      source_id -> target_id            (position indices; a frame gap > 1 is a gap)
    metadata   MetaBlock(scope, key, owners, values): typed values on any entity

Conventions:

* ``position_id`` is the row index into ``positions`` (dense 0..n-1); ``track_id`` is the row
  index into ``tracks``. Links refer to positions by index.
* Missing floats are NaN (``z`` is all-NaN for 2D data; the store writes NULL).
  ``positions.track_id`` and ``tracks.lineage_id`` use -1 for "none".
* ``positions.origin`` is a small int code into :data:`ORIGINS`.
* Optional columns may be absent from the dict (then they are all-missing).
* Metadata keys a format needs only to write its own files back are namespaced
  ``"<format>.<key>"`` (e.g. ``"idtrackerai.attributes_json"``); user-facing features use the
  source's own names (``"MEAN_INTENSITY_CH1"``, ``"intensity"``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ValidationError

__all__ = [
    "ORIGINS",
    "ORIGIN_CODE",
    "SCOPES",
    "SessionInfo",
    "MetaBlock",
    "TrackTables",
    "derive_tracks",
    "fill_gaps",
    "compare_tables",
]

#: Where a position came from. The code stored in ``positions["origin"]`` is the index here.
ORIGINS: tuple[str, ...] = ("observed", "gap_closed", "validated", "interpolated")
ORIGIN_CODE = {name: i for i, name in enumerate(ORIGINS)}

#: Entity kinds a metadata value can belong to (owner id meaning in brackets).
SCOPES = (
    "session",  # the session (no owner)
    "frame",  # a frame (frame number)
    "position",  # a position (position index)
    "link",  # a link (link index)
    "track",  # a track (track index)
    "lineage",  # a lineage (lineage id)
    "tag",  # a user tag given at ingest (no owner)
)

POSITION_COLUMNS: dict[str, type] = {
    "frame": np.int64,
    "x": np.float64,
    "y": np.float64,
    "z": np.float64,
    "track_id": np.int64,
    "origin": np.int8,
    "native_id": np.int64,
    "quality": np.float64,
    "radius": np.float64,
}
#: Columns every positions dict must have; the others default to missing.
POSITION_REQUIRED = ("frame", "x", "y")
POSITION_DEFAULTS: dict[str, Any] = {
    "z": np.nan,
    "track_id": -1,
    "origin": 0,
    "quality": np.nan,
    "radius": np.nan,
}
TRACK_COLUMNS = ("name", "identity", "lineage_id", "visible", "native_id")


@dataclass
class SessionInfo:
    """Session-level facts that have a column in ``sessions``.

    Attributes:
        name: Human name (folder or file stem).
        source_format: Registry name of the format read (``"idtrackerai"``).
        format_version: Version string of the source tool/format, if known.
        source_path: Where it was read from (absolute path string).
        space_unit: Unit of x/y/z as stored (``"pixel"``, ``"micrometre"``, ...).
        time_unit: Unit of ``frames.time`` (``"second"``, ``"minute"``, ``"frame"``).
        pixel_size: Physical size of one pixel/voxel along (x, y, z) in ``physical_unit``.
        physical_unit: Unit of ``pixel_size`` (e.g. ``"micrometre"``).
        frame_interval: Time between consecutive frames, in ``time_unit``.
        image_size: Image (width, height, depth) in pixels, where known.
        source_files: Files the reader read (hashed by ingest to skip re-imports; not stored).
    """

    name: str = ""
    source_format: str = ""
    format_version: str | None = None
    source_path: str | None = None
    space_unit: str | None = None
    time_unit: str | None = None
    pixel_size: tuple[float | None, float | None, float | None] = (None, None, None)
    physical_unit: str | None = None
    frame_interval: float | None = None
    image_size: tuple[int | None, int | None, int | None] = (None, None, None)
    #: Files the reader actually read; ingest hashes them for idempotency (not stored).
    source_files: tuple[str, ...] = ()


@dataclass
class MetaBlock:
    """One metadata key for many owners of one scope, as columns.

    Attributes:
        scope: One of :data:`SCOPES` (or a format-specific scope name).
        key: The key, e.g. ``"MEAN_INTENSITY_CH1"``.
        values: A numpy array of the values. float/int/bool arrays mean Python float/int/bool
            values; an object array may hold anything :mod:`trackstore.values` can store.
        owners: Owner ids (position index, frame number, ...), same length as ``values``;
            ``None`` for the session and tag scopes (then ``values`` has length 1).

    A block with no values has no rows in the store, so it does not come back from it: a
    format that must remember a declared-but-empty key keeps that in its own session metadata.
    """

    scope: str
    key: str
    values: np.ndarray
    owners: np.ndarray | None = None

    def __post_init__(self):
        if not isinstance(self.values, np.ndarray):
            vals = np.empty(len(self.values), dtype=object)
            for i, v in enumerate(self.values):
                vals[i] = v
            self.values = vals
        if self.owners is not None:
            self.owners = np.asarray(self.owners, dtype=np.int64)
            if len(self.owners) != len(self.values):
                raise ValueError(f"metadata {self.scope}.{self.key}: owners and values differ in length")

    @classmethod
    def scalar(cls, scope: str, key: str, value: Any) -> MetaBlock:
        """A block holding one value (session or tag scope)."""
        vals = np.empty(1, dtype=object)
        vals[0] = value
        return cls(scope, key, vals, None)

    def __len__(self) -> int:
        return len(self.values)


def _empty_positions() -> dict[str, np.ndarray]:
    return {k: np.empty(0, dtype=POSITION_COLUMNS[k]) for k in POSITION_REQUIRED}


@dataclass
class TrackTables:
    """One session, columnar. See the module docstring for the conventions.

    Example:
        >>> t = TrackTables.from_columns(frame=[0, 1], x=[1.0, 2.0], y=[0.0, 0.0], links=([0], [1]))
        >>> t.n_positions, t.n_links
        (2, 1)
    """

    session: SessionInfo = field(default_factory=SessionInfo)
    frames: dict[str, np.ndarray] = field(default_factory=dict)
    positions: dict[str, np.ndarray] = field(default_factory=_empty_positions)
    tracks: dict[str, np.ndarray] = field(default_factory=dict)
    links: dict[str, np.ndarray] = field(
        default_factory=lambda: {"source_id": np.empty(0, np.int64), "target_id": np.empty(0, np.int64)}
    )
    metadata: list[MetaBlock] = field(default_factory=list)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_columns(cls, *, frame, x, y, z=None, links=None, session: SessionInfo | None = None, **cols):
        """Build tables from plain sequences (handy in tests and small readers)."""
        pos = {"frame": np.asarray(frame, np.int64), "x": np.asarray(x, np.float64), "y": np.asarray(y, np.float64)}
        if z is not None:
            pos["z"] = np.asarray(z, np.float64)
        for k, v in cols.items():
            pos[k] = np.asarray(v, POSITION_COLUMNS[k])
        src, dst = links if links is not None else ([], [])
        t = cls(session=session or SessionInfo(), positions=pos)
        t.links = {"source_id": np.asarray(src, np.int64), "target_id": np.asarray(dst, np.int64)}
        return t

    # ------------------------------------------------------------------ sizes
    @property
    def n_positions(self) -> int:
        return len(self.positions["frame"])

    @property
    def n_links(self) -> int:
        return len(self.links["source_id"])

    @property
    def n_tracks(self) -> int:
        return len(self.tracks.get("lineage_id", self.tracks.get("name", ())))

    @property
    def is_3d(self) -> bool:
        z = self.positions.get("z")
        return z is not None and bool(np.isfinite(z).any())

    # ------------------------------------------------------------------ column access
    def pos(self, name: str) -> np.ndarray:
        """A positions column, filled with its default when absent."""
        col = self.positions.get(name)
        if col is not None:
            return col
        if name == "native_id":
            raise KeyError("positions have no native_id")
        return np.full(self.n_positions, POSITION_DEFAULTS[name], dtype=POSITION_COLUMNS[name])

    def track_col(self, name: str) -> np.ndarray:
        """A tracks column, filled with its default when absent."""
        col = self.tracks.get(name)
        if col is not None:
            return col
        n = self.n_tracks
        if name == "lineage_id":
            return np.full(n, -1, np.int64)
        if name == "visible":
            return np.ones(n, dtype=bool)
        return np.full(n, None, dtype=object)

    def frame_numbers(self) -> np.ndarray:
        """Every frame of the session: ``frames["frame"]`` or, if absent, the frames with positions."""
        if "frame" in self.frames:
            return self.frames["frame"]
        return np.unique(self.positions["frame"])

    # ------------------------------------------------------------------ metadata
    def add_meta(self, scope: str, key: str, values, owners=None) -> MetaBlock:
        """Append a metadata block (order of calls = order kept on export)."""
        if owners is None and scope in ("session", "tag"):
            block = MetaBlock.scalar(scope, key, values)
        else:
            block = MetaBlock(scope, key, values if isinstance(values, np.ndarray) else values, owners)
        self.metadata.append(block)
        return block

    def meta(self, scope: str, key: str) -> MetaBlock | None:
        """The first block of that scope and key, or None."""
        for b in self.metadata:
            if b.scope == scope and b.key == key:
                return b
        return None

    def session_meta(self, prefix: str | None = None) -> dict[str, Any]:
        """Session-scope values in order, as a dict (optionally only keys starting with prefix)."""
        out: dict[str, Any] = {}
        for b in self.metadata:
            if b.scope == "session" and (prefix is None or b.key.startswith(prefix)):
                out[b.key] = b.values[0]
        return out

    # ------------------------------------------------------------------ checks
    def validate(self, path=None) -> None:
        """Check the model's hard rules; raise one ValidationError listing every problem."""
        problems: list[str] = []
        n = None
        for k, v in self.positions.items():
            if k not in POSITION_COLUMNS:
                problems.append(f"positions: unknown column {k!r}")
                continue
            if n is None:
                n = len(v)
            elif len(v) != n:
                problems.append(f"positions.{k}: length {len(v)} != {n}")
        for k in POSITION_REQUIRED:
            if k not in self.positions:
                problems.append(f"positions: missing column {k!r}")
        n = self.n_positions if not problems else 0
        nt = self.n_tracks
        if n and "track_id" in self.positions:
            tid = self.positions["track_id"]
            bad = (tid < -1) | (tid >= nt)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                problems.append(f"position {i}: track_id {int(tid[i])} not in 0..{nt - 1} ({int(bad.sum())} such)")
        for k, v in self.tracks.items():
            if len(v) != nt:
                problems.append(f"tracks.{k}: length {len(v)} != {nt}")
        src, dst = self.links["source_id"], self.links["target_id"]
        if len(src) != len(dst):
            problems.append("links: source_id and target_id differ in length")
        elif len(src):
            bad = (src < 0) | (src >= n) | (dst < 0) | (dst >= n)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                problems.append(f"link {i}: {int(src[i])} -> {int(dst[i])} refers to a missing position")
            else:
                f = self.positions["frame"]
                back = f[dst] <= f[src]
                if back.any():
                    i = int(np.flatnonzero(back)[0])
                    problems.append(
                        f"link {i}: goes from frame {int(f[src[i]])} to frame {int(f[dst[i]])} "
                        f"(links must go forward in time; {int(back.sum())} such)"
                    )
        if problems:
            raise ValidationError(problems, path=path)

    def copy(self) -> TrackTables:
        """A deep copy (arrays copied)."""
        return TrackTables(
            session=dataclasses.replace(self.session),
            frames={k: v.copy() for k, v in self.frames.items()},
            positions={k: v.copy() for k, v in self.positions.items()},
            tracks={k: v.copy() for k, v in self.tracks.items()},
            links={k: v.copy() for k, v in self.links.items()},
            metadata=[MetaBlock(b.scope, b.key, b.values.copy(), None if b.owners is None else b.owners.copy())
                      for b in self.metadata],
        )


# ---------------------------------------------------------------------- graph helpers
def derive_tracks(n_positions: int, source: np.ndarray, target: np.ndarray, frame: np.ndarray | None = None):
    """Split a position graph into tracklets (unbranched chains) and lineages (families).

    A link ``s -> t`` continues a tracklet when ``s`` has exactly one outgoing and ``t``
    exactly one incoming link; every other link (division, merge) starts new tracklets.
    Lineages are the weakly connected components. Vectorized (pointer jumping), no per-node loop.

    Args:
        n_positions: Number of positions.
        source, target: Link endpoints (position indices).
        frame: Optional frames, used to number tracklets by (first frame, position index).

    Returns:
        ``(track_of_position, lineage_of_track)``: int64 arrays; positions in no link each form
        their own one-position tracklet (and lineage), so every position has a track.
    """
    source = np.asarray(source, np.int64)
    target = np.asarray(target, np.int64)
    outdeg = np.bincount(source, minlength=n_positions)
    indeg = np.bincount(target, minlength=n_positions)
    cont = (outdeg[source] == 1) & (indeg[target] == 1)
    # head[i] = the position that starts i's tracklet: follow "previous" pointers by doubling
    prev = np.arange(n_positions, dtype=np.int64)
    prev[target[cont]] = source[cont]
    head = prev.copy()
    while True:
        nxt = head[head]
        if np.array_equal(nxt, head):
            break
        head = nxt
    heads = np.flatnonzero(head == np.arange(n_positions))
    if frame is not None and len(heads):
        order = np.lexsort((heads, np.asarray(frame)[heads]))
        heads = heads[order]
    track_index = np.full(n_positions, -1, np.int64)
    track_index[heads] = np.arange(len(heads), dtype=np.int64)
    track_of_position = track_index[head]
    # lineages: connected components of the tracklet graph (min-label propagation with jumping)
    nt = len(heads)
    label = np.arange(nt, dtype=np.int64)
    ts, tt = track_of_position[source[~cont]], track_of_position[target[~cont]]
    if len(ts):
        while True:
            old = label.copy()
            m = np.minimum(label[ts], label[tt])
            np.minimum.at(label, ts, m)
            np.minimum.at(label, tt, m)
            label = label[label]
            if np.array_equal(label, old):
                break
    # renumber lineages densely in order of first appearance
    _, lineage_of_track = np.unique(label, return_inverse=True)
    return track_of_position, lineage_of_track.astype(np.int64)


def fill_gaps(tables: TrackTables, max_gap: int | None = None) -> TrackTables:
    """A copy where every link that skips frames is replaced by interpolated positions and links.

    Positions are placed linearly in frame number between the link's ends (interior only, like
    the ``trajectories_without_gaps`` view), take the track of the link's source when source and
    target share a track (else the target's), and get origin ``interpolated``. Links skipping
    more than ``max_gap`` missing frames are left as they are. Vectorized; metadata is kept.
    """
    t = tables.copy()
    src, dst = t.links["source_id"], t.links["target_id"]
    f = t.positions["frame"]
    gap = f[dst] - f[src]
    sel = gap > 1
    if max_gap is not None:
        sel &= (gap - 1) <= max_gap
    if not sel.any():
        return t
    s, d, g = src[sel], dst[sel], gap[sel]
    n_new = g - 1
    rep = np.repeat(np.arange(len(s)), n_new)
    k = np.arange(int(n_new.sum())) - np.repeat(np.cumsum(n_new) - n_new, n_new) + 1  # 1..g-1 per link
    frac = k / g[rep]
    n0 = t.n_positions
    new: dict[str, np.ndarray] = {}
    for col in t.positions:
        base = t.positions[col]
        if col == "frame":
            new[col] = f[s][rep] + k
        elif col in ("x", "y", "z"):
            new[col] = base[s][rep] + (base[d][rep] - base[s][rep]) * frac
        elif col == "track_id":
            same = base[s] == base[d]
            new[col] = np.where(same, base[s], base[d])[rep]
        elif col == "origin":
            new[col] = np.full(len(rep), ORIGIN_CODE["interpolated"], np.int8)
        elif col == "native_id":
            new[col] = np.full(len(rep), -1, np.int64)
        else:
            new[col] = np.full(len(rep), np.nan, dtype=base.dtype) if base.dtype.kind == "f" \
                else np.zeros(len(rep), dtype=base.dtype)
    if "origin" not in t.positions:
        t.positions["origin"] = np.zeros(n0, np.int8)
        new["origin"] = np.full(len(rep), ORIGIN_CODE["interpolated"], np.int8)
    for col in t.positions:
        t.positions[col] = np.concatenate([t.positions[col], new[col]])
    ids = n0 + np.arange(len(rep))
    # chain: source -> first new -> ... -> last new -> target
    first = np.cumsum(n_new) - n_new
    prev = ids.copy()
    prev[1:] = ids[:-1]
    prev[first] = s
    nxt_src = ids[np.cumsum(n_new) - 1]
    keep = ~sel
    t.links = {
        "source_id": np.concatenate([src[keep], prev, nxt_src]),
        "target_id": np.concatenate([dst[keep], ids, d]),
    }
    # link metadata follows the kept links only; the replaced gap links' metadata is dropped
    kept_index = np.full(len(src), -1, np.int64)
    kept_index[keep] = np.arange(int(keep.sum()))
    for b in t.metadata:
        if b.scope == "link" and b.owners is not None:
            m = keep[b.owners]
            b.values, b.owners = b.values[m], kept_index[b.owners[m]]
    return t


def compare_tables(a: TrackTables, b: TrackTables, *, check_ids: bool = True,
                   ignore_meta: Iterable[str] = ()) -> list[str]:
    """List the differences between two sessions (empty list = equal), for tests and checks.

    Floats are compared bit-exactly (NaN equal to NaN). Positions are compared in order when
    ``check_ids``; otherwise after sorting by (frame, x, y, z).
    """
    diffs: list[str] = []
    pa_, pb = a.positions, b.positions
    if a.n_positions != b.n_positions:
        return [f"positions: {a.n_positions} vs {b.n_positions}"]
    order_a = np.arange(a.n_positions)
    order_b = np.arange(b.n_positions)
    if not check_ids:
        order_a = np.lexsort((a.pos("z"), pa_["y"], pa_["x"], pa_["frame"]))
        order_b = np.lexsort((b.pos("z"), pb["y"], pb["x"], pb["frame"]))
    for col in ("frame", "x", "y", "z", "origin", "quality", "radius"):
        ca, cb = a.pos(col)[order_a], b.pos(col)[order_b]
        if not _same(ca, cb):
            diffs.append(f"positions.{col} differ")
    if a.n_positions and ("native_id" in pa_) != ("native_id" in pb):
        diffs.append("positions.native_id present in one only")
    elif a.n_positions and "native_id" in pa_ and not _same(pa_["native_id"][order_a], pb["native_id"][order_b]):
        diffs.append("positions.native_id differ")
    inv_a = np.empty_like(order_a)
    inv_a[order_a] = np.arange(len(order_a))
    inv_b = np.empty_like(order_b)
    inv_b[order_b] = np.arange(len(order_b))
    la = sorted(zip(inv_a[a.links["source_id"]].tolist(), inv_a[a.links["target_id"]].tolist()))
    lb = sorted(zip(inv_b[b.links["source_id"]].tolist(), inv_b[b.links["target_id"]].tolist()))
    if la != lb:
        diffs.append(f"links differ ({len(la)} vs {len(lb)})")
    if check_ids:
        if not _same(a.pos("track_id"), b.pos("track_id")):
            diffs.append("positions.track_id differ")
        if a.n_tracks != b.n_tracks:
            diffs.append(f"tracks: {a.n_tracks} vs {b.n_tracks}")
        else:
            for col in TRACK_COLUMNS:
                if not _same(a.track_col(col), b.track_col(col)):
                    diffs.append(f"tracks.{col} differ")
    ignore = set(ignore_meta)
    ma = [m for m in a.metadata if m.key not in ignore and len(m)]  # empty blocks are not stored
    mb = [m for m in b.metadata if m.key not in ignore and len(m)]
    if [(m.scope, m.key) for m in ma] != [(m.scope, m.key) for m in mb]:
        ka = {(m.scope, m.key) for m in ma}
        kb = {(m.scope, m.key) for m in mb}
        diffs.append(f"metadata keys differ: only first {sorted(ka - kb)[:5]}, only second {sorted(kb - ka)[:5]}"
                     if ka != kb else "metadata key order differs")
    else:
        for x, y in zip(ma, mb):
            xo, xv = _by_owner(x)
            yo, yv = _by_owner(y)
            if not _same_owners(xo, yo) or not _same_values(xv, yv):
                diffs.append(f"metadata {x.scope}.{x.key} differ")
    return diffs


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind == "f" and b.dtype.kind == "f":
        return np.array_equal(a.astype(np.float64).view(np.int64), b.astype(np.float64).view(np.int64)) or \
            bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))) and np.array_equal(np.signbit(a), np.signbit(b)))
    if a.dtype.kind == "O" or b.dtype.kind == "O":
        return all(_same_value(x, y) for x, y in zip(a.tolist(), b.tolist()))
    return bool(np.array_equal(a, b))


def _same_owners(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(np.array_equal(a, b))


def _by_owner(b: MetaBlock):
    if b.owners is None:
        return None, b.values
    order = np.argsort(b.owners, kind="stable")
    return b.owners[order], b.values[order]


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """Same Python values: a float64 array equals an object array of the same Python floats."""
    if len(a) != len(b):
        return False
    if a.dtype.kind != "O" and b.dtype.kind != "O" and a.dtype.kind == b.dtype.kind:
        return _same(a, b)
    xs = a.tolist() if a.dtype.kind != "O" else list(a)
    ys = b.tolist() if b.dtype.kind != "O" else list(b)
    return all(_same_value(x, y) for x, y in zip(xs, ys))


def _same_value(x, y) -> bool:
    """Exact equality including type (int vs float vs numpy scalar) and NaN == NaN."""
    if type(x) is not type(y):
        return False
    if isinstance(x, np.ndarray):
        return x.dtype == y.dtype and x.shape == y.shape and (
            x.dtype.kind == "O" and all(_same_value(p, q) for p, q in zip(x.ravel(), y.ravel()))
            or x.dtype.kind != "O" and x.tobytes() == y.tobytes())
    if isinstance(x, (float, np.floating)):
        return (np.isnan(x) and np.isnan(y)) or (x == y and np.signbit(x) == np.signbit(y))
    if isinstance(x, np.generic):
        return x.dtype == y.dtype and x.tobytes() == y.tobytes()
    if isinstance(x, (list, tuple)):
        return len(x) == len(y) and all(_same_value(p, q) for p, q in zip(x, y))
    if isinstance(x, dict):
        return list(x.keys()) == list(y.keys()) and all(_same_value(x[k], y[k]) for k in x)
    return x == y
