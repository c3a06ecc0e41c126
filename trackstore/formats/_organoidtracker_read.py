"""Reading OrganoidTracker ``.aut`` files (v1 and v2) into TrackTables.

See ``trackstore/formats/organoidtracker.py`` for what lands where. The work is columnar: each run
of time points, tracks, nodes or links (see ``_organoidtracker_json``) becomes numpy columns before
the next is parsed; positions are identified by ``(time point, x, y, z)`` through a 64-bit hash of
the exact float bits, checked against the coordinates themselves.
"""

from __future__ import annotations

import re
import warnings
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from .._forked import Forked
from ..errors import ParseError, TrackstoreWarning
from ..model import MetaBlock, SessionInfo, TrackTables, derive_tracks
from . import _organoidtracker_json as oj

NS = "organoidtracker."
#: Keys read into tables (per layout); every other top-level key is kept verbatim.
BULK_KEYS = {"v2": ("version", "positions", "tracks", "other_data"),
             "v1": ("version", "positions", "links", "other_data")}
#: OrganoidTracker matches a parent reference to a position when every axis is within this (px).
TOLERANCE = 0.005
#: A v2 file's tracks (a v1 file's links) are read in a forked child (see :mod:`trackstore._forked`)
#: from this many bytes of them on: below, the fork costs about what it saves (a few ms).
FORK_BYTES = 4 << 20


_XYZT = itemgetter("x", "y", "z", "_time_point_number")


# ---------------------------------------------------------------------------- typed columns
_NONE = type(None)


class _Column:
    """One metadata key: owner ids and typed values, converted to numpy one run at a time.

    ``add`` collects segments of a run; ``flush`` turns them into numpy before the next run is
    parsed, so no Python float outlives its run.
    """

    __slots__ = ("null_is_absent", "pending", "owners", "parts")

    def __init__(self, null_is_absent: bool):
        self.null_is_absent = null_is_absent  # v2 column lists: null means "no value"
        self.pending: list[tuple[int, list]] = []
        self.owners: list[np.ndarray] = []
        self.parts: list[np.ndarray] = []

    def add(self, offset: int, vals: list) -> None:
        """Values for owners offset, offset + 1, ... (None where there is none)."""
        self.pending.append((offset, vals))

    def add_at(self, owners: list[int], vals: list) -> None:
        """Values for the given owners (every one a value, None meaning a JSON null)."""
        self.pending.append((np.asarray(owners, dtype=np.int64), vals))

    def flush(self) -> None:
        if not self.pending:
            return
        if len(self.pending) == 1:
            where, vals = self.pending[0]
        else:
            vals = list(chain.from_iterable(seg for _, seg in self.pending))
            where = None
        owners = (np.arange(where, where + len(vals), dtype=np.int64) if isinstance(where, int)
                  else where if where is not None
                  else _owners(self.pending))
        self.pending = []
        n = len(vals)
        types = set(map(type, vals))
        if types <= {float, _NONE} and (self.null_is_absent or _NONE not in types):
            arr = np.array(vals, dtype=np.float64)
            nan = np.isnan(arr)
            if _NONE not in types and not nan.any():  # the usual column: numbers only, all kept
                self.owners.append(owners)
                self.parts.append(arr)
                return
            if int(nan.sum()) == vals.count(None):  # every NaN is a null, none a NaN value
                keep = ~nan
                self.owners.append(owners[keep])
                self.parts.append(arr[keep])
                return
        obj = np.fromiter(vals, dtype=object, count=n)
        if self.null_is_absent and _NONE in types:
            keep = np.not_equal(obj, None)
            owners, obj = owners[keep], obj[keep]
        self.owners.append(owners)
        self.parts.append(typed_values(obj))

    def dump(self) -> tuple[bool, list[np.ndarray], list[np.ndarray]]:
        """The column as plain values (to cross a process boundary); see :meth:`restore`."""
        self.flush()
        return self.null_is_absent, self.owners, self.parts

    @classmethod
    def restore(cls, null_is_absent: bool, owners: list[np.ndarray], parts: list[np.ndarray]) -> _Column:
        """The column :meth:`dump` gave. Arrays that are views (of a forked child's mapped result)
        are copied: they would otherwise keep the whole result in memory until the metadata is
        stored; the arrays of a read done here are their own and are kept as they are."""
        def own(arrays: list[np.ndarray]) -> list[np.ndarray]:
            return [a if a.flags.owndata else np.array(a) for a in arrays]

        col = cls(null_is_absent)
        col.owners, col.parts = own(owners), own(parts)
        return col

    def block(self, scope: str, key: str, owner_of: np.ndarray | None = None) -> MetaBlock | None:
        """The MetaBlock (None if no value); ``owner_of`` maps the ids used so far to owner ids."""
        self.flush()
        if not self.parts or not sum(map(len, self.parts)):
            return None
        owners = np.concatenate(self.owners)
        kinds = {p.dtype.kind for p in self.parts if len(p)}
        if len(kinds) == 1 and kinds != {"O"}:
            values = np.concatenate([p for p in self.parts if len(p)])
        else:  # mixed types across runs: Python values, each keeping its type
            values = np.concatenate([p.astype(object) for p in self.parts if len(p)])
        if owner_of is not None:
            owners = owner_of[owners]
            if len(owners) and np.bincount(owners).max() > 1:
                # two entries for one owner (a duplicated node): the later one wins, as in OrganoidTracker
                _, first = np.unique(owners[::-1], return_index=True)
                pick = np.sort(len(owners) - 1 - first)
                owners, values = owners[pick], values[pick]
        return MetaBlock(scope, key, values, owners.astype(np.int64))


def _owners(pending: list[tuple[int | np.ndarray, list]]) -> np.ndarray:
    """The owner of each value of the pending segments, in order: ``offset, offset + 1, ...`` for a
    segment given by its first owner, the listed owners for the others."""
    if not all(isinstance(w, int) for w, _ in pending):
        return np.concatenate([np.arange(w, w + len(seg), dtype=np.int64) if isinstance(w, int) else w
                               for w, seg in pending])
    lens = np.fromiter(map(len, map(itemgetter(1), pending)), np.int64, len(pending))
    starts = np.fromiter(map(itemgetter(0), pending), np.int64, len(pending))
    # value k of segment s is owner starts[s] + (k - first[s]): one repeat and one arange in all
    return np.repeat(starts - (np.cumsum(lens) - lens), lens) + np.arange(int(lens.sum()), dtype=np.int64)


