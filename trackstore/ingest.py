"""Ingest: find sessions under paths, read each with its format, write each in one transaction.

Each session is read (no database lock held), hashed, then written in one short transaction:
a bad file, Ctrl-C or a kill during a session leaves no trace of it, and sessions committed
before it stay. The same content twice is skipped (``content_hash`` is unique);
``replace=True`` re-imports it, and also replaces a session read earlier from the same path.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import formats
from ._pages import small_pages
from .errors import ParseError, TrackstoreError, TrackstoreWarning
from .model import TrackTables
from .store import Store

__all__ = ["IngestReport", "ingest", "content_hash", "read_path"]

_hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trackstore-hash")


@dataclass
class IngestReport:
    """What happened to one session.

    Attributes:
        path: The file or folder read.
        format: Format registry name.
        status: ``ingested``, ``replaced``, ``skipped`` (same content already stored) or ``failed``.
        session_id: The session's id in the store (the existing one when skipped).
        name: The session name.
        counts: Rows per table (positions, links, tracks, frames, metadata values).
        warnings: Soft problems found while reading (also emitted as TrackstoreWarning).
        error: The error message when ``status == "failed"``.
        seconds: Wall time spent on this session.
    """

    path: Path
    format: str
    status: str = "ingested"
    session_id: int | None = None
    name: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


def content_hash(fmt: str, files: Iterable[str | Path], root: Path) -> str:
    """sha256 over the format name and every file's relative name and bytes (sorted)."""
    h = hashlib.sha256(fmt.encode())
    paths = sorted({Path(f).resolve() for f in files})
    base = root.resolve() if root.is_dir() else root.resolve().parent
    for p in paths:
        try:
            rel = p.relative_to(base).as_posix()
        except ValueError:
            rel = p.name
        h.update(b"\0" + rel.encode() + b"\0")
        with open(p, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def _all_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file())


def read_path(path: Path, fmt_module, **options: Any) -> tuple[TrackTables, list[str]]:
    """Read one session with its format; returns the tables and the warnings raised while reading."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            tables = fmt_module.read(path, **options)
        except TrackstoreError:
            raise
        except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
            raise ParseError(f"cannot be read as {fmt_module.NAME}: {e}", path=path) from e
    msgs = []
    for w in caught:
        if issubclass(w.category, TrackstoreWarning):
            msgs.append(str(w.message))
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    tables.validate(path=path)
    info = tables.session
    if not info.source_format:
        info.source_format = fmt_module.NAME
    if not info.source_path:
        info.source_path = str(Path(path).resolve())
    if not info.name:
        info.name = Path(path).stem if Path(path).is_file() else Path(path).name
    return tables, msgs


def ingest(store: Store, paths: Iterable[str | os.PathLike], *, fmt: str = "auto",
           tags: dict[str, str] | None = None, replace: bool = False, keep_going: bool = False,
           progress: Callable[[str, int, int, IngestReport | None], None] | None = None,
           read_options: dict[str, Any] | None = None) -> list[IngestReport]:
    """Ingest every session found under ``paths`` into ``store``.

    Args:
        store: An open (writable) Store.
        paths: Files, folders (searched recursively) or glob patterns.
        fmt: A format name, or ``"auto"`` to detect each path's format by its content.
        tags: ``key=value`` labels stored on every session of this ingest (query them with
            the ``session_tags`` view).
        replace: Re-import sessions whose content (or source path) is already stored.
        keep_going: On a bad session, record it as failed and go on (default: stop there).
        progress: Called as ``progress(stage, index, total, report)``; stage is ``"found"``,
            ``"start"`` or ``"done"``.
        read_options: Options passed to the format's ``read``.

    Returns:
        One IngestReport per session found, in order.

    Raises:
        TrackstoreError: The first failure, unless ``keep_going`` (sessions ingested before it
            stay; the failed one leaves no trace).

    Example:
        >>> with Store("tracks.duckdb") as s:  # doctest: +SKIP
        ...     ingest(s, ["experiments/"], tags={"group": "control"})
    """
    from . import transfer

    paths = [str(p) for p in paths]
    lakes = [Path(p) for p in paths if transfer.is_lake(Path(p))]
    units = formats.discover([p for p in paths if not transfer.is_lake(Path(p))], fmt) if len(lakes) < len(paths) \
        else []
    reports: list[IngestReport] = []
    for lake in lakes:
        t0 = time.perf_counter()
        for src_id, new_id, status in transfer.ingest_lake(store, lake, replace=replace):
            reports.append(IngestReport(
                path=lake, format="parquet", status="ingested" if status == "copied" else status,
                session_id=new_id if new_id is not None else src_id, name=f"lake session {src_id}",
                seconds=time.perf_counter() - t0))
    total = len(units)
    if progress:
        progress("found", 0, total, None)
    for i, (path, module) in enumerate(units):
        rep = IngestReport(path=path, format=module.NAME)
        if progress:
            progress("start", i, total, rep)
        t0 = time.perf_counter()
        try:
            with small_pages():  # see _pages: fresh arrays without synchronous RAM compaction
                _ingest_one(store, path, module, rep, tags, replace, read_options)
        except TrackstoreError as e:
            rep.status, rep.error = "failed", str(e)
            rep.seconds = time.perf_counter() - t0
            reports.append(rep)
            if progress:
                progress("done", i + 1, total, rep)
            if not keep_going:
                raise
            continue
        rep.seconds = time.perf_counter() - t0
        reports.append(rep)
        if progress:
            progress("done", i + 1, total, rep)
    return reports


def _ingest_one(store: Store, path: Path, module, rep: IngestReport, tags, replace: bool,
                read_options: dict[str, Any] | None) -> None:
    """Read, hash and write one session (one transaction); fills ``rep``. Raises TrackstoreError."""
    # a single file is hashed on a second thread while it is parsed (hashlib releases the GIL)
    early = _hasher.submit(content_hash, module.NAME, [path], path) if path.is_file() else None
    tables, rep.warnings = read_path(path, module, **(read_options or {}))
    rep.name = tables.session.name
    files = tables.session.source_files or _all_files(path)
    if early is not None and {Path(f).resolve() for f in files} == {path.resolve()}:
        digest = early.result()
    else:
        digest = content_hash(module.NAME, files, path)
    # counted now: writing consumes the tables
    rep.counts = {"positions": tables.n_positions, "links": tables.n_links, "tracks": tables.n_tracks,
                  "frames": len(tables.frame_numbers()),
                  "metadata": sum(len(b) for b in tables.metadata)}
    with store.transaction() as conn:
        store.lock_content(conn, digest)
        existing = store.find_sessions(conn, content_hash=digest)
        if existing and not replace:
            rep.status, rep.session_id = "skipped", existing[0]
        else:
            old = store.find_sessions(conn, content_hash=digest,
                                      source_path=tables.session.source_path) if replace else []
            for sid in old:
                store.delete_session(conn, sid)
            rep.session_id = store.write_session(conn, tables, content_hash=digest, tags=tags,
                                                 session_id=old[0] if old else None, consume=True)
            rep.status = "replaced" if old else "ingested"
