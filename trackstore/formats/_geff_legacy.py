"""Best-effort reading of pre-1.0 GEFF groups (0.1.x ``nodes/attrs`` and 0.2.x ``nodes/props``).

Those files predate the 1.0 metadata (no ``node_props_metadata``, ``axis_names`` instead of
``axes``), and some cannot be opened by zarr-python 3 at all (geff-java writes
``"fill_value": ""``), so zarr v2 arrays are decoded here straight from their ``.zarray`` and
chunk files with numcodecs. Whatever is not understood is named in the returned notes.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from ..errors import ParseError


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ParseError(f"cannot read zarr metadata: {e}", path=path) from e


def read_v2_array(folder: Path) -> np.ndarray:
    """A whole zarr v2 array from its folder (``.zarray`` + chunk files)."""
    import numcodecs

    meta = read_json(folder / ".zarray")
    shape = tuple(meta["shape"])
    chunks = tuple(meta["chunks"])
    dtype = np.dtype(meta["dtype"]) if not isinstance(meta["dtype"], list) else np.dtype(
        [tuple(f) for f in meta["dtype"]])
    order = meta.get("order", "C")
    sep = meta.get("dimension_separator", ".")
    compressor = numcodecs.get_codec(meta["compressor"]) if meta.get("compressor") else None
    filters = [numcodecs.get_codec(f) for f in (meta.get("filters") or [])]
    fill = meta.get("fill_value")
    if fill in ("", None) or dtype.kind == "O":
        fill = 0 if dtype.kind != "O" else None
    out = np.full(shape, fill, dtype=dtype) if dtype.kind != "O" else np.empty(shape, dtype=object)
    grid = [range(-(-s // c)) for s, c in zip(shape, chunks)] if shape else [range(1)]
    for idx in itertools.product(*grid):
        name = sep.join(str(i) for i in idx) if shape else "0"
        f = folder / name
        if not f.exists():
            continue
        buf = f.read_bytes()
        if compressor is not None:
            buf = compressor.decode(buf)
        for flt in reversed(filters):
            buf = flt.decode(buf)
        if isinstance(buf, np.ndarray) and buf.dtype.kind == "O":
            arr = buf
        else:
            raw = bytes(buf)
            n_elem = int(np.prod(chunks))
            if len(raw) != n_elem * dtype.itemsize and n_elem and len(raw) % (n_elem * 4) == 0:
                # geff-java 0.1 wrote string ids ("1_0") under an integer dtype: the chunk is UTF-32
                dtype = np.dtype(f"<U{len(raw) // (n_elem * 4)}")
                if out.dtype != dtype:
                    out = np.full(shape, "", dtype=dtype)
            arr = np.frombuffer(raw, dtype=dtype)
        arr = np.asarray(arr).reshape(chunks, order=order)
        sl = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, chunks, shape))
        out[sl] = arr[tuple(slice(0, x.stop - x.start) for x in sl)]
    return out


def read_legacy(root: Path, attrs: dict) -> dict:
    """Node ids, edge ids, props and notes of a pre-1.0 GEFF group.

    Returns:
        ``{"version", "directed", "node_ids", "edge_ids", "node_props", "edge_props",
        "axis_names", "axis_units", "position_prop", "leftover_attrs", "notes"}``; props map
        name -> ``{"values", "missing"}``.
    """
    geff = attrs.get("geff") if isinstance(attrs.get("geff"), dict) else attrs
    version = str(geff.get("geff_version", "unknown"))
    notes: list[str] = []
    node_ids = _array(root / "nodes" / "ids", "nodes/ids")
    edge_ids = _array(root / "edges" / "ids", "edges/ids") if (root / "edges" / "ids").exists() \
        else np.empty((0, 2), node_ids.dtype)
    out = {"version": version, "directed": bool(geff.get("directed", True)), "node_ids": node_ids,
           "edge_ids": edge_ids.reshape(-1, 2)}
    for what in ("nodes", "edges"):
        props = {}
        for sub in ("props", "attrs"):
            base = root / what / sub
            if not base.is_dir():
                continue
            for p in sorted(base.iterdir()):
                if not p.is_dir() or not (p / "values" / ".zarray").exists():
                    continue
                try:
                    vals = read_v2_array(p / "values")
                    miss = read_v2_array(p / "missing").astype(bool) if (p / "missing" / ".zarray").exists() \
                        else None
                except Exception as e:  # a codec or layout we cannot decode: say so, keep going
                    notes.append(f"{what} property {p.name!r} could not be decoded ({e})")
                    continue
                props[p.name] = {"values": vals, "missing": miss}
        out[f"{what[:-1]}_props"] = props
    axis_names = geff.get("axis_names")
    if axis_names is None and isinstance(geff.get("axes"), list):
        axis_names = [a.get("name") for a in geff["axes"] if isinstance(a, dict)]
    out["axis_names"] = list(axis_names or [])
    out["axis_units"] = geff.get("axis_units")
    out["position_prop"] = geff.get("position_attr") or geff.get("position_prop")
    known = {"geff_version", "directed", "axis_names", "axis_units", "position_attr", "position_prop", "axes"}
    out["leftover_attrs"] = {k: v for k, v in geff.items() if k not in known}
    out["notes"] = notes
    return out


def _array(folder: Path, what: str) -> np.ndarray:
    if not (folder / ".zarray").exists():
        raise ParseError(f"pre-1.0 GEFF without {what}", path=folder.parent.parent)
    return read_v2_array(folder)