def typed_values(vals: np.ndarray) -> np.ndarray:
    """An object array of JSON values as the tightest array that keeps every value's type."""
    if not len(vals):
        return np.empty(0, dtype=np.float64)
    types = set(map(type, vals))
    if types == {float}:
        return vals.astype(np.float64)
    if types == {bool}:
        return vals.astype(bool)
    if types == {int}:
        try:
            return np.array(vals.tolist(), dtype=np.int64)
        except OverflowError:
            return vals
    return vals


def _flush(cols: dict[str, _Column]) -> None:
    for c in cols.values():
        c.flush()


# ---------------------------------------------------------------------------- coordinates
def _xyz(coords: list, where: str, path) -> np.ndarray:
    """``[[x, y, z], ...]`` as an (n, 3) float64 array (null -> NaN)."""
    n = len(coords)
    if not n:
        return np.empty((0, 3), dtype=np.float64)
    try:
        if set(map(len, coords)) == {3}:
            return np.fromiter(chain.from_iterable(coords), dtype=np.float64, count=3 * n).reshape(n, 3)
    except (TypeError, ValueError):
        pass
    try:
        a = np.array(coords, dtype=np.float64)  # slower; turns null into NaN
    except (ValueError, TypeError):
        a = None
    if a is None or a.ndim != 2 or a.shape[1] != 3:
        for i, c in enumerate(coords):
            if not (isinstance(c, list) and len(c) == 3):
                raise ParseError(f"{where}: coordinate {i} is {str(c)[:60]}, not [x, y, z]", path=path)
        raise ParseError(f"{where}: coordinates are not numbers", path=path)
    return a


def _bits(a: np.ndarray) -> np.ndarray:
    """Float bits as uint64, with -0.0 as 0.0 and every NaN alike (so equal values have equal bits)."""
    b = np.where(a == 0.0, 0.0, a).view(np.uint64)  # a new array: set the NaN bits in place
    b[np.isnan(a)] = np.uint64(0x7FF8000000000000)
    return b


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise equality of floats as keys: -0.0 equals 0.0 and NaN equals NaN (as :func:`_bits`)."""
    eq = a == b
    both_nan = np.isnan(a)
    both_nan &= np.isnan(b)
    eq |= both_nan
    return eq


class _Keys:
    """Exact identity of positions, (frame, x, y, z): views of the caller's columns, not copies.

    The float bits are only built to hash (:func:`_bits`, a column at a time); equality compares
    the values themselves, with the same meaning.
    """

    def __init__(self, frame: np.ndarray, xyz):
        self.frame = np.asarray(frame, dtype=np.int64)
        self.xyz = [xyz[:, j] for j in range(3)] if isinstance(xyz, np.ndarray) else list(xyz)

    def __len__(self) -> int:
        return len(self.frame)

    def hash(self) -> np.ndarray:
        h = np.full(len(self), 0x9E3779B97F4A7C15, dtype=np.uint64)
        for c in [self.frame.view(np.uint64), *self.xyz]:
            h ^= c if c.dtype == np.uint64 else _bits(c)
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(31)
        return h

    def equal(self, i: np.ndarray, other: _Keys, j: np.ndarray) -> np.ndarray:
        out = self.frame[i] == other.frame[j]
        for a, b in zip(self.xyz, other.xyz):
            out &= _same(a[i], b[j])
        return out

    def take(self, i: np.ndarray) -> _Keys:
        return _Keys(self.frame[i], [c[i] for c in self.xyz])


class _Index:
    """Exact lookup of (frame, x, y, z) keys; the first of duplicate keys wins."""

    def __init__(self, keys: _Keys):
        self.keys = keys
        h = keys.hash()
        order = np.argsort(h)
        hs = h[order]
        if (hs[1:] == hs[:-1]).any():  # equal keys (or a collision): keep file order among them
            order = np.argsort(h, kind="stable")
            hs = h[order]
        self.order, self.hs = order, hs

    def find(self, q: _Keys, hashed: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Index of each query key, -1 where absent.

        ``hashed`` is ``(q.hash(), its argsort)`` when the caller has them (see :func:`_hashed`)."""
        n = len(self.hs)
        out = np.full(len(q), -1, dtype=np.int64)
        if not n or not len(q):
            return out
        hq, qo = hashed if hashed is not None else _hashed(q)
        ic = np.empty(len(q), dtype=np.int64)
        ic[qo] = np.searchsorted(self.hs, hq[qo])
        np.minimum(ic, n - 1, out=ic)
        cand = self.order[ic]
        same_h = self.hs[ic] == hq
        allq = np.arange(len(q))
        exact = same_h & self.keys.equal(cand, q, allq)
        out[exact] = cand[exact]
        for k in np.flatnonzero(same_h & ~exact):  # a hash collision: look along the run of equal hashes
            j = int(ic[k])
            while j < n and self.hs[j] == hq[k]:
                r = int(self.order[j])
                if self.keys.equal(np.array([r]), q, np.array([k]))[0]:
                    out[k] = r
                    break
                j += 1
        return out


def _hashed(q: _Keys) -> tuple[np.ndarray, np.ndarray]:
    """The query side of :meth:`_Index.find`: each key's hash, and the order that sorts them
    (sorted queries walk the table in order: far fewer cache misses)."""
    hq = q.hash()
    return hq, np.argsort(hq)


def _new_positions(miss: np.ndarray, keys: _Keys) -> tuple[np.ndarray, np.ndarray]:
    """Number the distinct keys among ``miss`` in order of first appearance.

    Returns ``(rank of each miss, index (into miss) of each new key's first occurrence)``.
    """
    sub = keys.take(miss)
    idx = _Index(sub)
    first = idx.find(sub)  # each miss -> its first equal miss
    firsts = np.flatnonzero(first == np.arange(len(miss)))
    rank = np.full(len(miss), -1, dtype=np.int64)
    rank[firsts] = np.arange(len(firsts))
    return rank[first], firsts


