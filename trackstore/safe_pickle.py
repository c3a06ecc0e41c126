"""Safe loading of ``.npy`` and pickle files that hold numpy data (idtracker.ai trajectories).

``np.load(allow_pickle=True)`` and ``pickle.load`` run whatever code a file names. This module
never does: the ``.npy`` header is parsed here, numeric arrays are read as raw bytes, and pickles
are read by :class:`RestrictedUnpickler`, whose ``find_class`` hands out only a short whitelist
of numpy constructors (spec ``idtrackerai.md`` §8). Every callable a pickle can reach (GLOBAL,
STACK_GLOBAL, INST, OBJ, EXT) goes through ``find_class``; persistent ids are refused. A file that
asks for anything else raises :class:`~trackstore.errors.UnsafeInputError` naming the file and
the global, before any of its code can run.

Memory is capped: the file size, every array an ``_reconstruct``/``_frombuffer`` call would
allocate, and every read the unpickler asks for (a short file cannot make it allocate gigabytes).

Example:
    >>> from trackstore.safe_pickle import load_npy  # doctest: +SKIP
    >>> data, info = load_npy("trajectories.npy")  # doctest: +SKIP
    >>> info.protocol, sorted(data)[:2]  # doctest: +SKIP
    (3, ['body_length', 'frames_per_second'])
"""

from __future__ import annotations

import ast
import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ParseError, UnsafeInputError

__all__ = ["RestrictedUnpickler", "NpyInfo", "load_npy", "load_pickle", "read_npy_header", "MAX_BYTES"]

#: Default cap on a file's size and on any one array's bytes (64 GiB; lower it per call).
MAX_BYTES = 64 * 2**30

_MAGIC = b"\x93NUMPY"


def _np_core():
    """numpy's private core package (``numpy._core`` in numpy 2, ``numpy.core`` in numpy 1)."""
    try:
        from numpy import _core  # type: ignore[attr-defined]
        return _core
    except ImportError:  # pragma: no cover - numpy < 1.26
        from numpy import core
        return core


@dataclass
class NpyInfo:
    """What :func:`load_npy` / :func:`load_pickle` learned about a file, to write it back alike.

    Attributes:
        header: The raw ``.npy`` header text (padding and newline included); None for a pickle.
        version: ``.npy`` format version, e.g. ``(1, 0)``.
        descr: dtype descriptor from the header (``"|O"`` for pickled contents).
        shape: Array shape from the header.
        fortran_order: Header flag.
        protocol: Pickle protocol of the payload (None for a raw array).
        numpy_prefix: ``"numpy.core"`` or ``"numpy._core"``, as the pickle names numpy's modules.
        globals: Every global the pickle asked for, in first-use order (``"module.name"``).
    """

    header: str | None = None
    version: tuple[int, int] | None = None
    descr: Any = None
    shape: tuple[int, ...] | None = None
    fortran_order: bool = False
    protocol: int | None = None
    numpy_prefix: str | None = None
    globals: list[str] = field(default_factory=list)


