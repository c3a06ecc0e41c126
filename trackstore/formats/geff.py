"""GEFF (Graph Exchange File Format) zarr groups, through the reference ``geff`` package.

Read: nodes become positions (the time axis gives ``frame``, the space axes ``x``/``y``/``z``,
the ``sphere`` property ``radius``, node ids ``native_id``); edges become links; every other node
or edge property becomes position or link metadata with its dtype, its missing entries left out.
Tracks are the ``tracklet`` property's tracklets when there is one (lineages from the ``lineage``
property), otherwise derived (maximal unbranched chains, as GEFF defines tracklets). The GEFF
metadata itself (axes with units and scale, property metadata, ``extra``, ...) is kept as the
session value ``geff.metadata`` so a GEFF read and written back is the same GEFF.

Write: the reverse. What GEFF has no place for (session facts, frames, the tracks table,
track/lineage/frame/session metadata of other formats, values that are not plain numbers or
strings) goes to ``extra["trackstore"]``, and trackstore's own reader restores it exactly; the
written group passes ``geff``'s structure validation before the call returns.

Pre-1.0 groups (geff 0.1/0.2) are read best-effort; a warning names what could not be read.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .. import values as tsvalues
from ..errors import ParseError, TrackstoreWarning, WriteError
from ..model import ORIGIN_CODE, ORIGINS, MetaBlock, SessionInfo, TrackTables, derive_tracks
from . import _geff_props as props
from ._base import prepare_target
from ._geff_legacy import read_legacy

NAME = "geff"
SUFFIXES = ("/", ".geff", ".zarr")
DESCRIPTION = "GEFF graph exchange format (zarr group; geff 1.x, pre-1.0 read best-effort)"
EXTRA = "geff"

_FRAME_PROPS = ("frame", "FRAME", "timepoint", "time_point", "frame_id")
_SPACE_NORM = {"micrometer": "micrometre", "micron": "micrometre", "µm": "micrometre", "um": "micrometre",
               "micrometre": "micrometre", "nanometer": "nanometre", "nanometre": "nanometre",
               "millimeter": "millimetre", "millimetre": "millimetre", "pixel": "pixel", "pixels": "pixel"}
_TIME_NORM = {"second": "second", "sec": "second", "s": "second", "minute": "minute", "min": "minute",
              "hour": "hour", "h": "hour", "frame": "frame", "millisecond": "millisecond", "day": "day"}
_OME = {"micrometre": "micrometer", "nanometre": "nanometer", "millimetre": "millimeter"}
_PAYLOAD = "trackstore"


# ---------------------------------------------------------------------------------------- sniff
def _attrs(folder: Path) -> dict | None:
    """The group attributes of a zarr v2 or v3 group folder, or None."""
    try:
        if (folder / ".zattrs").is_file():
            return json.loads((folder / ".zattrs").read_text(encoding="utf-8"))
        if (folder / "zarr.json").is_file():
            meta = json.loads((folder / "zarr.json").read_text(encoding="utf-8"))
            if meta.get("node_type") == "group":
                return meta.get("attributes", {})
    except (OSError, ValueError):
        return None
    return None


def _is_geff(attrs: dict | None) -> bool:
    return isinstance(attrs, dict) and ("geff" in attrs or "geff_version" in attrs)


def _find_group(path: Path) -> Path | None:
    """The GEFF group at ``path``, or the single GEFF group directly inside it."""
    if not path.is_dir():
        return None
    if _is_geff(_attrs(path)):
        return path
    try:
        inner = [c for c in sorted(path.iterdir()) if c.is_dir() and _is_geff(_attrs(c))]
    except OSError:
        return None
    return inner[0] if len(inner) == 1 else None


def sniff(path: Path) -> bool:
    """True for a zarr group whose attributes carry GEFF metadata (or a folder holding one)."""
    try:
        return _find_group(Path(path)) is not None
    except Exception:
        return False


# ----------------------------------------------------------------------------------------- read
def read(path: Path, *, frame_prop: str | None = None, **options) -> TrackTables:
    """Read one GEFF group into a session.

    Args:
        path: The GEFF zarr group (``tracks.geff``), or a folder (``x.zarr``) holding exactly one.
        frame_prop: Node property holding the frame number, when the time axis is not one
            (by default: an integer time axis, else ``frame``/``FRAME``/``timepoint``, else the
            time values divided by their smallest step).
        **options: Not used.

    Returns:
        The session (see the module docstring for the mapping).

    Raises:
        ParseError: Not a GEFF, an invalid GEFF 1.x, edges naming unknown nodes, no time axis.

    Example:
        >>> tables = read(Path("tracks.zarr/tracks.geff"))  # doctest: +SKIP
    """
    path = Path(path)
    group = _find_group(path)
    if group is None:
        raise ParseError("not a GEFF zarr group (no 'geff' attributes here or in one sub-folder)", path=path)
    attrs = _attrs(group) or {}
    meta = attrs.get("geff")
    version = str((meta or attrs).get("geff_version", "0"))
    if not isinstance(meta, dict) or _major(version) < 1 or "node_props_metadata" not in meta:
        return _read_legacy(group, attrs, version, frame_prop)
    try:
        from geff.core_io import read_to_memory
    except ModuleNotFoundError as e:  # pragma: no cover - only without the extra
        raise ParseError("reading GEFF needs the geff package", path=group,
                         hint="pip install 'trackstore[geff]'") from e
    try:
        mem = read_to_memory(str(group))
    except Exception as e:  # pydantic / zarr / ValueError from geff's validation
        raise ParseError(f"invalid GEFF {version}: {e}", path=group) from e
    md = mem["metadata"].model_dump(mode="json")
    zarr_format = 3 if (group / "zarr.json").is_file() else 2
    return _to_tables(group, md, mem["node_ids"], mem["edge_ids"], mem["node_props"], mem["edge_props"],
                      zarr_format, frame_prop, legacy_notes=None)


def _major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 0


def _read_legacy(group: Path, attrs: dict, version: str, frame_prop: str | None) -> TrackTables:
    raw = read_legacy(group, attrs)
    notes = list(raw["notes"])
    node_props = raw["node_props"]
    names = raw["axis_names"]
    pos_prop = raw["position_prop"]
    axes = []
    if "t" in node_props:
        axes.append({"name": "t", "type": "time", "unit": None})
    for ax in names:
        if ax in node_props and ax != "t":
            axes.append({"name": ax, "type": "space", "unit": None})
    if pos_prop in node_props and len(axes) <= 1:
        pos = node_props[pos_prop]["values"]
        for k, ax in enumerate(names):
            if ax != "t" and ax not in node_props and pos.ndim == 2 and k < pos.shape[1]:
                node_props[ax] = {"values": pos[:, k].astype(np.float64), "missing": None}
                axes.append({"name": ax, "type": "space", "unit": None})
    units = raw["axis_units"]
    if units:
        notes.append(f"axis_units {units!r} not interpreted")
    for ax in axes:  # old files may carry 'missing' on coordinates; 1.x forbids it
        p = node_props.get(ax["name"])
        if p is not None and p["missing"] is not None and p["missing"].any():
            notes.append(f"axis {ax['name']!r} has missing values (left as NaN)")
            p["values"] = np.where(p["missing"], np.nan, p["values"].astype(np.float64))
        if p is not None:
            p["missing"] = None
    node_ids = raw["node_ids"]
    edge_ids = raw["edge_ids"]
    if node_ids.dtype.kind not in "iu":
        notes.append(f"node ids are {node_ids.dtype} text, not integers: positions are numbered 0..n-1 and "
                     "the original ids kept as position metadata 'geff.node_id'")
        node_props["geff.node_id"] = {"values": node_ids, "missing": None}
        lookup = {v: i for i, v in enumerate(node_ids.tolist())}
        try:
            edge_ids = np.array([[lookup[a], lookup[b]] for a, b in edge_ids.tolist()], np.int64).reshape(-1, 2)
        except KeyError as e:
            raise ParseError(f"edge refers to unknown node {e.args[0]!r}", path=group) from None
        node_ids = np.arange(len(node_ids), dtype=np.int64)
    md = {
        "geff_version": version, "directed": raw["directed"], "axes": axes,
        "node_props_metadata": {k: _legacy_prop_meta(k, v) for k, v in node_props.items()},
        "edge_props_metadata": {k: _legacy_prop_meta(k, v) for k, v in raw["edge_props"].items()},
        "track_node_props": None, "extra": {},
    }
    if raw["leftover_attrs"]:
        notes.append(f"attributes {sorted(raw['leftover_attrs'])} not interpreted (kept in extra['geff_legacy'])")
        md["extra"] = {"geff_legacy": raw["leftover_attrs"]}
    if pos_prop in node_props:
        notes.append(f"combined position property {pos_prop!r} kept as metadata (x/y/z come from the axes)")
    t = _to_tables(group, md, node_ids, edge_ids, node_props, raw["edge_props"], 2, frame_prop,
                   legacy_notes=notes)
    warnings.warn(f"{group}: pre-1.0 GEFF (version {version}) read best-effort: read node ids, "
                  f"{len(edge_ids)} edges and properties {sorted(node_props)}; "
                  + ("; ".join(notes) if notes else "nothing else was found"),
                  TrackstoreWarning, stacklevel=3)
    return t


def _legacy_prop_meta(name: str, p: dict) -> dict:
    v = p["values"]
    dtype = "str" if v.dtype.kind in "UO" else str(v.dtype)
    return {"identifier": name, "dtype": dtype, "varlength": False}


def _axis_roles(md: dict, node_props: dict) -> tuple[dict | None, list[dict]]:
    """(time axis, space axes in x, y, z order) from the metadata (or from conventional names)."""
    axes = md.get("axes")
    if not axes:
        axes = [{"name": n, "type": "time" if n == "t" else "space"} for n in ("t", "z", "y", "x")
                if n in node_props]
    time_ax = next((a for a in axes if a.get("type") == "time"), None)
    space = [a for a in axes if a.get("type") == "space"]
    by_letter: dict[str, dict] = {}
    for a in space:
        nm = a["name"].lower()
        for letter in "xyz":
            if nm == letter or nm.endswith(("_" + letter, "position_" + letter)):
                by_letter.setdefault(letter, a)
    if len(by_letter) != len(space):  # names say nothing: GEFF order is (..., z, y, x)
        by_letter = dict(zip("xyz", reversed(space)))
    return time_ax, [by_letter[c] for c in "xyz" if c in by_letter]


def _to_tables(group: Path, md: dict, node_ids, edge_ids, node_props: dict, edge_props: dict,
               zarr_format: int, frame_prop: str | None, legacy_notes: list[str] | None) -> TrackTables:
    extra = dict(md.get("extra") or {})
    payload = extra.pop(_PAYLOAD, None)
    md = dict(md, extra=extra)
    payload = payload if isinstance(payload, dict) and payload.get("version") == 1 else None
    columns = payload.get("columns", {}) if payload else {}
    encodings = payload.get("props", {}) if payload else {}
    n = len(node_ids)
    time_ax, space_axes = _axis_roles(md, node_props)
    if len(space_axes) < 1:
        raise ParseError("no space axis (x/y/z) to place the nodes", path=group)
    consumed: set[str] = set()

    # frame
    frame, time_of_node, time_kept = _frames(group, md, time_ax, node_props, frame_prop, n)
    if time_ax is not None and not time_kept:
        consumed.add(time_ax["name"])
    pos: dict[str, np.ndarray] = {"frame": frame}
    for letter, ax in zip("xyz", space_axes):
        pos[letter] = np.asarray(node_props[ax["name"]]["values"], np.float64)
        consumed.add(ax["name"])
    if "y" not in pos:
        pos["y"] = np.zeros(n)
    if columns.get("native_id", True):
        pos["native_id"] = np.asarray(node_ids).astype(np.int64)
    sphere = md.get("sphere")
    if sphere and sphere in node_props and np.asarray(node_props[sphere]["values"]).ndim == 1:
        p = node_props[sphere]
        r = np.asarray(p["values"], np.float64).copy()
        if p["missing"] is not None:
            r[p["missing"]] = np.nan
        pos["radius"] = r
        consumed.add(sphere)
    for col in ("quality", "origin", "track_id", "lineage_id"):
        name = columns.get(col)
        if name and name in node_props:
            consumed.add(name)
    if columns.get("quality") in node_props:
        p = node_props[columns["quality"]]
        q = np.asarray(p["values"], np.float64).copy()
        if p["missing"] is not None:
            q[p["missing"]] = np.nan
        pos["quality"] = q
    if columns.get("origin") in node_props:
        codes = [ORIGIN_CODE.get(str(s), 0) for s in node_props[columns["origin"]]["values"].tolist()]
        pos["origin"] = np.array(codes, np.int8)

    # links
    src, dst, keep_edges, dropped = _edges(group, node_ids, edge_ids, frame, md.get("directed", True))

    t = TrackTables(session=_session(group, md, payload, time_ax, space_axes), positions=pos)
    t.links = {"source_id": src, "target_id": dst}
    _tracks(t, md, node_props, payload, columns)

    # frames
    if payload and "frames" in payload:
        fr = tsvalues.from_json_text(payload["frames"])
        t.frames = {"frame": np.asarray(fr["frame"], np.int64), "time": np.asarray(fr["time"], np.float64)}
    else:
        frames = np.unique(frame)
        if time_kept:
            first = np.unique(frame, return_index=True)[1]
            times = np.asarray(time_of_node, np.float64)[first]
        else:
            scale = (time_ax or {}).get("scale")
            times = frames * float(scale) if scale else frames.astype(np.float64)
        t.frames = {"frame": frames, "time": times}

    # metadata: the GEFF description first, then node props, edge props, then trackstore's own
    node_meta = md.get("node_props_metadata") or {}
    if not (payload and "session" in payload):
        # a GEFF from elsewhere: keep its own description so it is written back the same; a GEFF
        # that trackstore wrote from another format is described by the session itself
        t.add_meta("session", "geff.metadata", md)
        t.add_meta("session", "geff.node_id_dtype", str(np.asarray(node_ids).dtype))
        t.add_meta("session", "geff.zarr_format", int(zarr_format))
        with_missing = {"node": sorted(k for k, v in node_props.items() if v.get("missing") is not None),
                        "edge": sorted(k for k, v in edge_props.items() if v.get("missing") is not None)}
        t.add_meta("session", "geff.missing", with_missing)
    if dropped:
        t.add_meta("session", "geff.dropped_edges", dropped)
    order = [k for k in node_meta if k in node_props] + [k for k in node_props if k not in node_meta]
    for name in order:
        if name in consumed:
            continue
        p = node_props[name]
        vals, owners = props.prop_to_block(np.asarray(p["values"]), p.get("missing"),
                                           encodings.get("node", {}).get(name))
        t.metadata.append(MetaBlock("position", name, vals, owners))
    edge_meta = md.get("edge_props_metadata") or {}
    for name in [k for k in edge_meta if k in edge_props] + [k for k in edge_props if k not in edge_meta]:
        p = edge_props[name]
        values = np.asarray(p["values"])[keep_edges]
        miss = None if p.get("missing") is None else np.asarray(p["missing"])[keep_edges]
        vals, owners = props.prop_to_block(values, miss, encodings.get("edge", {}).get(name))
        t.metadata.append(MetaBlock("link", name, vals, owners))
    for item in (payload or {}).get("metadata", []):
        owners = item.get("owners")
        vals = tsvalues.from_json_text(item["values"])
        if item["scope"] == "position" and item["key"] == "trackstore.native_id":
            t.positions["native_id"] = np.asarray(vals, np.int64)
            continue
        if isinstance(vals, np.ndarray):
            arr = vals
        else:
            arr = np.empty(len(vals), dtype=object)
            for i, v in enumerate(vals):
                arr[i] = v
        t.metadata.append(MetaBlock(item["scope"], item["key"], arr,
                                    None if owners is None else np.asarray(owners, np.int64)))
    if payload and payload.get("order"):
        rank = {(sc, k): i for i, (sc, k) in enumerate(payload["order"])}
        t.metadata.sort(key=lambda b: rank.get((b.scope, b.key), len(rank)))
    return t


def _frames(group, md, time_ax, node_props, frame_prop, n):
    """(frame per node, time value per node or None, whether the time prop stays as metadata)."""
    if frame_prop is not None:
        if frame_prop not in node_props:
            raise ParseError(f"no node property {frame_prop!r} for frame_prop", path=group)
        tv = None if time_ax is None else np.asarray(node_props[time_ax["name"]]["values"])
        return np.asarray(node_props[frame_prop]["values"]).astype(np.int64), tv, True
    if time_ax is None or time_ax["name"] not in node_props:
        for cand in ("t", *_FRAME_PROPS):
            if cand in node_props and np.asarray(node_props[cand]["values"]).dtype.kind in "iu":
                return np.asarray(node_props[cand]["values"]).astype(np.int64), None, True
        if n == 0:
            return np.empty(0, np.int64), None, False
        raise ParseError("no time axis and no integer frame property (t, frame, FRAME, timepoint)", path=group,
                         hint="pass frame_prop=NAME")
    tv = np.asarray(node_props[time_ax["name"]]["values"])
    if tv.dtype.kind in "iu":
        return tv.astype(np.int64), tv, False
    for cand in _FRAME_PROPS:
        p = node_props.get(cand)
        if cand != time_ax["name"] and p is not None and p.get("missing") is None and \
                np.asarray(p["values"]).dtype.kind in "iu" and np.asarray(p["values"]).ndim == 1:
            return np.asarray(p["values"]).astype(np.int64), tv, True
    finite = tv[np.isfinite(tv)] if tv.dtype.kind == "f" else tv
    if time_ax.get("unit") in (None, "frame") and len(finite) == len(tv) and np.array_equal(tv, np.rint(tv)):
        return tv.astype(np.int64), tv, False
    steps = np.diff(np.unique(finite))
    step = float(steps[steps > 0].min()) if (steps > 0).any() else 1.0
    warnings.warn(f"{group}: frames derived from the time axis {time_ax['name']!r} "
                  f"({time_ax.get('unit') or 'no unit'}) divided by its smallest step {step:g}",
                  TrackstoreWarning, stacklevel=4)
    return np.rint(np.nan_to_num(tv) / step).astype(np.int64), tv, True


def _edges(group, node_ids, edge_ids, frame, directed):
    """Links as position indices; edges that cannot be links (same frame) are left out."""
    edge_ids = np.asarray(edge_ids).reshape(-1, 2)
    ids = np.asarray(node_ids)
    if not len(edge_ids):
        return np.empty(0, np.int64), np.empty(0, np.int64), np.ones(0, bool), []
    order = np.argsort(ids, kind="stable")
    sids = ids[order]
    where = np.searchsorted(sids, edge_ids)
    where = np.minimum(where, len(sids) - 1)
    ok = sids[where] == edge_ids
    if not ok.all():
        k = int(np.flatnonzero(~ok.all(axis=1))[0])
        raise ParseError(f"edge {k} ({edge_ids[k, 0]} -> {edge_ids[k, 1]}) refers to a node that does not exist",
                         path=group)
    idx = order[where]
    src, dst = idx[:, 0].astype(np.int64), idx[:, 1].astype(np.int64)
    fs, fd = frame[src], frame[dst]
    dropped: list[list[int]] = []
    keep = np.ones(len(src), bool)
    back = fd < fs
    if back.any():
        if directed:
            warnings.warn(f"{group}: {int(back.sum())} edge(s) point back in time; read as links forward in time",
                          TrackstoreWarning, stacklevel=4)
        src[back], dst[back] = dst[back], src[back]
    same = fs == fd
    if same.any():
        warnings.warn(f"{group}: {len(dropped)} edge(s) join nodes of the same frame and are not track links; "
                      "left out (their node pairs are kept as session metadata 'geff.dropped_edges')",
                      TrackstoreWarning, stacklevel=4)
        keep = ~same
        dropped = [[_plain(a), _plain(b)] for a, b in edge_ids[same].tolist()]
        src, dst = src[keep], dst[keep]
    return src, dst, keep, dropped


def _plain(v):
    return v if isinstance(v, (int, str)) else str(v)


def _session(group: Path, md: dict, payload: dict | None, time_ax, space_axes) -> SessionInfo:
    if payload and "session" in payload:
        s = payload["session"]
        return SessionInfo(
            name=s.get("name") or group.stem, source_format=s.get("source_format") or NAME,
            format_version=s.get("format_version"), source_path=str(group.resolve()),
            space_unit=s.get("space_unit"), time_unit=s.get("time_unit"),
            pixel_size=tuple(s.get("pixel_size") or (None, None, None)), physical_unit=s.get("physical_unit"),
            frame_interval=s.get("frame_interval"),
            image_size=tuple(s.get("image_size") or (None, None, None)),
            source_files=(str(group),),
        )
    space_unit = physical = None
    pixel_size: list[float | None] = [None, None, None]
    for k, ax in enumerate(space_axes):
        unit = ax.get("unit")
        if unit:
            space_unit = _SPACE_NORM.get(unit, unit)
        if ax.get("scale") and ax.get("scaled_unit"):
            pixel_size[k] = float(ax["scale"])
            physical = _SPACE_NORM.get(ax["scaled_unit"], ax["scaled_unit"])
    time_unit, interval = "frame", None
    if time_ax is not None:
        unit = time_ax.get("unit")
        if time_ax.get("scale") and time_ax.get("scaled_unit"):
            time_unit = _TIME_NORM.get(time_ax["scaled_unit"], time_ax["scaled_unit"])
            interval = float(time_ax["scale"])
        elif unit:
            time_unit = _TIME_NORM.get(unit, unit)
    name = group.parent.stem if group.name in ("tracks.geff", "tracks") else group.stem
    return SessionInfo(name=name, source_format=NAME, format_version=str(md.get("geff_version")),
                       source_path=str(group.resolve()), space_unit=space_unit, time_unit=time_unit,
                       pixel_size=tuple(pixel_size), physical_unit=physical, frame_interval=interval,
                       source_files=(str(group),))


def _tracks(t: TrackTables, md: dict, node_props: dict, payload: dict | None, columns: dict) -> None:
    n = t.n_positions
    src, dst = t.links["source_id"], t.links["target_id"]
    if payload and "tracks" in payload:
        tr = tsvalues.from_json_text(payload["tracks"])
        nt = len(tr["lineage_id"])
        t.tracks = {k: _obj(tr[k]) for k in ("name", "identity", "native_id")}
        t.tracks["lineage_id"] = np.asarray(tr["lineage_id"], np.int64).reshape(nt)
        t.tracks["visible"] = np.asarray(tr["visible"], bool).reshape(nt)
        col = columns.get("track_id")
        if col in node_props:
            p = node_props[col]
            tid = np.asarray(p["values"]).astype(np.int64).copy()
            if p.get("missing") is not None:
                tid[p["missing"]] = -1
            t.positions["track_id"] = tid
        return
    tnp = md.get("track_node_props") or {}
    tracklet = tnp.get("tracklet")
    lineage = tnp.get("lineage")
    if tracklet in node_props and node_props[tracklet].get("missing") is None:
        raw = np.asarray(node_props[tracklet]["values"])
        uniq, first, inv = np.unique(raw, return_index=True, return_inverse=True)
        rank = np.argsort(np.argsort(first, kind="stable"), kind="stable")  # number in node order
        track_of = rank[inv].astype(np.int64)
        nt = len(uniq)
        native = _obj([v.item() if hasattr(v, "item") else v for v in uniq[np.argsort(rank)]])
    else:
        track_of, _ = derive_tracks(n, src, dst, t.positions["frame"])
        nt = int(track_of.max()) + 1 if n else 0
        native = np.full(nt, None, dtype=object)
    lineage_of_track = np.full(nt, -1, np.int64)
    if lineage in node_props and node_props[lineage].get("missing") is None and nt:
        lin = np.asarray(node_props[lineage]["values"])
        _, lin_dense = np.unique(lin, return_inverse=True)
        lineage_of_track[track_of] = lin_dense
        _, lineage_of_track = np.unique(lineage_of_track, return_inverse=True)
    elif nt:
        comp = _components(n, src, dst)
        lineage_of_track[track_of] = comp
        _, lineage_of_track = np.unique(lineage_of_track, return_inverse=True)
    t.positions["track_id"] = track_of
    t.tracks = {"name": np.full(nt, None, dtype=object), "identity": np.full(nt, None, dtype=object),
                "lineage_id": np.asarray(lineage_of_track, np.int64), "visible": np.ones(nt, bool),
                "native_id": native}


def _components(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Weakly connected component of every position (min-label propagation)."""
    label = np.arange(n, dtype=np.int64)
    if not len(src):
        return label
    while True:
        old = label.copy()
        m = np.minimum(label[src], label[dst])
        np.minimum.at(label, src, m)
        np.minimum.at(label, dst, m)
        label = label[label]
        if np.array_equal(label, old):
            return label


