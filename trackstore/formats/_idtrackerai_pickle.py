"""A small pickle emitter for idtracker.ai trajectory dicts (``.npy`` and ``.pickle`` output).

``np.save``/``pickle.dump`` always write the running numpy's module paths (``numpy._core`` under
numpy 2) and copy every array into a bytes object first. This emitter writes the protocol and
numpy module prefix the source file used (so a numpy-1.x file is still readable by numpy 1.x
after a round trip) and streams array data straight from the array's buffer.

Only the types idtracker.ai dicts hold are supported: None, bool, int, float, str, bytes, tuple,
list, dict, numpy arrays (numeric or object), numpy scalars and dtypes (with h5py's ``vlen``
metadata). No memo is written: the output is a valid pickle, not a byte copy of numpy's.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..safe_pickle import _np_core

_CORE = _np_core()

#: npy header of a 0-d object array (idtracker.ai's dict), 64-byte aligned, format 1.0.
DEFAULT_OBJECT_HEADER = "{'descr': '|O', 'fortran_order': False, 'shape': (), }"


def npy_header_text(descr: str, fortran: bool, shape: tuple[int, ...], align: int = 64) -> str:
    """The header dict text of a ``.npy`` v1.0 file, padded like numpy does."""
    text = f"{{'descr': {descr!r}, 'fortran_order': {fortran!r}, 'shape': {tuple(shape)!r}, }}"
    total = 10 + len(text) + 1
    pad = (-total) % align
    return text + " " * pad + "\n"


def npy_prefix(header: str) -> bytes:
    """Magic, version and length bytes for an exact header text (v1 if it fits, else v2)."""
    raw = header.encode("latin1")
    if len(raw) < 65536:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(raw)) + raw
    return b"\x93NUMPY\x02\x00" + struct.pack("<I", len(raw)) + raw


class PickleEmitter:
    """Write one object as a pickle of the given protocol (2, 3 or 4) to a binary file."""

    def __init__(self, f: BinaryIO, *, protocol: int = 4, numpy_prefix: str = "numpy._core"):
        if protocol not in (2, 3, 4, 5):
            raise ValueError(f"unsupported pickle protocol {protocol}")
        self.f = f
        self.protocol = min(protocol, 4) if protocol != 5 else 5
        self.prefix = numpy_prefix
        self.names = {
            id(_CORE.multiarray._reconstruct): (f"{numpy_prefix}.multiarray", "_reconstruct"),
            id(_CORE.multiarray.scalar): (f"{numpy_prefix}.multiarray", "scalar"),
            id(np.dtype): ("numpy", "dtype"),
            id(np.ndarray): ("numpy", "ndarray"),
            id(str): ("builtins", "str"),
            id(bytes): ("builtins", "bytes"),
        }

    def dump(self, obj: Any) -> None:
        self.f.write(b"\x80" + bytes([min(self.protocol, 5)]))
        self.save(obj)
        self.f.write(b".")

    # -------------------------------------------------------------- primitives
    def save(self, obj: Any) -> None:  # noqa: C901 - one dispatch on type
        w = self.f.write
        if obj is None:
            w(b"N")
        elif obj is True:
            w(b"\x88")
        elif obj is False:
            w(b"\x89")
        elif isinstance(obj, np.ndarray):
            self.save_array(obj)
        elif isinstance(obj, np.generic):
            func, args = obj.__reduce__()[:2]
            self.save_reduce(func, args)
        elif isinstance(obj, np.dtype):
            func, args, state = obj.__reduce__()
            self.save_reduce(func, args, state)
        elif type(obj) is int:
            if -(2**31) <= obj < 2**31:
                w(b"J" + struct.pack("<i", obj))
            else:
                n = (obj.bit_length() + 8) // 8
                data = obj.to_bytes(n, "little", signed=True)
                w(b"\x8a" + bytes([n]) + data if n < 256 else b"\x8b" + struct.pack("<i", n) + data)
        elif type(obj) is float:
            w(b"G" + struct.pack(">d", obj))
        elif type(obj) is str:
            raw = obj.encode("utf-8", "surrogatepass")
            if self.protocol >= 4 and len(raw) < 256:
                w(b"\x8c" + bytes([len(raw)]) + raw)
            elif len(raw) < 2**32:
                w(b"X" + struct.pack("<I", len(raw)) + raw)
            else:
                w(b"\x8d" + struct.pack("<Q", len(raw)) + raw)
        elif isinstance(obj, (bytes, bytearray, memoryview)):
            self.save_bytes(obj)
        elif type(obj) is tuple:
            if not obj:
                w(b")")
            elif len(obj) <= 3:
                for x in obj:
                    self.save(x)
                w(b"\x85\x86\x87"[len(obj) - 1: len(obj)])
            else:
                w(b"(")
                for x in obj:
                    self.save(x)
                w(b"t")
        elif type(obj) is list:
            w(b"]")
            if obj:
                w(b"(")
                for x in obj:
                    self.save(x)
                w(b"e")
        elif type(obj) is dict:
            w(b"}")
            if obj:
                w(b"(")
                for k, v in obj.items():
                    self.save(k)
                    self.save(v)
                w(b"u")
        elif isinstance(obj, type) and id(obj) in self.names:
            self.save_global(obj)
        else:
            raise TypeError(f"cannot pickle a value of type {type(obj).__name__}")

    def save_bytes(self, data) -> None:
        mv = memoryview(data).cast("B")
        n = len(mv)
        w = self.f.write
        if self.protocol < 3:  # protocol 2 has no bytes opcode: _codecs.encode(latin-1 text)
            w(b"c_codecs\nencode\n")
            self.save(bytes(mv).decode("latin1"))
            self.save("latin1")
            w(b"\x86R")
            return
        if n < 256:
            w(b"C" + bytes([n]))
        elif n < 2**32:
            w(b"B" + struct.pack("<I", n))
        else:
            w(b"\x8e" + struct.pack("<Q", n))
        w(mv)

    def save_global(self, obj) -> None:
        module, name = self.names[id(obj)]
        self.f.write(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def save_reduce(self, func, args, state=None) -> None:
        self.save_global(func)
        self.save(args)
        self.f.write(b"R")
        if state is not None:
            self.save(state)
            self.f.write(b"b")

    def save_array(self, a: np.ndarray) -> None:
        self.save_global(_CORE.multiarray._reconstruct)
        self.save((np.ndarray, (0,), b"b"))
        self.f.write(b"R")
        fortran = bool(a.flags.f_contiguous and not a.flags.c_contiguous)
        w = self.f.write
        w(b"(")  # state: (1, shape, dtype, is_fortran, data)
        self.save(1)
        self.save(tuple(int(s) for s in a.shape))
        self.save(a.dtype)
        self.save(fortran)
        if a.dtype.hasobject:
            self.save(list(a.ravel(order="F" if fortran else "C")))
        else:
            data = a if (a.flags.f_contiguous if fortran else a.flags.c_contiguous) else \
                (np.asfortranarray(a) if fortran else np.ascontiguousarray(a))
            self.save_bytes(data.reshape(-1, order="F" if fortran else "C").view(np.uint8))
        w(b"tb")


def write_pickle(path: Path, obj: Any, *, protocol: int = 4, numpy_prefix: str = "numpy._core") -> None:
    """Write ``obj`` as a pickle file."""
    with open(path, "wb") as f:
        PickleEmitter(f, protocol=protocol, numpy_prefix=numpy_prefix).dump(obj)


def write_npy_object(path: Path, obj: Any, *, header: str | None = None, protocol: int = 3,
                     numpy_prefix: str = "numpy._core") -> None:
    """Write ``obj`` wrapped in a 0-d object array, as ``np.save`` does with a dict."""
    header = header or npy_header_text("|O", False, ())
    wrapper = np.empty((), dtype=object)
    wrapper[()] = obj
    with open(path, "wb") as f:
        f.write(npy_prefix(header))
        PickleEmitter(f, protocol=protocol, numpy_prefix=numpy_prefix).dump(wrapper)


def write_npy_array(path: Path, a: np.ndarray, *, header: str | None = None) -> None:
    """Write a numeric array as a ``.npy`` file (the exact header text when given)."""
    fortran = bool(a.flags.f_contiguous and not a.flags.c_contiguous)
    header = header or npy_header_text(a.dtype.str, fortran, a.shape)
    with open(path, "wb") as f:
        f.write(npy_prefix(header))
        data = a if (a.flags.f_contiguous if fortran else a.flags.c_contiguous) else np.ascontiguousarray(a)
        f.write(memoryview(data.reshape(-1, order="F" if fortran else "C").view(np.uint8)))
