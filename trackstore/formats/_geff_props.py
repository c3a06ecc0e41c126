"""Metadata blocks <-> GEFF property arrays (values + missing mask), keeping each value's type.

A GEFF property is one typed array per node (or edge) plus an optional ``missing`` mask; a
metadata block is (owners, values) with Python or numpy values. Numbers, bools and strings map
directly; a block of numpy scalars or arrays keeps its dtype (arrays become varlength props);
anything else (lists, dicts, mixed types) is written as typed JSON text and the property is
listed in ``extra.trackstore.props`` so trackstore decodes it again.
"""

from __future__ import annotations

import numpy as np

from .. import values as tsvalues

#: How a property's values were encoded (absent = native GEFF values).
NPSCALAR, JSON = "npscalar", "json"

_INT64 = (-(2**63), 2**63 - 1)


def _classify(vals: np.ndarray) -> tuple[str, np.dtype | None]:
    """The GEFF representation of a block's values: (kind, dtype)."""
    if vals.dtype.kind in "biuf":
        return "native", vals.dtype
    if vals.dtype.kind == "U":
        return "str", None
    items = list(vals)
    if not items:
        return "native", np.dtype(np.float64)
    types = {type(v) for v in items}
    if types <= {str}:
        return "str", None
    if types == {bool}:
        return "native", np.dtype(bool)
    if types == {int} and all(_INT64[0] <= v <= _INT64[1] for v in items):
        return "native", np.dtype(np.int64)
    if types == {float}:
        return "native", np.dtype(np.float64)
    if len(types) == 1:
        t = next(iter(types))
        if issubclass(t, np.generic) and np.dtype(t).kind in "biuf" and len({v.dtype for v in items}) == 1:
            return NPSCALAR, items[0].dtype
        if t is np.ndarray:
            dts = {v.dtype for v in items}
            nds = {v.ndim for v in items}
            if len(dts) == 1 and len(nds) == 1 and next(iter(dts)).kind in "biuf":
                return "array", next(iter(dts))
    return JSON, None


def block_to_prop(vals: np.ndarray, owners: np.ndarray, n: int, declared: dict | None = None,
                  keep_missing: bool = False) -> tuple[dict, str | None]:
    """A GEFF prop dict ``{"values", "missing"}`` of length ``n`` and its encoding (or None).

    Args:
        vals, owners: The block's values and their owner indices.
        n: Number of nodes (or edges).
        declared: The prop's GEFF metadata when the session came from a GEFF (dtype, varlength).
        keep_missing: Write a ``missing`` array even when nothing is missing.
    """
    missing = np.ones(n, bool)
    missing[owners] = False
    kind, dtype = _classify(vals)
    enc = None
    if declared is not None and declared.get("dtype") not in (None, "str", "bytes") and kind == "native":
        dtype = np.dtype(declared["dtype"])
    if kind == "native":
        out = np.zeros(n, dtype)
        out[owners] = np.asarray(vals).astype(dtype, copy=False) if vals.dtype.kind != "O" else \
            np.array(list(vals), dtype=dtype)
    elif kind == NPSCALAR:
        out = np.zeros(n, dtype)
        out[owners] = np.array(list(vals), dtype=dtype)
        enc = NPSCALAR
    elif kind == "str":
        lst = [""] * n
        for o, v in zip(owners.tolist(), vals.tolist()):
            lst[o] = v
        out = np.array(lst, dtype=str) if n else np.array([], dtype="<U1")
    elif kind == "array":
        items = list(vals)
        shapes = {v.shape for v in items}
        if declared is not None and not declared.get("varlength", True) and len(shapes) == 1 and \
                not missing.any():
            out = np.stack(items).astype(np.dtype(declared.get("dtype", dtype)), copy=False)
        else:
            ndim = items[0].ndim
            out = np.empty(n, dtype=object)
            empty = np.zeros((0,) * ndim, dtype)
            for i in range(n):
                out[i] = empty
            for o, v in zip(owners.tolist(), items):
                out[o] = v
    else:
        lst = [""] * n
        for o, v in zip(owners.tolist(), list(vals)):
            lst[o] = tsvalues.to_json_text(v)
        out = np.array(lst, dtype=str) if n else np.array([], dtype="<U1")
        enc = JSON
    miss = missing if (missing.any() or keep_missing) else None
    return {"values": out, "missing": miss}, enc


def prop_to_block(values: np.ndarray, missing: np.ndarray | None, encoding: str | None):
    """Inverse of :func:`block_to_prop`: ``(values, owners)`` of the present entries."""
    n = len(values)
    owners = np.arange(n, dtype=np.int64) if missing is None else np.flatnonzero(~np.asarray(missing, bool))
    vals = values if missing is None else values[owners]
    if vals.ndim > 1:  # a fixed-shape N-D property: one array per owner
        rows = np.empty(len(vals), dtype=object)
        for i in range(len(vals)):
            rows[i] = vals[i].copy()
        return rows, owners
    if encoding == JSON:
        out = np.empty(len(vals), dtype=object)
        for i, s in enumerate(vals.tolist()):
            out[i] = tsvalues.from_json_text(s)
        return out, owners
    if encoding == NPSCALAR:
        out = np.empty(len(vals), dtype=object)
        t = vals.dtype.type
        for i, v in enumerate(vals):
            out[i] = t(v)
        return out, owners
    if vals.dtype.kind in "US" or (vals.dtype.kind == "O" and all(isinstance(v, (str, bytes)) for v in vals)):
        out = np.empty(len(vals), dtype=object)
        out[:] = [v if isinstance(v, bytes) else str(v) for v in vals.tolist()]
        return out, owners
    return vals, owners