def _obj(values) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


# ---------------------------------------------------------------------------------------- write
def write(tables: TrackTables, path: Path, *, overwrite: bool = False, zarr_format: int | None = None,
          **options) -> list[Path]:
    """Write a session as a GEFF 1.x zarr group (validated by ``geff`` before returning).

    Args:
        tables: The session.
        path: The GEFF group folder to create (``out.geff`` or ``out.zarr/tracks.geff``).
        overwrite: Replace an existing GEFF group at ``path``.
        zarr_format: 2 or 3; default: the source GEFF's, else 2 (geff's default).
        **options: Not used.

    Returns:
        ``[path]``.

    Raises:
        WriteError: The target exists (without ``overwrite``) or the result is not a valid GEFF.

    Example:
        >>> write(tables, Path("out.geff"))  # doctest: +SKIP
    """
    path = Path(path)
    tables.validate(path)
    try:
        from geff.core_io import write_arrays
        from geff_spec import GeffMetadata
    except ModuleNotFoundError as e:  # pragma: no cover
        raise WriteError("writing GEFF needs the geff package", path=path, hint="pip install 'trackstore[geff]'") from e
    if path.exists():
        if not overwrite:
            raise WriteError("already exists", path=path, hint="pass --overwrite to replace it")
        if path.is_dir() and any(path.iterdir()) and not _is_geff(_attrs(path)):
            raise WriteError("exists and is not a GEFF group: not replacing it", path=path)
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    prepare_target(path, overwrite=False, is_dir=True)
    parts = _build(tables, zarr_format)
    try:
        metadata = GeffMetadata.model_validate(parts["metadata"])
        write_arrays(str(path), parts["node_ids"], parts["node_props"], parts["edge_ids"], parts["edge_props"],
                     metadata, zarr_format=parts["zarr_format"], structure_validation=True,
                     overwrite=True)  # our own check above refused a real existing target
    except Exception as e:
        raise WriteError(f"could not write a valid GEFF: {e}", path=path) from e
    return [path]