def _columns(parts: list[np.ndarray]) -> list[np.ndarray]:
    """Runs of (n, 3) coordinates as three contiguous columns x, y, z (the list is emptied)."""
    cols = [np.concatenate([a[:, j] for a in parts]) if parts else np.empty(0) for j in range(3)]
    parts.clear()
    return cols


def _fmt_xyz(xyz) -> str:
    return "[" + ", ".join(repr(float(v)) for v in xyz) + "]"


# ---------------------------------------------------------------------------- parsed data
class _Parsed:
    """What a v1 or v2 document holds, as columns, before positions are matched up."""

    def __init__(self) -> None:
        self.pos_xyz: list[np.ndarray] = []
        self.pos_meta: dict[str, _Column] = {}
        self.top: dict = {}
        self.version = "v2"
        self.pos_key = "positions"


def _int(v: Any, what: str, path) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            return int(v)
        raise ParseError(f"{what} is {v!r}, not a whole number", path=path)
    return v


def _reader(doc: oj.Document, key: tuple[str, ...], fn, path) -> Forked:
    """``fn(doc, path)``, which walks the array at ``key``, in a forked child when that array's runs
    hold :data:`FORK_BYTES` or more; else it runs here when its result is asked for."""
    runs = doc.runs.get(key, [])
    return Forked(fn, doc, path, fork=sum(e - s for s, e in runs) >= FORK_BYTES)


# ---------------------------------------------------------------------------- v2
def _consume_v2(doc: oj.Document, path, tolerance: float) -> TrackTables:
    # a big file's tracks are read by a forked child on the other core while this process reads
    # the positions (36 MB file: read 0.50 -> 0.36 s); elsewhere here, after the positions
    with _reader(doc, ("tracks",), _track_runs, path) as tracks:
        return _consume_v2_with(doc, path, tolerance, tracks)


def _track_runs(doc: oj.Document, path) -> dict[str, Any]:
    """The v2 ``tracks`` array as numpy columns and plain values (what crosses from a child).

    Every track position's time point and coordinates (``frame``, ``x``, ``y``, ``z``, in track
    order), each track's ``starts``/``lens``, its ``link_meta`` (a :meth:`_Column.dump` per key),
    the parent references and link metadata before it (``before``), ``lineage`` metadata,
    ``n_intra`` links inside tracks and the count of link metadata values ``dropped``.
    """
    starts: list[int] = []
    lens: list[int] = []
    link_meta: dict[str, _Column] = {}
    before: list[tuple[int, list, Any]] = []
    lineage: list[tuple[int, dict]] = []
    frames: list[np.ndarray] = []
    coords: list[np.ndarray] = []
    n_intra = ti = dropped = 0
    t_run = 0  # the first track of the run
    for run in doc.elements("tracks"):
        run_coords: list = []
        for tr in run:
            if not isinstance(tr, dict):
                raise ParseError(f"tracks[{ti}] is not an object", path=path)
            start = _int(tr.get("time_point_start"), f"tracks[{ti}].time_point_start", path)
            c = tr.get("coords_xyz_px")
            if not isinstance(c, list) or not c:
                raise ParseError(f"tracks[{ti}] (starting at time point {start}) has no coords_xyz_px", path=path)
            n = len(c)
            starts.append(start)
            lens.append(n)
            run_coords += c
            lm = tr.get("link_meta")
            if lm:
                if not isinstance(lm, dict):
                    raise ParseError(f"tracks[{ti}].link_meta is not an object", path=path)
                for k, vals in lm.items():
                    if not isinstance(vals, list):
                        raise ParseError(f"tracks[{ti}].link_meta {k!r} is not a list", path=path)
                    if len(vals) > n - 1:
                        dropped += sum(v is not None for v in vals[n - 1:])
                        vals = vals[:n - 1]
                    col = link_meta.get(k)
                    if col is None:
                        col = link_meta[k] = _Column(null_is_absent=True)
                    col.add(n_intra, vals)
            n_intra += n - 1
            cb = tr.get("coords_xyz_px_before")
            if cb:
                if not isinstance(cb, list):
                    raise ParseError(f"tracks[{ti}].coords_xyz_px_before is not a list", path=path)
                before.append((ti, cb, tr.get("link_meta_before")))
            lin = tr.get("lineage_meta")
            if lin:
                if not isinstance(lin, dict):
                    raise ParseError(f"tracks[{ti}].lineage_meta is not an object", path=path)
                lineage.append((ti, lin))
            ti += 1
        # the run's coordinates, and the time point of each
        coords.append(_xyz(run_coords, "tracks", path))
        del run_coords, run
        run_lens = np.asarray(lens[t_run:], dtype=np.int64)
        run_first = np.cumsum(run_lens) - run_lens
        tf = np.repeat(np.asarray(starts[t_run:], dtype=np.int64) - run_first, run_lens)
        tf += np.arange(len(tf))
        frames.append(tf)
        t_run = ti
        _flush(link_meta)
    x, y, z = _columns(coords)
    frame = np.concatenate(frames) if frames else np.empty(0, np.int64)
    # the query side of the match with the listed positions, done here while the caller reads them
    hashed = _hashed(_Keys(frame, [x, y, z]))
    return {"frame": frame, "x": x, "y": y, "z": z, "hash": hashed[0], "order": hashed[1],
            "starts": starts, "lens": lens, "n_intra": n_intra, "dropped": dropped, "before": before,
            "lineage": lineage, "link_meta": {k: c.dump() for k, c in link_meta.items()}}


