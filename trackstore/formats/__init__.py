"""The format registry: every supported file format, found by name or by sniffing a path."""

from __future__ import annotations

import glob
import importlib
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from ..errors import FormatDetectionError, UnknownFormatError

# Modules are imported lazily (some need optional extras); the order is the order users see.
_MODULES = ("idtrackerai", "organoidtracker", "trackmate", "ctc", "geff", "paraview_csv")

FORMATS: dict[str, ModuleType] = {}


def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"{__name__}.{name}":
            return None  # not implemented (yet)
        raise


_loaded_all = False


def _load() -> dict[str, ModuleType]:
    global _loaded_all
    if not _loaded_all:
        mods = [m for m in map(_import, _MODULES) if m is not None]
        FORMATS.clear()  # registry order is _MODULES order, whatever get_format loaded first
        FORMATS.update((m.NAME, m) for m in mods)
        _loaded_all = True
    return FORMATS


def get_format(name: str) -> ModuleType:
    """The format module registered as ``name`` (imports only that one: some pull in heavy
    libraries, e.g. tifffile for CTC, which an ingest of another format should not pay for)."""
    if name in FORMATS:
        return FORMATS[name]
    if name in _MODULES and (mod := _import(name)) is not None and mod.NAME == name:
        FORMATS.setdefault(name, mod)
        return mod
    fmts = _load()
    try:
        return fmts[name]
    except KeyError:
        raise UnknownFormatError(
            f"unknown format {name!r}", hint=f"known formats: {', '.join(fmts)} (see `trackstore formats`)"
        ) from None


def list_formats() -> dict[str, dict]:
    """``{name: {suffixes, read, write, extra, description}}`` for every registered format."""
    return {
        name: {
            "suffixes": tuple(m.SUFFIXES),
            "read": hasattr(m, "read"),
            "write": hasattr(m, "write"),
            "extra": getattr(m, "EXTRA", None),
            "description": getattr(m, "DESCRIPTION", ""),
        }
        for name, m in _load().items()
    }


def _suffix_of(path: Path) -> str:
    return "/" if path.is_dir() else "".join(path.suffixes[-1:]).lower()


def candidates(path: Path) -> list[ModuleType]:
    """Formats whose suffixes fit the path and whose ``sniff`` accepts it."""
    suf = _suffix_of(path)
    out = []
    for m in _load().values():
        if suf in m.SUFFIXES or any(path.name.lower().endswith(s) for s in m.SUFFIXES if len(s) > 1):
            try:
                if m.sniff(path):
                    out.append(m)
            except Exception:  # a sniff must never break detection
                continue
    return out


def detect_format(path: str | Path) -> ModuleType:
    """The one format that recognises ``path``.

    Raises:
        FormatDetectionError: No format or several recognise it (the message lists them).
    """
    path = Path(path)
    found = candidates(path)
    if len(found) == 1:
        return found[0]
    if not found:
        raise FormatDetectionError(
            "not a file or folder of any supported format",
            path=path, hint="pass --format NAME (see `trackstore formats`)",
        )
    raise FormatDetectionError(
        f"could be {' or '.join(m.NAME for m in found)}",
        path=path, hint="pass --format NAME to choose",
    )


_SKIP_DIRS = {".git", "__pycache__", ".ipynb_checkpoints"}


def discover(paths: Iterable[str | Path], fmt: str = "auto") -> list[tuple[Path, ModuleType]]:
    """Every session under ``paths`` (globs allowed; folders searched recursively).

    A path given explicitly must be recognised (else FormatDetectionError). Inside folders,
    files no format recognises are passed over; a folder that a format recognises as one
    session (an idtracker.ai ``session_*`` folder, a CTC sequence) is not searched further.
    """
    forced = None if fmt == "auto" else get_format(fmt)
    units: list[tuple[Path, ModuleType]] = []
    seen: set[Path] = set()

    def add(p: Path, m: ModuleType):
        rp = p.resolve()
        if rp not in seen:
            seen.add(rp)
            units.append((p, m))

    def walk(folder: Path):
        for child in sorted(folder.iterdir()):
            if child.name.startswith(".") or child.name in _SKIP_DIRS:
                continue
            found = [forced] if forced and _accepts(forced, child) else ([] if forced else candidates(child))
            if len(found) >= 1 and (len(found) == 1 or forced):
                add(child, found[0])
            elif len(found) > 1:
                raise FormatDetectionError(f"could be {' or '.join(m.NAME for m in found)}",
                                           path=child, hint="pass --format NAME to choose")
            elif child.is_dir():
                walk(child)

    for raw in paths:
        raw = str(raw)
        matches = [Path(p) for p in sorted(glob.glob(raw, recursive=True))] if glob.has_magic(raw) else [Path(raw)]
        if not matches:
            raise FormatDetectionError("no file matches this pattern", path=raw)
        for p in matches:
            if not p.exists():
                raise FormatDetectionError("no such file or folder", path=p)
            if forced is not None:
                if _accepts(forced, p) or p.is_file():
                    add(p, forced)
                else:
                    walk(p)
                continue
            found = candidates(p)
            if len(found) == 1:
                add(p, found[0])
            elif len(found) > 1:
                raise FormatDetectionError(f"could be {' or '.join(m.NAME for m in found)}",
                                           path=p, hint="pass --format NAME to choose")
            elif p.is_dir():
                before = len(units)
                walk(p)
                if len(units) == before:
                    raise FormatDetectionError("no session of any supported format in this folder", path=p,
                                               hint="see `trackstore formats` for what can be read")
            else:
                detect_format(p)  # raises with the standard message
    return units


def _accepts(m: ModuleType, p: Path) -> bool:
    try:
        return bool(m.sniff(p))
    except Exception:
        return False