def _build(tables: TrackTables, zarr_format: int | None) -> dict[str, Any]:
    """Everything ``geff.core_io.write_arrays`` needs, from a session."""
    smeta = tables.session_meta("geff.")
    gmd = smeta.get("geff.metadata")
    from_geff = isinstance(gmd, dict)
    n, nl = tables.n_positions, tables.n_links
    p = tables.positions
    node_meta_decl = (gmd or {}).get("node_props_metadata") or {}
    edge_meta_decl = (gmd or {}).get("edge_props_metadata") or {}
    had_missing = smeta.get("geff.missing") or {"node": [], "edge": []}
    payload: dict[str, Any] = {"version": 1}
    encodings: dict[str, dict[str, str]] = {"node": {}, "edge": {}}
    columns: dict[str, Any] = {}

    # node ids
    native = p.get("native_id")
    id_dtype = np.dtype(smeta.get("geff.node_id_dtype") or np.int64)
    if native is not None and len(np.unique(native)) == n and (id_dtype.kind == "i" or (native >= 0).all()):
        node_ids = native.astype(id_dtype)
    else:
        node_ids = np.arange(n, dtype=id_dtype if id_dtype.kind in "iu" else np.int64)
        columns["native_id"] = False
        if native is not None:
            columns["native_id"] = False
            _append_payload_meta(payload, MetaBlock("position", "trackstore.native_id", native,
                                                    np.arange(n, dtype=np.int64)))

    node_props: dict[str, dict] = {}
    blocks_by_key = {(b.scope, b.key): b for b in tables.metadata}
    pos_keys = [b.key for b in tables.metadata if b.scope == "position"]

    def free(name: str) -> str:
        while name in pos_keys or name in node_props:
            name = "trackstore_" + name
        return name

    # axes
    if from_geff and gmd.get("axes"):
        axes = [dict(a) for a in gmd["axes"]]
        time_ax = next((a for a in axes if a.get("type") == "time"), None)
        _, ordered = _axis_roles({"axes": axes}, {a["name"]: None for a in axes})
    else:
        axes, time_ax, ordered = _new_axes(tables, free)
    if time_ax is not None and ("position", time_ax["name"]) not in blocks_by_key:
        dt = np.dtype(node_meta_decl.get(time_ax["name"], {}).get("dtype", "int64"))
        node_props[time_ax["name"]] = {"values": p["frame"].astype(dt), "missing": None}
    for letter, ax in zip("xyz", ordered):
        col = tables.pos(letter) if letter != "y" else p["y"]
        dt = np.dtype(node_meta_decl.get(ax["name"], {}).get("dtype", "float64"))
        vals = col.astype(np.float64)
        node_props[ax["name"]] = {"values": vals.astype(dt) if dt.kind == "f" else np.rint(vals).astype(dt),
                                  "missing": None}
    for a in axes:
        a.pop("min", None)
        a.pop("max", None)

    # model columns that have no GEFF axis
    sphere = (gmd or {}).get("sphere") if from_geff else None
    radius = p.get("radius")
    if radius is not None and np.isfinite(radius).any():
        sphere = sphere if sphere and ("position", sphere) not in blocks_by_key else free("radius")
        miss = ~np.isfinite(radius)
        dt = np.dtype(node_meta_decl.get(sphere, {}).get("dtype", "float64"))
        node_props[sphere] = {"values": np.where(miss, 0.0, radius).astype(dt),
                              "missing": miss if miss.any() or sphere in had_missing["node"] else None}
    else:
        sphere = None
    quality = p.get("quality")
    if quality is not None and np.isfinite(quality).any():
        name = free("quality")
        miss = ~np.isfinite(quality)
        node_props[name] = {"values": np.where(miss, 0.0, quality), "missing": miss if miss.any() else None}
        columns["quality"] = name
    origin = p.get("origin")
    if origin is not None and (origin != 0).any():
        name = free("origin")
        node_props[name] = {"values": np.array([ORIGINS[c] for c in origin.tolist()], dtype=str), "missing": None}
        columns["origin"] = name

    # tracks: the payload carries the table; tracklet/lineage props are declared when valid
    track_node_props = dict((gmd or {}).get("track_node_props") or {}) if from_geff else {}
    if not from_geff and tables.n_tracks:
        tid = tables.pos("track_id")
        name = free("track_id")
        miss = tid < 0
        node_props[name] = {"values": np.where(miss, 0, tid).astype(np.int64), "missing": miss if miss.any() else None}
        columns["track_id"] = name
        derived, _ = derive_tracks(n, tables.links["source_id"], tables.links["target_id"], p["frame"])
        if not miss.any() and _same_partition(tid, derived):
            track_node_props["tracklet"] = name
        lin = tables.track_col("lineage_id")
        if not miss.any() and (lin >= 0).all() and n:
            lin_pos = lin[tid]
            comp = _components(n, tables.links["source_id"], tables.links["target_id"])
            if _same_partition(lin_pos, comp):
                lname = free("lineage_id")
                node_props[lname] = {"values": lin_pos.astype(np.int64), "missing": None}
                columns["lineage_id"] = lname
                track_node_props["lineage"] = lname
        payload["tracks"] = tsvalues.to_json_text({
            "name": list(tables.track_col("name")), "identity": list(tables.track_col("identity")),
            "native_id": list(tables.track_col("native_id")),
            "lineage_id": [int(v) for v in tables.track_col("lineage_id")],
            "visible": [bool(v) for v in tables.track_col("visible")]})

    # metadata blocks: position -> node props, link -> edge props, the rest -> payload
    edge_props: dict[str, dict] = {}
    for b in tables.metadata:
        if b.scope == "position":
            owners = b.owners if b.owners is not None else np.arange(n)
            prop, enc = props.block_to_prop(b.values, owners, n, node_meta_decl.get(b.key),
                                            keep_missing=b.key in had_missing["node"])
            node_props[b.key] = prop
            if enc:
                encodings["node"][b.key] = enc
        elif b.scope == "link":
            owners = b.owners if b.owners is not None else np.arange(nl)
            prop, enc = props.block_to_prop(b.values, owners, nl, edge_meta_decl.get(b.key),
                                            keep_missing=b.key in had_missing["edge"])
            edge_props[b.key] = prop
            if enc:
                encodings["edge"][b.key] = enc
        elif b.scope == "session" and b.key.startswith("geff."):
            continue
        else:
            _append_payload_meta(payload, b)
    if sphere is not None and sphere in node_props and node_props[sphere]["values"].ndim != 1:
        sphere = None

    # order props as the source declared them, new ones after
    order = [k for k in node_meta_decl if k in node_props] + [k for k in node_props if k not in node_meta_decl]
    node_props = {k: node_props[k] for k in order}
    eorder = [k for k in edge_meta_decl if k in edge_props] + [k for k in edge_props if k not in edge_meta_decl]
    edge_props = {k: edge_props[k] for k in eorder}

    if not from_geff:
        info = tables.session
        payload["session"] = {
            "name": info.name, "source_format": info.source_format, "format_version": info.format_version,
            "space_unit": info.space_unit, "time_unit": info.time_unit,
            "pixel_size": [_num(v) for v in info.pixel_size], "physical_unit": info.physical_unit,
            "frame_interval": _num(info.frame_interval), "image_size": [_num(v) for v in info.image_size]}
        frames = tables.frame_numbers()
        tm = tables.frames.get("time")
        payload["frames"] = tsvalues.to_json_text({
            "frame": [int(v) for v in frames],
            "time": [float(v) for v in (tm if tm is not None else np.full(len(frames), np.nan))]})
    if not from_geff and len({(b.scope, b.key) for b in tables.metadata}) == len(tables.metadata):
        payload["order"] = [[b.scope, b.key] for b in tables.metadata]
    if columns:
        payload["columns"] = columns
    if encodings["node"] or encodings["edge"]:
        payload["props"] = encodings

    extra = dict((gmd or {}).get("extra") or {})
    if len(payload) > 1:
        extra[_PAYLOAD] = payload
    md: dict[str, Any] = {
        "directed": bool((gmd or {}).get("directed", True)),
        "axes": axes,
        "node_props_metadata": {},
        "edge_props_metadata": {},
        "sphere": sphere,
        "track_node_props": track_node_props or None,
        "extra": extra,
    }
    if from_geff:
        for key in ("ellipsoid", "polygon", "related_objects", "display_hints", "affine"):
            if gmd.get(key) is not None:
                md[key] = gmd[key]
    # keep the declared names/units/descriptions; geff recomputes dtype and varlength
    md["node_props_metadata"] = {k: _prop_meta(k, node_meta_decl.get(k), v) for k, v in node_props.items()}
    md["edge_props_metadata"] = {k: _prop_meta(k, edge_meta_decl.get(k), v) for k, v in edge_props.items()}
    src, dst = tables.links["source_id"], tables.links["target_id"]
    edge_ids = np.stack([node_ids[src], node_ids[dst]], axis=1) if nl else np.empty((0, 2), node_ids.dtype)
    fmt = zarr_format or smeta.get("geff.zarr_format") or 2
    return {"node_ids": node_ids, "edge_ids": edge_ids.astype(node_ids.dtype), "node_props": node_props,
            "edge_props": edge_props, "metadata": md, "zarr_format": int(fmt)}