def _consume_v2_with(doc: oj.Document, path, tolerance: float, tracks: Forked) -> TrackTables:
    """The v2 reading proper: the positions here, the tracks from ``tracks`` (see :func:`_track_runs`)."""
    p = _Parsed()
    p.top = doc.top
    p.version = "v2"
    offset = 0
    frames: list[int] = []
    counts: list[int] = []
    tp_index = 0
    for run in doc.elements("positions"):
        run_coords: list = []
        for tp in run:
            if not isinstance(tp, dict):
                raise ParseError(f"positions[{tp_index}] is not an object", path=path)
            t = _int(tp.get("time_point"), f"positions[{tp_index}].time_point", path)
            coords = tp.get("coords_xyz_px", [])
            if not isinstance(coords, list):
                raise ParseError(f"time point {t}: coords_xyz_px is not a list", path=path)
            n = len(coords)
            frames.append(t)
            counts.append(n)
            run_coords += coords
            pm = tp.get("position_meta")
            if pm:
                if not isinstance(pm, dict):
                    raise ParseError(f"time point {t}: position_meta is not an object", path=path)
                for k, vals in pm.items():
                    if not isinstance(vals, list) or len(vals) != n:
                        raise ParseError(f"time point {t}: position_meta {k!r} has "
                                         f"{len(vals) if isinstance(vals, list) else 'no list of'} values "
                                         f"for {n} positions", path=path)
                    col = p.pos_meta.get(k)
                    if col is None:
                        col = p.pos_meta[k] = _Column(null_is_absent=True)
                    col.add(offset, vals)
            offset += n
            tp_index += 1
        p.pos_xyz.append(_xyz(run_coords, "positions", path))
        del run_coords, run
        _flush(p.pos_meta)
    pf = np.repeat(np.asarray(frames, dtype=np.int64), counts)
    pcols = _columns(p.pos_xyz)
    del frames, counts
    n_list = len(pf)
    # the listed positions' index is built while the child reads the tracks
    listed = _Index(_Keys(pf, pcols))
    tr = tracks.result()
    doc.release()
    starts, lens = tr["starts"], tr["lens"]
    n_intra, before, lineage, dropped = tr["n_intra"], tr["before"], tr["lineage"], tr["dropped"]
    link_meta = {k: _Column.restore(*v) for k, v in tr["link_meta"].items()}
    # each track position is the listed position of the same key; those in none become new
    # positions (the same one where they repeat)
    tkeys = _Keys(tr["frame"], [tr["x"], tr["y"], tr["z"]])
    hashed = tr["hash"], tr["order"]
    del tr
    pidx = listed.find(tkeys, hashed)
    del hashed
    n_tp = len(pidx)
    lens_a = np.asarray(lens, dtype=np.int64)
    n_tracks = len(lens_a)
    first = np.cumsum(lens_a) - lens_a
    last = first + lens_a - 1
    frame, xyz = pf, pcols
    miss = np.flatnonzero(pidx < 0)
    if len(miss):
        mkeys = tkeys.take(miss)
        rank, firsts = _new_positions(np.arange(len(miss)), mkeys)
        pidx[miss] = n_list + rank
        extras = mkeys.take(firsts)
        frame = np.concatenate([pf, extras.frame])
        xyz = [np.concatenate([c, e]) for c, e in zip(pcols, extras.xyz)]
        del mkeys, rank, firsts
    else:
        extras = None
    del tkeys, miss
    n_pos = len(frame)
    used = np.bincount(pidx, minlength=n_pos) if len(pidx) else np.zeros(n_pos, np.int64)
    if (used > 1).any():
        q = int(np.flatnonzero(used > 1)[0])
        ks = np.flatnonzero(pidx == q)
        tt = np.searchsorted(first, ks, side="right") - 1
        raise ParseError(f"the position at time point {int(frame[q])} {_fmt_xyz([c[q] for c in xyz])} is in more "
                         f"than one place of the tracks (tracks[{int(tt[0])}] and tracks[{int(tt[-1])}])", path=path)
    del used
    track_of_pos = np.full(n_pos, -1, dtype=np.int64)
    track_of_pos[pidx] = np.repeat(np.arange(n_tracks, dtype=np.int64), lens_a)
    intra = np.ones(n_tp, dtype=bool)  # every track position but a track's last links to the next
    intra[last] = False
    src = [pidx[intra]]
    dst = [pidx[1:][intra[:-1]]]
    del intra

    # parent references: exact first, then within OrganoidTracker's tolerance; must be a track's last position
    lmb_cols: dict[str, _Column] = {}
    trailing = exact_len = 0
    if before:
        q_frame, q_xyz, q_track = [], [], []
        for ti_, cb, _ in before:
            for c in cb:
                if not (isinstance(c, list) and len(c) == 3):
                    raise ParseError(f"tracks[{ti_}].coords_xyz_px_before has {str(c)[:60]}, not [x, y, z]",
                                     path=path)
                q_frame.append(starts[ti_] - 1)
                q_xyz.append(c)
                q_track.append(ti_)
        qf = np.asarray(q_frame, dtype=np.int64)
        qx = _xyz(q_xyz, "coords_xyz_px_before", path)
        qkeys = _Keys(qf, qx)
        at = listed.find(qkeys)  # the position, then its place in the tracks (-1: in no track)
        if extras is not None and (at < 0).any():
            m = np.flatnonzero(at < 0)
            e = _Index(extras).find(qkeys.take(m))
            at[m[e >= 0]] = n_list + e[e >= 0]
        place = np.full(n_pos, -1, dtype=np.int64)
        place[pidx] = np.arange(n_tp)
        k = np.where(at >= 0, place[at], -1)
        del place, at
        inexact = np.flatnonzero(k < 0)
        if len(inexact):
            tf = frame[pidx]
            txyz = np.column_stack([c[pidx] for c in xyz])
            by_t = np.argsort(tf, kind="stable")
            tf_sorted = tf[by_t]
            for j in inexact:
                k[j] = _near(by_t, tf_sorted, txyz, int(qf[j]), qx[j], tolerance, int(q_track[j]), starts, path)
            del tf, txyz, by_t, tf_sorted
        ttrack_k = track_of_pos[pidx[k]]
        mid = k != last[ttrack_k]
        if mid.any():
            j = int(np.flatnonzero(mid)[0])
            tr = int(ttrack_k[j])
            raise ParseError(f"tracks[{q_track[j]}] (starting at time point {starts[q_track[j]]}) continues from "
                             f"{_fmt_xyz(qx[j])} at time point {int(qf[j])}, which is in the middle of tracks[{tr}] "
                             f"(time points {starts[tr]}..{starts[tr] + lens[tr] - 1}), not its last position",
                             path=path)
        src.append(pidx[k])
        dst.append(pidx[first[np.asarray(q_track, dtype=np.int64)]])
        # link_meta_before: entry j belongs to parent j (OrganoidTracker's writer adds a trailing null)
        lo = n_intra
        for ti_, cb, lmb in before:
            if lmb:
                if not isinstance(lmb, dict):
                    raise ParseError(f"tracks[{ti_}].link_meta_before is not an object", path=path)
                for key, vals in lmb.items():
                    if not isinstance(vals, list):
                        raise ParseError(f"tracks[{ti_}].link_meta_before {key!r} is not a list", path=path)
                    if len(vals) == len(cb) + 1 and vals[-1] is None:
                        trailing += 1
                    elif len(vals) == len(cb):
                        exact_len += 1
                    if len(vals) > len(cb):
                        dropped += sum(v is not None for v in vals[len(cb):])
                        vals = vals[:len(cb)]
                    col = lmb_cols.get(key)
                    if col is None:
                        col = lmb_cols[key] = _Column(null_is_absent=True)
                    col.add(lo, vals)
            lo += len(cb)
    if dropped:
        warnings.warn(f"{path}: {dropped} link metadata value(s) past the end of their list were ignored "
                      "(OrganoidTracker ignores them too)", TrackstoreWarning, stacklevel=4)
    source = np.concatenate(src).astype(np.int64)
    target = np.concatenate(dst).astype(np.int64)

    # lineages: connected families of tracks
    child_track = track_of_pos[target[n_intra:]]
    lineage_of_track = _families(n_tracks, track_of_pos[source[n_intra:]], child_track)

    t = _start_tables(p, path, frame, xyz)
    del frame, xyz, pf, pcols, listed
    t.positions["track_id"] = track_of_pos
    t.links = {"source_id": source, "target_id": target}
    t.tracks = _track_columns(n_tracks, lineage_of_track)

    blocks = _session_blocks(p, path)
    if trailing and not exact_len:
        blocks.append(MetaBlock.scalar("session", NS + "link_meta_before_trailing_null", True))
    for k, col in p.pos_meta.items():
        _append(blocks, col.block("position", k))
    if n_pos > n_list:
        blocks.append(MetaBlock("position", NS + "not_in_positions", np.ones(n_pos - n_list, bool),
                                np.arange(n_list, n_pos)))
    # link metadata: link_meta (links inside tracks) and link_meta_before (links to parents), one key each
    for key in dict.fromkeys([*link_meta, *lmb_cols]):
        col = link_meta.get(key)
        if col is None:
            col = lmb_cols[key]
        elif key in lmb_cols:
            col.flush()
            lmb_cols[key].flush()
            col.owners += lmb_cols[key].owners
            col.parts += lmb_cols[key].parts
        _append(blocks, col.block("link", key))
    blocks += _lineage_blocks(lineage, lineage_of_track, roots=_roots(n_tracks, child_track))
    t.metadata = blocks
    return t


