"""Export a stored session to any format, and convert files between formats without a database."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from . import formats
from ._pages import small_pages
from .errors import TrackstoreError, TrackstoreWarning, WriteError
from .ingest import read_path
from .model import TrackTables, fill_gaps
from .store import Store

__all__ = ["export", "convert", "write_tables"]


def write_tables(tables: TrackTables, fmt: str, out: str | os.PathLike, *, overwrite: bool = False,
                 **options: Any) -> tuple[list[Path], list[str]]:
    """Write TrackTables with a format; returns (paths written, warnings about what was lost)."""
    module = formats.get_format(fmt)
    if not hasattr(module, "write"):
        raise WriteError(f"format {fmt!r} can be read but not written")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            paths = module.write(tables, Path(out), overwrite=overwrite, **options)
        except TrackstoreError:
            raise
        except TypeError as e:
            if "unexpected keyword" in str(e):
                raise WriteError(f"{fmt} export does not take that option: {e}") from e
            raise
    msgs = []
    for w in caught:
        if issubclass(w.category, TrackstoreWarning):
            msgs.append(str(w.message))
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return [Path(p) for p in paths], msgs


def export(store: Store, session: int | str, fmt: str, out: str | os.PathLike, *, overwrite: bool = False,
           gaps: str = "with", max_gap: int | None = None, **options: Any) -> tuple[list[Path], list[str]]:
    """Write one stored session as files of ``fmt``.

    Args:
        store: The store to read from.
        session: Session id or (unique) name.
        fmt: Target format name (see ``trackstore formats``).
        out: Target file or folder (format-dependent).
        overwrite: Replace an existing target.
        gaps: ``"with"`` writes the session as stored; ``"without"`` first fills every link that
            skips frames with linearly interpolated positions (see :func:`trackstore.model.fill_gaps`).
        max_gap: With ``gaps="without"``, fill only gaps of at most this many frames.
        **options: Format-specific write options (e.g. ``layout="v5"`` for idtracker.ai).

    Returns:
        (paths written, warnings about anything the format could not hold).

    Example:
        >>> export(store, 1, "trackmate", "out/tracks.xml")  # doctest: +SKIP
    """
    if gaps not in ("with", "without"):
        raise WriteError(f"gaps must be 'with' or 'without', not {gaps!r}")
    with small_pages():  # fresh arrays without synchronous RAM compaction (see _pages)
        tables = store.read_session(session)
        if gaps == "without":
            tables = fill_gaps(tables, max_gap=max_gap)
        return write_tables(tables, fmt, out, overwrite=overwrite, **options)


def convert(src: str | os.PathLike, fmt: str, out: str | os.PathLike, *, from_format: str = "auto",
            overwrite: bool = False, read_options: dict[str, Any] | None = None,
            **write_options: Any) -> tuple[list[Path], list[str]]:
    """Convert a file or folder to another format through TrackTables (no database).

    Returns:
        (paths written, warnings from reading and writing).
    """
    src = Path(src)
    module = formats.get_format(from_format) if from_format != "auto" else formats.detect_format(src)
    with small_pages():
        tables, read_warnings = read_path(src, module, **(read_options or {}))
        paths, write_warnings = write_tables(tables, fmt, out, overwrite=overwrite, **write_options)
    return paths, read_warnings + write_warnings
