"""Typed values: every metadata value keeps its exact type through the database.

A value is stored in one row of ``metadata`` as a type tag (``vtype``) plus one typed column, so
SQL can aggregate numbers directly (``avg(v_float)``) and an exporter gets back exactly what came
in: ``28`` stays an int, ``28.0`` a float, ``np.float64(0.5)`` a numpy scalar, a list a list,
NaN a NaN.

==========  ===================  ======================================================
vtype       column               Python value
==========  ===================  ======================================================
null        (none)               ``None``
bool        v_bool               ``bool``
int         v_int                ``int`` (within int64; larger ints go to ``json``)
float       v_float              ``float`` (NaN and infinities kept)
str         v_str                ``str``
np:<dtype>  v_int/v_float/v_bool numpy scalar of that dtype (``np:<f8`` is np.float64)
json        v_json               anything else: lists, dicts (key order kept), tuples,
                                 numpy arrays (bit-exact), bytes, non-finite floats inside
==========  ===================  ======================================================

``json`` text is plain JSON whenever the value is plain JSON (a list of numbers, a dict of
strings), so SQL JSON functions work on it; other values are tagged objects ``{"__t": ...}``.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np

__all__ = ["encode", "decode", "encode_column", "to_json_text", "from_json_text", "VTYPES"]

VTYPES = ("null", "bool", "int", "float", "str", "json")  # plus "np:<dtype.str>"

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

#: ``v_json`` of a ``float`` value that is -0.0. DuckDB's storage merges -0.0 into 0.0 when it
#: compresses a segment as constant or run-length (they compare equal), so the sign is also
#: written here (trackstore.store does the same for position columns).
NEGATIVE_ZERO = "-0.0"
_TAG = "__t"


def _enc(v: Any) -> Any:
    """Turn a Python/numpy value into a JSON-able tree that decodes to the same value and type."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, np.generic):  # before int/float: np.float64 subclasses float
        if isinstance(v, (np.str_, np.bytes_, np.void)) or v.dtype.kind in "OMm":
            return {_TAG: "npobj", "dtype": v.dtype.str, "v": _enc(v.item())}
        return {_TAG: "np", "dtype": v.dtype.str, "b64": _b64(np.asarray(v).tobytes())}
    if isinstance(v, int):
        return v if _INT64_MIN <= v <= _INT64_MAX else {_TAG: "int", "v": str(v)}
    if isinstance(v, float):
        return v if math.isfinite(v) else {_TAG: "float", "v": repr(v)}
    if isinstance(v, list):
        return [_enc(x) for x in v]
    if isinstance(v, tuple):
        return {_TAG: "tuple", "v": [_enc(x) for x in v]}
    if isinstance(v, dict):
        if all(isinstance(k, str) for k in v) and _TAG not in v:
            return {k: _enc(x) for k, x in v.items()}
        return {_TAG: "dict", "items": [[_enc(k), _enc(x)] for k, x in v.items()]}
    if isinstance(v, np.ndarray):
        out: dict[str, Any] = {_TAG: "nd", "dtype": v.dtype.str, "shape": list(v.shape)}
        if v.dtype.metadata and v.dtype.metadata.get("vlen") in (str, bytes):
            out["vlen"] = v.dtype.metadata["vlen"].__name__  # h5py string arrays carry this
        if v.dtype.kind in "biufc":
            out["b64"] = _b64(np.ascontiguousarray(v).tobytes())
            out["fortran"] = bool(v.flags.f_contiguous and not v.flags.c_contiguous)
        else:
            out["items"] = [_enc(x) for x in v.ravel(order="C").tolist()] if v.dtype.kind != "O" \
                else [_enc(x) for x in v.ravel(order="C")]
        return out
    if isinstance(v, (bytes, bytearray)):
        return {_TAG: "bytes", "b64": _b64(bytes(v))}
    raise TypeError(f"cannot store a value of type {type(v).__name__}")