def _append(blocks: list[MetaBlock], b: MetaBlock | None) -> None:
    if b is not None:
        blocks.append(b)


def _near(by_t, tf_sorted, txyz, t: int, xyz: np.ndarray, tol: float, ti: int, starts, path) -> int:
    """The track position at time point t within ``tol`` px of xyz on every axis (the nearest), or raise."""
    cand = by_t[np.searchsorted(tf_sorted, t, "left"):np.searchsorted(tf_sorted, t, "right")]
    if len(cand):
        d = np.abs(txyz[cand] - xyz).max(axis=1)
        ok = d <= tol
        if ok.any():
            return int(cand[ok][np.argmin(d[ok])])
    raise ParseError(f"tracks[{ti}] (starting at time point {starts[ti]}) continues from {_fmt_xyz(xyz)} at time "
                     f"point {t}, which matches no position of any track (not even within {tol} px)", path=path)


def _families(n: int, parent: np.ndarray, child: np.ndarray) -> np.ndarray:
    """Lineage id of each of n tracks (connected components), numbered in order of first track."""
    if not n:
        return np.empty(0, np.int64)
    node_track, lin_of = derive_tracks(n, parent, child)
    lab = lin_of[node_track]
    _, first = np.unique(lab, return_index=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    _, inv = np.unique(lab, return_inverse=True)
    return rank[inv.ravel()]


def _roots(n: int, child_track: np.ndarray) -> np.ndarray:
    has_parent = np.zeros(n, bool)
    has_parent[child_track] = True
    return ~has_parent


def _lineage_blocks(lineage: list[tuple[int, dict]], lineage_of_track: np.ndarray,
                    roots: np.ndarray) -> list[MetaBlock]:
    """lineage_meta of each lineage's first root track -> lineage scope; any other -> one dict per track."""
    if not lineage:
        return []
    primary = {}
    for ti in np.flatnonzero(roots).tolist():
        primary.setdefault(int(lineage_of_track[ti]), ti)
    cols: dict[str, tuple[list, list]] = {}
    other_owners, other_vals = [], []
    for ti, d in lineage:
        lin = int(lineage_of_track[ti])
        if primary.get(lin) == ti:
            for k, v in d.items():
                o, vs = cols.setdefault(k, ([], []))
                o.append(lin)
                vs.append(v)
        else:
            other_owners.append(ti)
            other_vals.append(d)
    out = [MetaBlock("lineage", k, typed_values(np.fromiter(vs, object, len(vs))), np.asarray(o, np.int64))
           for k, (o, vs) in cols.items()]
    if other_owners:
        out.append(MetaBlock("track", NS + "lineage_meta", np.fromiter(other_vals, object, len(other_vals)),
                             np.asarray(other_owners, np.int64)))
    return out


def _track_columns(n: int, lineage: np.ndarray) -> dict[str, np.ndarray]:
    return {"name": np.full(n, None, dtype=object), "identity": np.full(n, None, dtype=object),
            "lineage_id": lineage.astype(np.int64), "visible": np.ones(n, dtype=bool),
            "native_id": np.full(n, None, dtype=object)}


# ---------------------------------------------------------------------------- shared
def _start_tables(p: _Parsed, path, frame: np.ndarray, xyz: list[np.ndarray]) -> TrackTables:
    top = p.top
    info = SessionInfo(name=Path(path).stem, source_format="organoidtracker", format_version=p.version,
                       source_path=str(Path(path).resolve()), space_unit="pixel",
                       source_files=(str(Path(path).resolve()),))
    res = top.get("image_resolution")
    t_m = None
    if isinstance(res, dict):
        px = tuple(_num(res.get(k)) for k in ("x_um", "y_um", "z_um"))
        if any(v is not None for v in px):
            info.pixel_size = px
            info.physical_unit = "micrometre"
        t_m = _num(res.get("t_m"))
    frames = np.unique(frame)
    timings = top.get("image_timings")
    tv = None
    if isinstance(timings, dict) and isinstance(timings.get("timings_m"), list) and len(timings["timings_m"]) >= 2:
        try:
            t0 = int(timings.get("min_time_point", 0))
            tv = np.asarray(timings["timings_m"], dtype=np.float64)
            frames = np.union1d(frames, np.arange(t0, t0 + len(tv)))
        except (TypeError, ValueError):
            tv = None
    if tv is not None:
        info.time_unit = "minute"
        info.frame_interval = t_m
        time = _timing(frames, t0, tv)
    elif t_m is not None:
        info.time_unit = "minute"
        info.frame_interval = t_m
        time = frames * t_m
    else:
        info.time_unit = "frame"
        info.frame_interval = 1.0
        time = frames.astype(np.float64)
    t = TrackTables(session=info)
    t.frames = {"frame": frames.astype(np.int64), "time": np.asarray(time, dtype=np.float64)}
    t.positions = {"frame": np.asarray(frame, dtype=np.int64),
                   **{k: np.ascontiguousarray(c, dtype=np.float64) for k, c in zip("xyz", xyz)}}
    return t


def _timing(frames: np.ndarray, t0: int, tv: np.ndarray) -> np.ndarray:
    """Minutes of each frame from cumulative image timings, extended by the first/last interval."""
    i = frames - t0
    out = np.empty(len(frames), np.float64)
    inside = (i >= 0) & (i < len(tv))
    out[inside] = tv[i[inside]]
    lo = i < 0
    out[lo] = tv[0] + i[lo] * (tv[1] - tv[0])
    hi = i >= len(tv)
    out[hi] = tv[-1] + (i[hi] - len(tv) + 1) * (tv[-1] - tv[-2])
    return out


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _session_blocks(p: _Parsed, path) -> list[MetaBlock]:
    """Top-level keys (order and verbatim values) and other_data (plain session keys)."""
    top = p.top
    blocks = [MetaBlock.scalar("session", NS + "key_order", list(top.keys()))]
    bulk = BULK_KEYS[p.version]
    for k, v in top.items():
        if k in bulk or (k == "shapes" and p.pos_key == "shapes"):
            continue
        blocks.append(MetaBlock.scalar("session", NS + k, v))
    od = top.get("other_data")
    if od is not None:
        if not isinstance(od, dict):
            raise ParseError("other_data is not an object", path=path)
        for k, v in od.items():
            blocks.append(MetaBlock.scalar("session", k, v))
    return blocks


# ---------------------------------------------------------------------------- v1
def _consume_v1(doc: oj.Document, path, tolerance: float) -> TrackTables:
    # a big file's links are read by a forked child while this process reads the positions and
    # nodes (as the v2 tracks, see _consume_v2); elsewhere here, after the nodes
    with _reader(doc, ("links", "links"), _link_runs, path) as links:
        return _consume_v1_with(doc, path, tolerance, links)


def _link_runs(doc: oj.Document, path) -> dict[str, Any]:
    """The v1 ``links.links`` array: each link's ``source`` and ``target`` as (n, 4) arrays of
    x, y, z, time point, and its other keys (``columns``, a :meth:`_Column.dump` each)."""
    src_l: list[np.ndarray] = []
    dst_l: list[np.ndarray] = []
    link_cols: dict[str, _Column] = {}
    off = 0
    for run in doc.elements("links", "links"):
        try:
            s = _numbers(map(_XYZT, map(itemgetter("source"), run)), len(run))
            d = _numbers(map(_XYZT, map(itemgetter("target"), run)), len(run))
        except (KeyError, TypeError, ValueError) as e:
            raise ParseError(f"links.links: {_bad_link(run, off)}", path=path) from e
        src_l.append(s)
        dst_l.append(d)
        _collect(run, off, ("source", "target"), link_cols)
        off += len(run)
        del run
    ls = np.concatenate(src_l) if src_l else np.empty((0, 4))
    ld = np.concatenate(dst_l) if dst_l else np.empty((0, 4))
    # the query side of the link ends' match with the listed positions, while the caller reads them
    ends = _Keys(np.concatenate([ls[:, 3], ld[:, 3]]).astype(np.int64),
                 [np.concatenate([ls[:, j], ld[:, j]]) for j in range(3)])
    h, order = _hashed(ends)
    return {"source": ls, "target": ld, "hash": h, "order": order,
            "columns": {k: c.dump() for k, c in link_cols.items()}}


def _consume_v1_with(doc: oj.Document, path, tolerance: float, links: Forked) -> TrackTables:
    """The v1 reading proper: positions and nodes here, the links from ``links`` (see :func:`_link_runs`)."""
    top = doc.top
    p = _Parsed()
    p.top = top
    p.version = "v1"
    pos_key = "positions" if "positions" in top else ("shapes" if "shapes" in top else None)
    p.pos_key = pos_key or "positions"
    pd = top.get(pos_key) if pos_key else None
    frames_l, xyz_l = [], []
    extra_owner, extra_vals = [], []
    n_list = 0
    if pd is not None:
        if not isinstance(pd, dict):
            raise ParseError(f"{pos_key} is not an object of time points", path=path)
        for ts, coords in pd.items():
            try:
                t = int(ts)
            except ValueError:
                raise ParseError(f"{pos_key}: {ts!r} is not a time point", path=path) from None
            if not isinstance(coords, list):
                raise ParseError(f"{pos_key}[{ts!r}] is not a list", path=path)
            try:
                a = _xyz(coords, f"{pos_key}[{ts!r}]", path)
            except ParseError:  # old files keep shape data after z: keep it aside
                a = None
            if a is None:
                rows = []
                for i, c in enumerate(coords):
                    if not isinstance(c, list) or len(c) < 3:
                        raise ParseError(f"{pos_key}[{ts!r}][{i}] is {str(c)[:60]}, not [x, y, z, ...]", path=path)
                    rows.append(c[:3])
                    if len(c) > 3:
                        extra_owner.append(n_list + i)
                        extra_vals.append(c[3:])
                a = _xyz(rows, f"{pos_key}[{ts!r}]", path)
            frames_l.append(np.full(len(a), t, np.int64))
            xyz_l.append(a)
            n_list += len(a)
    pf = np.concatenate(frames_l) if frames_l else np.empty(0, np.int64)
    pxyz = np.concatenate(xyz_l) if xyz_l else np.empty((0, 3))
    pkeys = _Keys(pf, pxyz)
    del frames_l, xyz_l

    d3 = top.get("links")
    node_l: list[np.ndarray] = []
    node_meta: dict[str, _Column] = {}
    ls = ld = np.empty((0, 4))
    link_cols: dict[str, _Column] = {}
    listed: _Index | None = None
    ends_hashed = None
    if d3 is not None:
        if not isinstance(d3, dict):
            raise ParseError("links is not a d3 node-link object", path=path)
        off = 0
        for run in doc.elements("links", "nodes"):
            try:
                a = _numbers(map(_XYZT, map(itemgetter("id"), run)), len(run))
            except (KeyError, TypeError, ValueError) as e:
                raise ParseError(f"links.nodes: {_bad_node(run, off)}", path=path) from e
            node_l.append(a)
            _collect(run, off, ("id",), node_meta)
            off += len(run)
            del run
        listed = _Index(pkeys)  # while the child reads the links
        got = links.result()
        ls, ld, ends_hashed = got["source"], got["target"], (got["hash"], got["order"])
        link_cols = {k: _Column.restore(*v) for k, v in got["columns"].items()}
        del got
    doc.release()
    nodes = np.concatenate(node_l) if node_l else np.empty((0, 4))
    del node_l
    for name, arr in (("links.nodes", nodes), ("links.links source", ls), ("links.links target", ld)):
        bad = arr[:, 3] != np.round(arr[:, 3])
        if bad.any():
            raise ParseError(f"{name} {int(np.flatnonzero(bad)[0])}: _time_point_number is not a whole number",
                             path=path)

    # every position: the listed ones, then nodes and link ends that are not listed (in order of appearance)
    # one contiguous column each (slices of them are views: no copies of the keys below)
    all_xyz = [np.concatenate([nodes[:, j], ls[:, j], ld[:, j]]) for j in range(3)]
    all_frame = np.concatenate([nodes[:, 3], ls[:, 3], ld[:, 3]]).astype(np.int64)
    n_nodes, n_links = len(nodes), len(ls)
    del nodes, ls, ld
    qkeys = _Keys(all_frame, all_xyz)
    everything = slice(None)
    if listed is None:
        listed = _Index(pkeys)
    if n_nodes == n_list and n_nodes and bool(qkeys.take(slice(0, n_nodes)).equal(everything, pkeys, everything).all()):
        # the usual v1 file: one node per listed position, in the same order
        idx = np.concatenate([np.arange(n_nodes, dtype=np.int64),
                              listed.find(qkeys.take(slice(n_nodes, None)), ends_hashed)])
    else:
        idx = listed.find(qkeys)
    del listed, ends_hashed
    miss = np.flatnonzero(idx < 0)
    extra = np.empty(0, np.int64)
    if len(miss):
        rank, firsts = _new_positions(miss, qkeys)
        idx[miss] = n_list + rank
        extra = miss[firsts]
    del qkeys
    n_pos = n_list + len(extra)
    node_pos = idx[:n_nodes]
    src = idx[n_nodes:n_nodes + n_links]
    dst = idx[n_nodes + n_links:]
    frame = np.concatenate([pf, all_frame[extra]])
    xyz = [np.concatenate([pxyz[:, j], c[extra]]) for j, c in enumerate(all_xyz)]  # columns, as stored
    del all_xyz, all_frame, pxyz

    # links go forward in time; remember the ones the file wrote the other way round
    same_t = frame[src] == frame[dst]
    if same_t.any():
        j = int(np.flatnonzero(same_t)[0])
        raise ParseError(f"links.links[{j}] joins two positions of time point {int(frame[src[j]])}", path=path)
    rev = frame[src] > frame[dst]
    source = np.where(rev, dst, src).astype(np.int64)
    target = np.where(rev, src, dst).astype(np.int64)
    has_link = np.zeros(n_pos, bool)
    has_link[source] = True
    has_link[target] = True
    tr_of, lin_of = derive_tracks(n_pos, source, target, frame)
    # positions in no link are in no track; keep the other tracks in order, and number families densely
    keep_tr = np.zeros(int(tr_of.max()) + 1 if n_pos else 0, bool)
    keep_tr[tr_of[has_link]] = True
    new_id = np.cumsum(keep_tr) - 1
    track_of_pos = np.where(has_link, new_id[tr_of], -1).astype(np.int64) if n_pos else np.empty(0, np.int64)
    kept = np.flatnonzero(keep_tr)
    lin = _dense(lin_of[kept])

    t = _start_tables(p, path, frame, xyz)
    t.positions["track_id"] = track_of_pos
    t.links = {"source_id": source, "target_id": target}
    t.tracks = _track_columns(len(kept), lin)

    blocks = _session_blocks(p, path)
    if isinstance(d3, dict):
        blocks.append(MetaBlock.scalar("session", NS + "d3_keys",
                                       {k: (None if k in ("nodes", "links") else v) for k, v in d3.items()}))
    # position metadata from the nodes (a null is kept as a value: in v1 a missing key is the absence)
    for k, col in node_meta.items():
        _append(blocks, col.block("position", k, owner_of=node_pos))
    n_extra = n_pos - n_list
    if n_extra:
        blocks.append(MetaBlock("position", NS + "not_in_positions", np.ones(n_extra, bool),
                                np.arange(n_list, n_pos)))
    if extra_owner:
        blocks.append(MetaBlock("position", NS + "v1_extra", np.fromiter(extra_vals, object, len(extra_vals)),
                                np.asarray(extra_owner, np.int64)))
    if isinstance(d3, dict) and "nodes" in d3:
        if not (n_nodes == n_list and np.array_equal(node_pos, np.arange(n_list))):
            blocks.append(MetaBlock("position", NS + "v1_node_index", np.arange(n_nodes, dtype=np.int64), node_pos))
    lineage: dict[int, dict] = {}
    for k, col in link_cols.items():
        if not k.startswith("__lineage_"):
            _append(blocks, col.block("link", k))
            continue
        # lineage data: __lineage_<name> on the links leaving a root track's first position
        b = col.block("link", k)
        if b is not None:
            for j, v in zip(b.owners.tolist(), b.values.tolist()):
                lineage.setdefault(int(track_of_pos[source[j]]), {})[k[len("__lineage_"):]] = v
    if rev.any():
        blocks.append(MetaBlock("link", NS + "v1_reversed", np.ones(int(rev.sum()), bool), np.flatnonzero(rev)))
    if lineage:
        cross = track_of_pos[target] != track_of_pos[source]
        blocks += _lineage_blocks(sorted(lineage.items()), lin, roots=_roots(len(kept), track_of_pos[target][cross]))
    t.metadata = blocks
    return t


def _numbers(rows, n: int) -> np.ndarray:
    """(n, 4) float64 from n tuples of numbers (x, y, z, time point); raises on anything else.

    ``fromiter`` over the flattened tuples converts exactly as ``np.array`` of the list does, in
    half the time (no list, no nested-sequence inspection)."""
    return np.fromiter(chain.from_iterable(rows), dtype=np.float64, count=4 * n).reshape(n, 4)


def _dense(lab: np.ndarray) -> np.ndarray:
    """Labels renumbered 0.. in order of first appearance."""
    if not len(lab):
        return lab.astype(np.int64)
    _, first, inv = np.unique(lab, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inv.ravel()]


def _collect(run: list, off: int, skip: tuple[str, ...], cols: dict[str, _Column]) -> None:
    """Metadata keys of a run of v1 nodes or links into columns (keys in first-seen order)."""
    keys = set().union(*run).difference(skip) if run else set()
    if keys:
        new = [k for k in keys if k not in cols]
        if new:  # order new keys by the first element that has them
            pos: dict[str, tuple[int, int]] = {}
            for i, el in enumerate(run):
                for j, k in enumerate(el):
                    if k in keys and k not in pos:
                        pos[k] = (i, j)
                if len(pos) == len(keys):
                    break
            for k in sorted(new, key=lambda k: pos[k]):
                cols[k] = _Column(null_is_absent=False)
        for k in keys:
            try:  # the usual case: every element has the key (one pass in C, no index list)
                cols[k].add(off, list(map(itemgetter(k), run)))
                continue
            except KeyError:
                pass
            idx = [i for i, el in enumerate(run) if k in el]
            cols[k].add_at([off + i for i in idx], [run[i][k] for i in idx])
    _flush(cols)


def _bad_node(run: list, off: int) -> str:
    for i, n in enumerate(run):
        if not isinstance(n, dict) or not isinstance(n.get("id"), dict):
            return f"node {off + i} has no id object"
        try:
            vals = _XYZT(n["id"])
        except KeyError as e:
            return f"node {off + i}: id has no {e.args[0]!r}"
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            return f"node {off + i}: id {n['id']} has a value that is not a number"
    return "a node is not {id: {x, y, z, _time_point_number}}"


def _bad_link(run: list, off: int) -> str:
    for i, n in enumerate(run):
        for end in ("source", "target"):
            if not isinstance(n, dict) or not isinstance(n.get(end), dict):
                return f"link {off + i} has no {end} object"
            try:
                vals = _XYZT(n[end])
            except KeyError as e:
                return f"link {off + i}: {end} has no {e.args[0]!r}"
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                return f"link {off + i}: {end} {n[end]} has a value that is not a number"
    return "a link is not {source: {...}, target: {...}}"


# ---------------------------------------------------------------------------- entry
V2_SPLIT = [("positions",), ("tracks",)]
V1_SPLIT = [("links", "nodes"), ("links", "links")]
_VERSION = re.compile(rb'"version"\s*:\s*"([^"]*)"')


def read_aut(path: Path, *, tolerance: float = TOLERANCE) -> TrackTables:
    """Read one ``.aut`` (or OrganoidTracker ``.json``) file; see ``organoidtracker.read``."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(1 << 16)
    except OSError as e:
        raise ParseError(f"cannot read the file: {e.strerror or e}", path=path) from e
    m = _VERSION.search(head)
    split = V1_SPLIT if m is not None and m.group(1) == b"v1" else V2_SPLIT

    def consume(doc: oj.Document) -> TrackTables:
        top = doc.top
        if not isinstance(top, dict):
            raise ParseError("not an OrganoidTracker file (the JSON is not an object)", path=path)
        if "version" not in top and "family_scores" not in top:
            return _consume_bare(doc, path, tolerance)
        version = top.get("version", "v1")
        if version == "v2":
            return _consume_v2(doc, path, tolerance)
        if version == "v1":
            return _consume_v1(doc, path, tolerance)
        raise ParseError(f"unknown AUT version {version!r} (known: v1, v2)", path=path)

    with oj.gc_paused():
        t = oj.parse(path, split, consume)
    return t


def _consume_bare(doc: oj.Document, path, tolerance: float) -> TrackTables:
    """OrganoidTracker's "specialised" files: a bare d3 links graph, or a bare positions dict."""
    top = doc.top
    if "directed" in top:
        doc.top = {"links": top}
    else:
        for k in top:
            try:
                int(k)
            except ValueError:
                raise ParseError(f"not an OrganoidTracker file: no version, and key {k!r} is not a time point",
                                 path=path) from None
        doc.top = {"positions": top}
    t = _consume_v1(doc, path, tolerance)
    t.session.format_version = "positions" if "positions" in doc.top else "links"
    t.metadata = [b for b in t.metadata if b.key != NS + "key_order"]
    return t