def _prop_meta(name: str, declared: dict | None, prop: dict) -> dict:
    vals = prop["values"]
    if vals.dtype.kind == "O":
        first = next((v for v in vals if isinstance(v, np.ndarray)), None)
        dtype, varlength = (str(first.dtype) if first is not None else "float64"), True
    elif vals.dtype.kind == "U":
        dtype, varlength = "str", False
    else:
        dtype, varlength = str(vals.dtype), False
    out = {"identifier": name, "dtype": dtype, "varlength": varlength}
    for key in ("unit", "name", "description"):
        if declared and declared.get(key) is not None:
            out[key] = declared[key]
    return out


def _new_axes(tables: TrackTables, free):
    """GEFF axes for a session that did not come from a GEFF: t, [z,] y, x."""
    info = tables.session
    t_ax: dict[str, Any] = {"name": free("t"), "type": "time", "unit": "frame"}
    if info.frame_interval and info.time_unit not in (None, "frame"):
        t_ax["scale"] = float(info.frame_interval)
        unit = _ome_time(info.time_unit)
        if unit:
            t_ax["scaled_unit"] = unit
    space_unit = _ome_space(info.space_unit)
    letters = ["x", "y", "z"] if tables.is_3d else ["x", "y"]
    ordered = []
    for k, letter in enumerate(letters):
        ax: dict[str, Any] = {"name": free(letter), "type": "space", "unit": space_unit}
        size = info.pixel_size[k] if k < 3 else None
        if info.space_unit == "pixel" and size:
            ax["scale"] = float(size)
            phys = _ome_space(info.physical_unit)
            if phys:
                ax["scaled_unit"] = phys
        ordered.append(ax)
    return [t_ax, *reversed(ordered)], t_ax, ordered


def _ome_space(unit: str | None) -> str | None:
    if unit is None:
        return None
    from geff_spec._valid_values import validate_space_unit

    u = _OME.get(unit, unit)
    return u if validate_space_unit(u) else None


def _ome_time(unit: str | None) -> str | None:
    if unit is None:
        return None
    from geff_spec._valid_values import validate_time_unit

    return unit if validate_time_unit(unit) else None


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    if len(a) != len(b):
        return False
    if not len(a):
        return True
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def _append_payload_meta(payload: dict, b: MetaBlock) -> None:
    payload.setdefault("metadata", []).append({
        "scope": b.scope, "key": b.key,
        "owners": None if b.owners is None else [int(o) for o in b.owners],
        # numeric arrays go as one typed array (dtype kept); other values one by one
        "values": tsvalues.to_json_text(b.values if b.values.dtype.kind in "biuf" else list(b.values)),
    })


def _num(v):
    if v is None:
        return None
    if isinstance(v, float) and np.isnan(v):
        return None
    return float(v) if isinstance(v, (float, np.floating)) else int(v)