class _CappedReader(io.RawIOBase):
    """A file wrapper whose reads never ask for more than the bytes left in the file."""

    def __init__(self, f, size: int):
        super().__init__()
        self._f = f
        self._size = size

    def readable(self) -> bool:
        return True

    def _left(self) -> int:
        return max(0, self._size - self._f.tell())

    def read(self, n: int = -1) -> bytes:
        left = self._left()
        return self._f.read(left if n is None or n < 0 or n > left else n)

    def readinto(self, b) -> int:
        mv = memoryview(b)
        left = self._left()
        if len(mv) > left:
            mv = mv[:left]
        return self._f.readinto(mv)

    def readline(self, n: int = -1) -> bytes:
        left = self._left()
        return self._f.readline(left if n is None or n < 0 or n > left else n)

    def peek(self, n: int = 0) -> bytes:
        return self._f.peek(n) if hasattr(self._f, "peek") else b""

    def tell(self) -> int:
        return self._f.tell()


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can build numpy arrays, scalars, dtypes and plain containers only.

    Args:
        file: Binary file object positioned at the pickle.
        path: The file's name, used in error messages.
        max_bytes: Largest array (in bytes) any constructor may allocate.
        stubs: Optional ``{(module, name): class}`` of inert classes to hand out for other
            globals (e.g. idtracker.ai's ``Blob``); they must be plain classes without methods.
        buffers: The out-of-band buffers of a protocol-5 pickle (see :class:`pickle.Unpickler`).

    Raises (from :meth:`load`):
        UnsafeInputError: The pickle asks for a global outside the whitelist, or a persistent id.
    """

    def __init__(self, file, *, path: str | Path = "<pickle>", max_bytes: int = MAX_BYTES,
                 stubs: dict[tuple[str, str], type] | None = None, buffers=None):
        super().__init__(file, encoding="latin1", buffers=buffers)
        self.path = str(path)
        self.max_bytes = max_bytes
        self.stubs = dict(stubs or {})
        self.seen: list[str] = []
        self.numpy_prefix: str | None = None
        core = _np_core()
        reconstruct = self._checked_reconstruct(core.multiarray._reconstruct)
        frombuffer = self._checked_frombuffer(core.numeric._frombuffer)
        allowed: dict[tuple[str, str], Any] = {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("_codecs", "encode"): _latin1_encode,
            ("builtins", "str"): str,
            ("builtins", "bytes"): bytes,
            ("__builtin__", "str"): str,  # protocol-2 names (fix_imports maps them too)
            ("__builtin__", "unicode"): str,
            ("__builtin__", "bytes"): bytes,
        }
        for prefix in ("numpy.core", "numpy._core"):
            allowed[(f"{prefix}.multiarray", "_reconstruct")] = reconstruct
            allowed[(f"{prefix}.multiarray", "scalar")] = core.multiarray.scalar
            allowed[(f"{prefix}.numeric", "_frombuffer")] = frombuffer
        self._allowed = allowed

    def find_class(self, module: str, name: str):
        """Return a whitelisted callable; refuse everything else before it is imported."""
        full = f"{module}.{name}"
        if full not in self.seen:
            self.seen.append(full)
        if module.startswith("numpy._core") and self.numpy_prefix is None:
            self.numpy_prefix = "numpy._core"
        elif module.startswith("numpy.core") and self.numpy_prefix is None:
            self.numpy_prefix = "numpy.core"
        obj = self._allowed.get((module, name))
        if obj is None:
            obj = self.stubs.get((module, name))
        if obj is None:
            raise UnsafeInputError(
                f"refused to load the pickled global {full!r} (only numpy arrays, scalars and "
                "plain Python containers are allowed)",
                path=self.path, hint="this file may be malicious; it was not executed",
            )
        return obj

    def persistent_load(self, pid):
        raise UnsafeInputError(f"refused a pickle persistent id {pid!r}", path=self.path)

    def _checked_reconstruct(self, real):
        # the checks hold the path and the cap, not the unpickler: a cycle through it would keep
        # the buffers it was given (a forked child's mapped result, _forked) until a collection
        path, cap = self.path, self.max_bytes

        def _reconstruct(subtype, shape, dtype):
            if subtype is not np.ndarray:
                raise UnsafeInputError(f"refused _reconstruct of {subtype!r}", path=path)
            _check_size(path, cap, tuple(shape) if isinstance(shape, tuple) else (shape,), "b")
            return real(subtype, shape, dtype)
        return _reconstruct

    def _checked_frombuffer(self, real):
        path, cap = self.path, self.max_bytes

        def _frombuffer(buf, dtype, shape, order):
            _check_size(path, cap, tuple(shape), dtype)
            return real(buf, dtype, shape, order)
        return _frombuffer


def _check_size(path: str, max_bytes: int, shape, dtype) -> None:
    try:
        n = int(np.prod([int(s) for s in shape], dtype=object)) if len(shape) else 1
        size = n * np.dtype(dtype).itemsize
    except (TypeError, ValueError) as e:
        raise ParseError(f"bad array shape {shape!r} in pickle: {e}", path=path) from None
    if size > max_bytes:
        raise ParseError(f"an array of {size} bytes exceeds the cap of {max_bytes} bytes",
                         path=path, hint="raise max_bytes if this file is trusted and this big")


def _latin1_encode(obj, encoding="utf-8", errors="strict"):
    """``_codecs.encode`` limited to latin-1 (how protocol-2 pickles carry bytes)."""
    if encoding not in ("latin1", "latin-1") or not isinstance(obj, str):
        raise UnsafeInputError(f"refused _codecs.encode with encoding {encoding!r}")
    return obj.encode("latin1", errors)


def _open_checked(path: Path, max_bytes: int):
    path = Path(path)
    try:
        size = path.stat().st_size
        f = open(path, "rb")
    except OSError as e:
        raise ParseError(f"cannot read: {e.strerror or e}", path=path) from e
    if size > max_bytes:
        f.close()
        raise ParseError(f"file of {size} bytes exceeds the cap of {max_bytes} bytes", path=path)
    return f, size


def read_npy_header(f, path: str | Path) -> NpyInfo:
    """Parse a ``.npy`` header from an open file (left positioned at the data).

    Raises:
        ParseError: Not an ``.npy`` file, or its header is malformed.
    """
    head = f.read(8)
    if len(head) < 8 or head[:6] != _MAGIC:
        raise ParseError("not a .npy file (bad magic bytes at offset 0)", path=path)
    major, minor = head[6], head[7]
    if major == 1:
        raw = f.read(2)
        hlen = int.from_bytes(raw, "little") if len(raw) == 2 else -1
    elif major in (2, 3):
        raw = f.read(4)
        hlen = int.from_bytes(raw, "little") if len(raw) == 4 else -1
    else:
        raise ParseError(f"unsupported .npy format version {major}.{minor} (offset 6)", path=path)
    if hlen < 0 or hlen > 1 << 20:
        raise ParseError("truncated or oversized .npy header (offset 8)", path=path)
    hbytes = f.read(hlen)
    if len(hbytes) != hlen:
        raise ParseError(f"truncated .npy header: {len(hbytes)} of {hlen} bytes", path=path)
    text = hbytes.decode("utf-8" if major == 3 else "latin1")
    try:
        d = ast.literal_eval(text)
    except (ValueError, SyntaxError) as e:
        raise ParseError(f"malformed .npy header {text.strip()!r}: {e}", path=path) from None
    if not isinstance(d, dict) or set(d) != {"descr", "fortran_order", "shape"}:
        raise ParseError(f"malformed .npy header {text.strip()!r} (needs descr, fortran_order, shape)", path=path)
    shape = d["shape"]
    if not isinstance(shape, tuple) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise ParseError(f"bad shape {shape!r} in .npy header", path=path)
    return NpyInfo(header=text, version=(major, minor), descr=d["descr"], shape=shape,
                   fortran_order=bool(d["fortran_order"]))


def _unpickle(f, size: int, path: Path, max_bytes: int, info: NpyInfo, stubs=None):
    start = f.tell()
    proto_head = f.read(2)
    f.seek(start)
    info.protocol = proto_head[1] if len(proto_head) == 2 and proto_head[0] == 0x80 else 0
    up = RestrictedUnpickler(_CappedReader(f, size), path=path, max_bytes=max_bytes, stubs=stubs)
    try:
        obj = up.load()
    except UnsafeInputError as e:
        if e.path is None:
            e.path = str(path)
            e.args = (str(e),)
        raise
    except ParseError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, MemoryError, OverflowError, UnicodeDecodeError) as e:
        raise ParseError(f"corrupt or truncated pickle near byte {f.tell()}: {type(e).__name__}: {e}",
                         path=path) from None
    finally:
        # the checked constructors close over the unpickler (a cycle): free its memo now, so the
        # arrays it references do not wait for the cyclic garbage collector
        up.memo.clear()
        up._allowed = {}
    info.globals = up.seen
    info.numpy_prefix = up.numpy_prefix
    return obj


def load_npy(path: str | Path, *, max_bytes: int = MAX_BYTES, stubs=None) -> tuple[Any, NpyInfo]:
    """Read a ``.npy`` file without executing anything from it.

    A numeric array is read as raw bytes; an object array (idtracker.ai saves its dict as a 0-d
    object array) is unpickled with :class:`RestrictedUnpickler` and its ``.item()`` returned.

    Args:
        path: The file.
        max_bytes: Cap on the file size and on any array allocated while reading.
        stubs: Extra inert classes for the unpickler (see :class:`RestrictedUnpickler`).

    Returns:
        ``(value, info)``: the array (or the dict inside a 0-d object array) and :class:`NpyInfo`.

    Raises:
        ParseError: Not a valid ``.npy`` file, truncated, or over the caps.
        UnsafeInputError: The pickle asks for a global outside the whitelist.
    """
    path = Path(path)
    f, size = _open_checked(path, max_bytes)
    with f:
        info = read_npy_header(f, path)
        try:
            dtype = np.dtype(info.descr) if not isinstance(info.descr, list) else np.dtype(
                [tuple(x) for x in info.descr])
        except (TypeError, ValueError) as e:
            raise ParseError(f"bad dtype {info.descr!r} in .npy header: {e}", path=path) from None
        if dtype.hasobject:
            obj = _unpickle(f, size, path, max_bytes, info, stubs)
            if isinstance(obj, np.ndarray) and obj.dtype.hasobject and obj.shape == () and info.shape == ():
                return obj.item(), info
            if isinstance(obj, np.ndarray) and obj.shape != info.shape:
                raise ParseError(f"pickled array has shape {obj.shape}, header says {info.shape}", path=path)
            return obj, info
        n = int(np.prod(info.shape, dtype=object)) if info.shape else 1
        nbytes = n * dtype.itemsize
        left = size - f.tell()
        if nbytes > max_bytes:
            raise ParseError(f"array of {nbytes} bytes exceeds the cap of {max_bytes} bytes", path=path)
        if left < nbytes:
            raise ParseError(f"truncated .npy data: {left} of {nbytes} bytes after the header "
                             f"(shape {info.shape}, dtype {dtype.str})", path=path)
        arr = np.empty(info.shape, dtype=dtype, order="F" if info.fortran_order else "C")
        if nbytes:
            view = memoryview(arr.reshape(-1, order="A").view(np.uint8)) if arr.flags.c_contiguous or \
                arr.flags.f_contiguous else None
            got = f.readinto(view) if view is not None else 0
            if got != nbytes:
                raise ParseError(f"truncated .npy data: {got} of {nbytes} bytes", path=path)
        return arr, info


def load_pickle(path: str | Path, *, max_bytes: int = MAX_BYTES, stubs=None) -> tuple[Any, NpyInfo]:
    """Read a pickle file with :class:`RestrictedUnpickler` (see :func:`load_npy` for the rules).

    Raises:
        ParseError: Corrupt, truncated or over the caps.
        UnsafeInputError: It asks for a global outside the whitelist.
    """
    path = Path(path)
    f, size = _open_checked(path, max_bytes)
    with f:
        info = NpyInfo()
        return _unpickle(f, size, path, max_bytes, info, stubs), info
