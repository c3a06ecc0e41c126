"""idtracker.ai ``trajectories.h5``: read it into the trajectories dict, and write it back alike.

The dict is what idtracker.ai's own loader gives (root attributes first, then groups and datasets,
in h5py's order; a group becomes a dict). The *tree* records the HDF5 layout (attribute string
types, dataset chunks and compression) so that writing reproduces what h5py reads back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParseError

_ARRAY_KEYS = ("trajectories", "id_probabilities")


def _h5py():
    import h5py  # a core dependency; imported lazily to keep `import trackstore` light
    return h5py


def _attr_spec(attrs, name: str) -> dict:
    h5py = _h5py()
    aid = attrs.get_id(name)
    dt = aid.dtype
    sinfo = h5py.check_string_dtype(dt)
    return {"name": name, "dtype": dt.str, "shape": list(aid.shape) if aid.shape is not None else None,
            "string": None if sinfo is None else [sinfo.encoding, sinfo.length]}


def _read_node(node, path: Path, where: str) -> tuple[dict, dict]:
    h5py = _h5py()
    data: dict[str, Any] = {}
    tree: dict[str, Any] = {"attrs": [], "members": []}
    for name in node.attrs:
        tree["attrs"].append(_attr_spec(node.attrs, name))
        data[name] = node.attrs[name]
    for name in node:
        obj = node[name]
        loc = f"{where}{name}"
        if isinstance(obj, h5py.Group):
            sub, subtree = _read_node(obj, path, loc + "/")
            data[name] = sub
            tree["members"].append({"name": name, "type": "group", **subtree})
        elif isinstance(obj, h5py.Dataset):
            try:
                value = obj[()]
            except (OSError, ValueError, TypeError) as e:
                raise ParseError(f"cannot read dataset {loc!r}: {e}", path=path) from None
            data[name] = value
            spec = {"name": name, "type": "dataset", "dtype": obj.dtype.str, "shape": list(obj.shape),
                    "chunks": list(obj.chunks) if obj.chunks else None, "compression": obj.compression,
                    "compression_opts": obj.compression_opts, "shuffle": bool(obj.shuffle),
                    "fletcher32": bool(obj.fletcher32),
                    "maxshape": [m if m is not None else -1 for m in obj.maxshape] if obj.maxshape else None,
                    "attrs": [], "attr_values": {}}
            for aname in obj.attrs:
                spec["attrs"].append(_attr_spec(obj.attrs, aname))
                spec["attr_values"][aname] = obj.attrs[aname]
            tree["members"].append(spec)
    return data, tree


def read_h5(path: Path) -> tuple[dict, dict]:
    """``(data, tree)`` of an idtracker.ai h5 file.

    Raises:
        ParseError: Not readable as HDF5, or no ``trajectories`` dataset.
    """
    h5py = _h5py()
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ParseError(f"not a readable HDF5 file: {e}", path=path) from None
    with f:
        if "trajectories" not in f or not isinstance(f["trajectories"], h5py.Dataset):
            raise ParseError("no 'trajectories' dataset at the root of the HDF5 file (dataset /trajectories)",
                             path=path, hint="idtracker.ai h5 files hold /trajectories (frames x animals x 2)")
        return _read_node(f, path, "/")


def _write_attr(attrs, spec: dict, value) -> None:
    h5py = _h5py()
    shape = tuple(spec["shape"]) if spec.get("shape") is not None else None
    if spec.get("string"):
        enc, length = spec["string"]
        dtype = h5py.string_dtype(enc or "utf-8", length)
        if isinstance(value, np.ndarray):
            value = value.astype(object) if value.dtype.kind != "O" else value
        attrs.create(spec["name"], data=value, shape=shape, dtype=dtype)
    else:
        attrs.create(spec["name"], data=value, shape=shape, dtype=np.dtype(spec["dtype"]))


def _write_node(node, tree: dict, data: dict) -> None:
    h5py = _h5py()
    for spec in tree["attrs"]:
        _write_attr(node.attrs, spec, data[spec["name"]])
    for m in tree["members"]:
        name = m["name"]
        if m["type"] == "group":
            _write_node(node.create_group(name), m, data.get(name) or {})
            continue
        value = np.asarray(data[name])
        kw: dict[str, Any] = {}
        if m.get("chunks"):
            kw["chunks"] = tuple(m["chunks"])
        if m.get("compression"):
            kw["compression"] = m["compression"]
            kw["compression_opts"] = m.get("compression_opts")
        if m.get("shuffle"):
            kw["shuffle"] = True
        if m.get("fletcher32"):
            kw["fletcher32"] = True
        if m.get("maxshape") and kw.get("chunks"):
            kw["maxshape"] = tuple(None if s < 0 else s for s in m["maxshape"])
        dt = np.dtype(m["dtype"])
        if dt.kind == "O":
            sinfo = h5py.check_string_dtype(value.dtype)
            dt = h5py.string_dtype(sinfo.encoding if sinfo else "utf-8")
        ds = node.create_dataset(name, data=value, dtype=dt, **kw)
        for aspec in m.get("attrs", []):
            _write_attr(ds.attrs, aspec, m["attr_values"][aspec["name"]])


def write_h5(path: Path, tree: dict, data: dict) -> None:
    """Write ``data`` (the dict, arrays included) into a new h5 file following ``tree``."""
    h5py = _h5py()
    with h5py.File(path, "w") as f:
        _write_node(f, tree, data)


def default_tree(data: dict) -> tuple[dict, dict]:
    """The tree idtracker.ai 6 writes for a dict, and the dict as it will read back (keys, types).

    Follows ``_save_trajectories_into_h5``: None is skipped; int, float, str and lists of str
    become attributes; dicts become groups of datasets; arrays become gzip datasets; ``length_unit``
    is an attribute (-1 for None).
    """
    attrs: list[dict] = []
    members: list[dict] = []
    out_attrs: dict[str, Any] = {}
    out_members: dict[str, Any] = {}
    for key, value in data.items():
        if key == "length_unit" and value is None:
            value = -1
        if value is None:
            continue
        if isinstance(value, (bool, np.bool_)):
            value = np.bool_(value)
        if isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
            arr = value if isinstance(value, str) else np.array(value, dtype=object)
            attrs.append({"name": key, "dtype": "|O", "shape": None if isinstance(value, str) else [len(value)],
                          "string": ["utf-8", None]})
            out_attrs[key] = arr
        elif isinstance(value, (int, float, np.generic)) and not isinstance(value, np.ndarray):
            v = np.asarray(value)[()]
            attrs.append({"name": key, "dtype": v.dtype.str, "shape": [], "string": None})
            out_attrs[key] = v
        elif isinstance(value, dict):
            g_members = []
            g_data = {}
            for k, v in value.items():
                if v is None:
                    continue
                a = np.asarray(v)
                if a.dtype.kind in "OU":
                    a = a.astype(object)
                g_members.append({"name": k, "type": "dataset", "dtype": a.dtype.str, "shape": list(a.shape),
                                  "chunks": None, "compression": None, "compression_opts": None,
                                  "shuffle": False, "fletcher32": False, "maxshape": None,
                                  "attrs": [], "attr_values": {}})
                g_data[k] = a
            members.append({"name": key, "type": "group", "attrs": [], "members": g_members})
            out_members[key] = g_data
        elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            # h5py picks the chunk shape itself when compressing (as idtracker.ai's writer lets it)
            members.append({"name": key, "type": "dataset", "dtype": value.dtype.str, "shape": list(value.shape),
                            "chunks": None, "compression": "gzip" if value.size else None,
                            "compression_opts": 4 if value.size else None, "shuffle": False, "fletcher32": False,
                            "maxshape": None, "attrs": [], "attr_values": {}})
            out_members[key] = value
        elif isinstance(value, (list, tuple, np.ndarray)):
            a = np.asarray(value)
            if a.dtype.kind in "OU":
                a = a.astype(object)
            members.append({"name": key, "type": "dataset", "dtype": a.dtype.str, "shape": list(a.shape),
                            "chunks": None, "compression": None, "compression_opts": None, "shuffle": False,
                            "fletcher32": False, "maxshape": None, "attrs": [], "attr_values": {}})
            out_members[key] = a
    tree = {"attrs": sorted(attrs, key=lambda s: s["name"]), "members": sorted(members, key=lambda s: s["name"])}
    back = {s["name"]: out_attrs[s["name"]] for s in tree["attrs"]}
    back.update({m["name"]: out_members[m["name"]] for m in tree["members"]})
    return tree, back