def _dec(t: Any) -> Any:
    """Inverse of :func:`_enc`."""
    if isinstance(t, list):
        return [_dec(x) for x in t]
    if not isinstance(t, dict):
        return t
    tag = t.get(_TAG)
    if tag is None:
        return {k: _dec(x) for k, x in t.items()}
    if tag == "float":
        return float(t["v"])
    if tag == "int":
        return int(t["v"])
    if tag == "tuple":
        return tuple(_dec(x) for x in t["v"])
    if tag == "dict":
        return {_dec(k): _dec(x) for k, x in t["items"]}
    if tag == "np":
        return np.frombuffer(base64.b64decode(t["b64"]), dtype=np.dtype(t["dtype"]))[0]
    if tag == "npobj":
        return np.array(_dec(t["v"]), dtype=np.dtype(t["dtype"]))[()]
    if tag == "bytes":
        return base64.b64decode(t["b64"])
    if tag == "nd":
        dtype = np.dtype(t["dtype"])
        if "vlen" in t:
            dtype = np.dtype(dtype, metadata={"vlen": {"str": str, "bytes": bytes}[t["vlen"]]})
        shape = tuple(t["shape"])
        if "b64" in t:
            a = np.frombuffer(base64.b64decode(t["b64"]), dtype=dtype).copy()
            a = a.reshape(shape, order="F" if t.get("fortran") else "C")
            return a
        items = [_dec(x) for x in t["items"]]
        a = np.empty(len(items), dtype=dtype)
        for i, x in enumerate(items):  # object arrays: assign one by one so lists stay objects
            a[i] = x
        return a.reshape(shape)
    raise ValueError(f"unknown value tag {tag!r}")


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def to_json_text(v: Any) -> str:
    """Exact JSON text of any storable value (see module doc)."""
    return json.dumps(_enc(v), ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def from_json_text(s: str) -> Any:
    """Inverse of :func:`to_json_text`."""
    return _dec(json.loads(s))


def encode(v: Any) -> tuple[str, int | None, float | None, bool | None, str | None, str | None]:
    """Encode one value as ``(vtype, v_int, v_float, v_bool, v_str, v_json)``.

    Raises:
        TypeError: The value has a type that cannot be stored (e.g. an arbitrary object).
    """
    if v is None:
        return ("null", None, None, None, None, None)
    if isinstance(v, np.generic) and v.dtype.kind in "biuf" and v.dtype.str not in ("<u8", ">u8"):
        vt = "np:" + v.dtype.str
        if v.dtype.kind == "b":
            return (vt, None, None, bool(v), None, None)
        if v.dtype.kind in "iu":
            return (vt, int(v), None, None, None, None)
        return (vt, None, float(v), None, None, NEGATIVE_ZERO if v == 0 and np.signbit(v) else None)
    if isinstance(v, bool):
        return ("bool", None, None, v, None, None)
    if isinstance(v, int) and not isinstance(v, np.generic) and _INT64_MIN <= v <= _INT64_MAX:
        return ("int", v, None, None, None, None)
    if isinstance(v, float) and not isinstance(v, np.generic):
        return ("float", None, v, None, None, NEGATIVE_ZERO if v == 0 and math.copysign(1, v) < 0 else None)
    if isinstance(v, str) and not isinstance(v, np.generic):
        return ("str", None, None, None, v, None)
    return ("json", None, None, None, None, to_json_text(v))


def decode(vtype: str, v_int, v_float, v_bool, v_str, v_json) -> Any:
    """Inverse of :func:`encode`."""
    if vtype == "null":
        return None
    if vtype == "bool":
        return bool(v_bool)
    if vtype == "int":
        return int(v_int)
    if vtype == "float":
        return float("nan") if v_float is None else _signed_zero(float(v_float), v_json)
    if vtype == "str":
        return v_str
    if vtype == "json":
        return from_json_text(v_json)
    if vtype.startswith("np:"):
        dt = np.dtype(vtype[3:])
        if dt.kind == "b":
            return dt.type(bool(v_bool))
        if dt.kind in "iu":
            return dt.type(int(v_int))
        return dt.type(float("nan") if v_float is None else _signed_zero(float(v_float), v_json))
    raise ValueError(f"unknown vtype {vtype!r}")


def _signed_zero(v: float, mark) -> float:
    """A stored zero's sign comes from the NEGATIVE_ZERO mark, not from the stored double."""
    if v == 0:
        return -0.0 if mark == NEGATIVE_ZERO else 0.0
    return v


def encode_column(values) -> dict[str, Any]:
    """Encode a column of values into typed column arrays, fast for homogeneous numpy input.

    Args:
        values: A numpy array. float/int/bool dtypes are encoded in bulk as ``float``/``int``/
            ``bool`` (Python-type semantics); a ``U``/``O`` array is encoded element by element.

    Returns:
        A dict with ``vtype`` (list or single str) and the five value columns as numpy/list data.
    """
    a = np.asarray(values) if not isinstance(values, np.ndarray) else values
    n = len(a)
    if a.dtype.kind == "f":
        out = {"vtype": "float", "v_float": a.astype(np.float64, copy=False)}
        neg = (a == 0) & np.signbit(a)
        if neg.any():  # see NEGATIVE_ZERO
            out["v_json"] = np.where(neg, NEGATIVE_ZERO, None).astype(object)
        return out
    if a.dtype.kind in "iu" and (a.dtype.kind == "i" or a.dtype.itemsize < 8):
        return {"vtype": "int", "v_int": a.astype(np.int64, copy=False)}
    if a.dtype.kind == "b":
        return {"vtype": "bool", "v_bool": a}
    if a.dtype.kind == "U":
        return {"vtype": "str", "v_str": a.astype(object)}
    if a.dtype.kind == "O" and n and set(map(type, a)) == {str}:  # text labels (cell types, names): in bulk
        return {"vtype": "str", "v_str": a}
    cols: dict[str, list] = {k: [None] * n for k in ("vtype", "v_int", "v_float", "v_bool", "v_str", "v_json")}
    for i, v in enumerate(a.tolist() if a.dtype.kind != "O" else a):
        for name, x in zip(("vtype", "v_int", "v_float", "v_bool", "v_str", "v_json"), encode(v)):
            cols[name][i] = x
    return cols
