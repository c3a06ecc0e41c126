"""The store: moves whole sessions (TrackTables) in and out of the database, in bulk.

One session is written in one transaction, one ``INSERT … SELECT`` per table from numpy/Arrow
columns (never row by row), so a failure or a kill leaves no trace of it. Connections are opened
per operation and closed after it: on DuckDB that keeps the file lock short, so another
trackstore process waits seconds, not for a whole multi-session ingest.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from . import db, schema, values
from .errors import SessionNotFoundError, StoreError
from .model import ORIGINS, MetaBlock, SessionInfo, TrackTables

_ORIGIN_LIST_SQL = "[" + ", ".join(f"'{o}'" for o in ORIGINS) + "]"


class Store:
    """A track store at a SQLAlchemy URL (DuckDB file by default).

    Args:
        url: SQLAlchemy URL or a file path (see :func:`trackstore.db.resolve_url`).
        read_only: Open read-only: writes fail, user SQL cannot change anything.
        on_wait: Called with a message when waiting for another process's lock.
        lock_timeout: Seconds to wait for that lock.

    Example:
        >>> with Store("tracks.duckdb") as s:  # doctest: +SKIP
        ...     s.list_sessions()
    """

    def __init__(self, url: str | None = None, *, read_only: bool = False,
                 on_wait: Callable[[str], None] | None = None, lock_timeout: float | None = None):
        self.url = db.resolve_url(url)
        self.read_only = read_only
        self.engine = db.make_engine(self.url, read_only=read_only, lock_timeout=lock_timeout, on_wait=on_wait)
        self.dialect = self.engine.dialect.name
        self._checked = False

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def exists(self) -> bool:
        """False for a DuckDB path that has no file yet."""
        p = db.duckdb_path(self.url)
        return p is None or p.exists() or not db.is_duckdb(self.url)

    @contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        """A connection for reading (no transaction of ours)."""
        if self.read_only and not self.exists:
            raise StoreError("no store here yet", path=db.duckdb_path(self.url),
                             hint="create one with `trackstore ingest PATH`")
        with db.wrap_db_errors("opening the store"):
            conn = self.engine.connect()
        try:
            if not self._checked:
                with db.wrap_db_errors("reading the schema revision"):
                    rev = db.check_revision(conn, for_write=False)
                if rev is None:
                    raise StoreError("this database is not a trackstore (no schema)",
                                     path=db.duckdb_path(self.url) or self.url,
                                     hint="create one with `trackstore ingest PATH` or `trackstore upgrade`")
                self._checked = True
            yield conn
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A write transaction; creates the schema of a new store, refuses an outdated one."""
        with db.wrap_db_errors("opening the store for writing"):
            conn = self.engine.connect()
        try:
            with db.wrap_db_errors("writing to the store"):
                with conn.begin():
                    rev = db.check_revision(conn, for_write=True)
                    if rev is None:
                        db.upgrade(conn)
                    yield conn
        finally:
            conn.close()

    def upgrade(self, revision: str = "head") -> tuple[str | None, str]:
        """Migrate the store to ``revision``; returns (old, new) revision."""
        with db.wrap_db_errors("upgrading the store"):
            with self.engine.connect() as conn, conn.begin():
                old = db.current_revision(conn)
                db.upgrade(conn, revision)
                new = db.current_revision(conn)
        return old, new

    def revision(self) -> str | None:
        with db.wrap_db_errors("reading the schema revision"), self.engine.connect() as conn:
            return db.current_revision(conn)

    # ---------------------------------------------------------------- sessions
    def list_sessions(self, conn: sa.Connection | None = None) -> list[dict[str, Any]]:
        """Every stored session as a dict of its ``sessions`` columns, with its tags."""
        with self._maybe(conn) as c:
            rows = c.execute(sa.select(schema.sessions).order_by(schema.sessions.c.session_id)).mappings().all()
            tags = c.execute(
                sa.select(schema.metadata_table.c.session_id, schema.metadata_table.c.key,
                          schema.metadata_table.c.v_str)
                .where(schema.metadata_table.c.scope == "tag")
                .order_by(schema.metadata_table.c.session_id, schema.metadata_table.c.seq)
            ).all()
        by_sid: dict[int, dict[str, str]] = {}
        for sid, k, v in tags:
            by_sid.setdefault(sid, {})[k] = v
        return [dict(r, tags=by_sid.get(r["session_id"], {})) for r in rows]

    def resolve_session(self, ref: int | str, conn: sa.Connection | None = None) -> int:
        """A session id from an id or a name (the name must be unique)."""
        s = schema.sessions
        with self._maybe(conn) as c:
            if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
                sid = c.execute(sa.select(s.c.session_id).where(s.c.session_id == int(ref))).scalar()
                if sid is not None:
                    return sid
            ids = c.execute(sa.select(s.c.session_id).where(s.c.name == str(ref))).scalars().all()
        if len(ids) == 1:
            return ids[0]
        if not ids:
            raise SessionNotFoundError(f"no session {ref!r} in the store", hint="list them with `trackstore sessions`")
        raise SessionNotFoundError(f"{len(ids)} sessions are named {ref!r} (ids {', '.join(map(str, ids))})",
                                   hint="refer to the session by its id")

    @contextmanager
    def _maybe(self, conn):
        if conn is not None:
            yield conn
        else:
            with self.connect() as c:
                yield c

    def delete_session(self, conn: sa.Connection, session_id: int) -> None:
        """Delete every row of a session (inside the caller's transaction)."""
        for t in (schema.metadata_table, schema.links, schema.tracks, schema.positions, schema.frames,
                  schema.sessions):
            conn.execute(sa.delete(t).where(t.c.session_id == session_id))

    def find_sessions(self, conn: sa.Connection, *, content_hash: str | None = None,
                      source_path: str | None = None) -> list[int]:
        s = schema.sessions
        cond = []
        if content_hash is not None:
            cond.append(s.c.content_hash == content_hash)
        if source_path is not None:
            cond.append(s.c.source_path == source_path)
        if not cond:
            return []
        return list(conn.execute(sa.select(s.c.session_id).where(sa.or_(*cond))).scalars())

    # ---------------------------------------------------------------- write
    def write_session(self, conn: sa.Connection, tables: TrackTables, *, content_hash: str,
                      tags: dict[str, str] | None = None, session_id: int | None = None) -> int:
        """Insert one session in bulk (inside the caller's transaction); returns its id."""
        if session_id is None:
            session_id = int(conn.execute(sa.select(schema.session_id_seq.next_value())).scalar())
        info = tables.session
        frames = tables.frame_numbers()
        conn.execute(sa.insert(schema.sessions).values(
            session_id=session_id,
            name=info.name or f"session {session_id}",
            source_format=info.source_format or "unknown",
            format_version=info.format_version,
            source_path=info.source_path,
            content_hash=content_hash,
            imported_at=dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0),
            space_unit=info.space_unit,
            time_unit=info.time_unit,
            physical_unit=info.physical_unit,
            pixel_size_x=_opt_float(info.pixel_size[0]),
            pixel_size_y=_opt_float(info.pixel_size[1]),
            pixel_size_z=_opt_float(info.pixel_size[2]),
            frame_interval=_opt_float(info.frame_interval),
            width=_opt_int(info.image_size[0]),
            height=_opt_int(info.image_size[1]),
            depth=_opt_int(info.image_size[2]),
            n_frames=len(frames),
            first_frame=int(frames.min()) if len(frames) else None,
            last_frame=int(frames.max()) if len(frames) else None,
            n_positions=tables.n_positions,
            n_tracks=tables.n_tracks,
            n_links=tables.n_links,
        ))
        bulk = _bulk_for(conn)
        bulk.insert_frames(session_id, tables, frames)
        bulk.insert_positions(session_id, tables)
        bulk.insert_tracks(session_id, tables)
        bulk.insert_links(session_id, tables, frames)
        blocks = list(tables.metadata)
        for k, v in (tags or {}).items():
            blocks.append(MetaBlock.scalar("tag", k, str(v)))
        bulk.insert_metadata(session_id, blocks)
        return session_id

    # ---------------------------------------------------------------- read
    def read_session(self, session_ref: int | str, conn: sa.Connection | None = None) -> TrackTables:
        """Load one whole session back into TrackTables (tags excluded)."""
        with self._maybe(conn) as c:
            sid = self.resolve_session(session_ref, c)
            with db.wrap_db_errors(f"reading session {sid}"):
                return _bulk_for(c).read(sid)


def _opt_float(v):
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


def _opt_int(v):
    return None if v is None else int(v)


def _bulk_for(conn: sa.Connection):
    if conn.dialect.name == "duckdb":
        return _DuckDBBulk(conn)
    raise StoreError(f"bulk loading is not implemented for {conn.dialect.name}")


class _DuckDBBulk:
    """Bulk paths for DuckDB: register numpy dicts / Arrow tables, one INSERT … SELECT each."""

    def __init__(self, conn: sa.Connection):
        self.raw = conn.connection.driver_connection

    def _insert(self, table: str, src: Any, select: str, params: list | None = None) -> None:
        name = f"_ts_src_{table}"
        self.raw.register(name, src)
        try:
            self.raw.execute(f"INSERT INTO {table} SELECT {select} FROM {name}", params or [])
        finally:
            self.raw.unregister(name)

    def insert_frames(self, sid: int, t: TrackTables, frames: np.ndarray) -> None:
        if not len(frames):
            return
        time_ = t.frames.get("time")
        if time_ is None:
            fi = t.session.frame_interval
            time_ = frames * fi if fi else np.full(len(frames), np.nan)
        self._insert("frames", {"frame": frames.astype(np.int64), "time": np.asarray(time_, np.float64)},
                     "?, frame, time", [sid])

    def insert_positions(self, sid: int, t: TrackTables) -> None:
        n = t.n_positions
        if not n:
            return
        p = t.positions
        src = {"position_id": np.arange(n, dtype=np.int64), "frame": p["frame"], "x": p["x"], "y": p["y"]}
        cols = ["?", "position_id", "frame", "x", "y"]
        for name, null_when in (("z", None), ("track_id", -1), ("origin", None), ("native_id", None),
                                ("quality", None), ("radius", None)):
            if name not in p:
                cols.append(f"{_ORIGIN_LIST_SQL}[1]" if name == "origin" else "NULL")
                continue
            src[name] = p[name]
            if name == "origin":
                cols.append(f"{_ORIGIN_LIST_SQL}[origin + 1]")
            elif null_when is not None:
                cols.append(f"CASE WHEN {name} = {null_when} THEN NULL ELSE {name} END")
            else:
                cols.append(name)  # NaN -> NULL is done by DuckDB's numpy scan
        self._insert("positions", src, ", ".join(cols), [sid])

    def insert_tracks(self, sid: int, t: TrackTables) -> None:
        n = t.n_tracks
        if not n:
            return
        tbl = pa.table({
            "track_id": pa.array(np.arange(n, dtype=np.int32)),
            "name": pa.array([None if v is None else str(v) for v in t.track_col("name")], pa.string()),
            "identity": pa.array(list(t.track_col("identity")), pa.int64()),
            "lineage_id": pa.array(t.track_col("lineage_id").astype(np.int64), pa.int64(),
                                   mask=t.track_col("lineage_id") < 0),
            "visible": pa.array(t.track_col("visible").astype(bool)),
            "native_id": pa.array(list(t.track_col("native_id")), pa.int64()),
        })
        self._insert("tracks", tbl, "?, track_id, name, identity, lineage_id, visible, native_id", [sid])

    def insert_links(self, sid: int, t: TrackTables, frames: np.ndarray) -> None:
        if not t.n_links:
            return
        s, d = t.links["source_id"], t.links["target_id"]
        f = t.positions["frame"]
        fs, fd = f[s], f[d]
        src = {
            "link_id": np.arange(t.n_links, dtype=np.int64), "source_id": s, "target_id": d,
            "frame_gap": (fd - fs).astype(np.int64),
            "dx": t.positions["x"][d] - t.positions["x"][s],
            "dy": t.positions["y"][d] - t.positions["y"][s],
            "dz": t.pos("z")[d] - t.pos("z")[s],
        }
        time_ = t.frames.get("time")
        if time_ is not None and len(frames):
            order = np.argsort(frames, kind="stable")
            fr, tm = frames[order], np.asarray(time_, np.float64)[order]
            src["time_gap"] = tm[np.searchsorted(fr, fd)] - tm[np.searchsorted(fr, fs)]
        elif t.session.frame_interval:
            src["time_gap"] = src["frame_gap"] * float(t.session.frame_interval)
        else:
            src["time_gap"] = np.full(t.n_links, np.nan)
        self._insert("links", src, "?, link_id, source_id, target_id, frame_gap, time_gap, dx, dy, dz", [sid])

    def insert_metadata(self, sid: int, blocks: list[MetaBlock]) -> None:
        if not blocks:
            return
        self._insert("metadata", metadata_arrow(blocks),
                     "?, scope, owner_id, key, seq, vtype, v_int, v_float, v_bool, v_str, v_json", [sid])

    # -------------------------------------------------------------- read
    def _np(self, sql: str, sid: int) -> dict[str, np.ndarray]:
        return self.raw.execute(sql, [sid]).fetchnumpy()

    def read(self, sid: int) -> TrackTables:
        row = self.raw.execute("SELECT * FROM sessions WHERE session_id = ?", [sid]).fetchone()
        names = [d[0] for d in self.raw.description]
        r = dict(zip(names, row))
        info = SessionInfo(
            name=r["name"], source_format=r["source_format"], format_version=r["format_version"],
            source_path=r["source_path"], space_unit=r["space_unit"], time_unit=r["time_unit"],
            pixel_size=(r["pixel_size_x"], r["pixel_size_y"], r["pixel_size_z"]),
            physical_unit=r["physical_unit"], frame_interval=r["frame_interval"],
            image_size=(r["width"], r["height"], r["depth"]),
        )
        t = TrackTables(session=info)
        fr = self._np("SELECT frame, time FROM frames WHERE session_id = ? ORDER BY frame", sid)
        t.frames = {"frame": _filled(fr["frame"], 0).astype(np.int64), "time": _filled(fr["time"], np.nan)}
        p = self._np(
            f"SELECT frame, x, y, z, track_id, list_position({_ORIGIN_LIST_SQL}, origin) - 1 AS origin, "
            "native_id, quality, radius FROM positions WHERE session_id = ? ORDER BY position_id", sid)
        pos: dict[str, np.ndarray] = {"frame": _filled(p["frame"], 0).astype(np.int64),
                                      "x": _filled(p["x"], np.nan).astype(np.float64),
                                      "y": _filled(p["y"], np.nan).astype(np.float64)}
        for name, fill, dtype in (("z", np.nan, np.float64), ("track_id", -1, np.int64), ("origin", 0, np.int8),
                                  ("native_id", -1, np.int64), ("quality", np.nan, np.float64),
                                  ("radius", np.nan, np.float64)):
            col = p[name]
            if np.ma.isMaskedArray(col) and col.mask.all() and len(col):
                continue
            if len(col) == 0:
                continue
            pos[name] = _filled(col, fill).astype(dtype)
        t.positions = pos
        tr = self.raw.execute("SELECT name, identity, lineage_id, visible, native_id FROM tracks "
                              "WHERE session_id = ? ORDER BY track_id", [sid]).to_arrow_table()
        t.tracks = {}
        if tr.num_rows:
            t.tracks = {
                "name": _obj(tr["name"].to_pylist()),
                "identity": _obj(tr["identity"].to_pylist()),
                "lineage_id": np.array([-1 if v is None else v for v in tr["lineage_id"].to_pylist()], np.int64),
                "visible": np.array(tr["visible"].to_pylist(), dtype=bool),
                "native_id": _obj(tr["native_id"].to_pylist()),
            }
        lk = self._np("SELECT source_id, target_id FROM links WHERE session_id = ? ORDER BY link_id", sid)
        t.links = {"source_id": _filled(lk["source_id"], 0).astype(np.int64),
                   "target_id": _filled(lk["target_id"], 0).astype(np.int64)}
        md = self.raw.execute(
            "SELECT scope, owner_id, key, seq, vtype, v_int, v_float, v_bool, v_str, v_json FROM metadata "
            "WHERE session_id = ? AND scope <> 'tag' ORDER BY seq, owner_id NULLS FIRST", [sid]
        ).to_arrow_table()
        t.metadata = blocks_from_arrow(md)
        return t


def _filled(col, fill):
    if np.ma.isMaskedArray(col):
        return col.filled(fill)
    return np.asarray(col)


def _obj(lst: list) -> np.ndarray:
    a = np.empty(len(lst), dtype=object)
    a[:] = lst
    return a


_META_SCHEMA = pa.schema([
    ("scope", pa.string()), ("owner_id", pa.int64()), ("key", pa.string()), ("seq", pa.int32()),
    ("vtype", pa.string()), ("v_int", pa.int64()), ("v_float", pa.float64()), ("v_bool", pa.bool_()),
    ("v_str", pa.string()), ("v_json", pa.string()),
])


def metadata_arrow(blocks: list[MetaBlock]) -> pa.Table:
    """Metadata blocks as one Arrow table (NaN kept in v_float; one chunk per block)."""
    batches = []
    for seq, b in enumerate(blocks):
        n = len(b)
        enc = values.encode_column(b.values)
        cols = {}
        for name in ("v_int", "v_float", "v_bool", "v_str", "v_json"):
            typ = _META_SCHEMA.field(name).type
            v = enc.get(name)
            if v is None:
                cols[name] = pa.nulls(n, typ)
            else:
                cols[name] = pa.array(v, typ)
        vt = enc["vtype"]
        vtype = pa.array([vt] * n if isinstance(vt, str) else vt, pa.string())
        owner = pa.nulls(n, pa.int64()) if b.owners is None else pa.array(b.owners, pa.int64())
        batches.append(pa.record_batch([
            pa.array([b.scope] * n, pa.string()), owner, pa.array([b.key] * n, pa.string()),
            pa.array(np.full(n, seq, np.int32)), vtype,
            cols["v_int"], cols["v_float"], cols["v_bool"], cols["v_str"], cols["v_json"],
        ], schema=_META_SCHEMA))
    return pa.Table.from_batches(batches, schema=_META_SCHEMA)


def blocks_from_arrow(md: pa.Table) -> list[MetaBlock]:
    """Rebuild metadata blocks from rows ordered by (seq, owner_id)."""
    if md.num_rows == 0:
        return []
    seq = md["seq"].to_numpy()
    cuts = np.flatnonzero(np.diff(seq)) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(seq)]])
    vtype = md["vtype"].to_numpy(zero_copy_only=False)
    scope = md["scope"].to_numpy(zero_copy_only=False)
    key = md["key"].to_numpy(zero_copy_only=False)
    owner = md["owner_id"]
    cols = {c: md[c] for c in ("v_int", "v_float", "v_bool", "v_str", "v_json")}
    out = []
    for a, b in zip(starts.tolist(), ends.tolist()):
        vt = vtype[a:b]
        own = owner.slice(a, b - a)
        owners = None if own.null_count == len(own) else own.to_numpy(zero_copy_only=False).astype(np.int64)
        kinds = set(vt.tolist())
        if kinds == {"float"}:
            vals = cols["v_float"].slice(a, b - a).to_numpy(zero_copy_only=False).astype(np.float64)
        elif kinds == {"int"} and owners is not None:
            vals = cols["v_int"].slice(a, b - a).to_numpy(zero_copy_only=False).astype(np.int64)
        elif kinds == {"bool"} and owners is not None:
            vals = np.asarray(cols["v_bool"].slice(a, b - a).to_pylist(), dtype=bool)
        else:
            py = {c: cols[c].slice(a, b - a).to_pylist() for c in cols}
            vals = np.empty(b - a, dtype=object)
            for i in range(b - a):
                vals[i] = values.decode(vt[i], py["v_int"][i], py["v_float"][i], py["v_bool"][i],
                                        py["v_str"][i], py["v_json"][i])
        if owners is None and len(vals) == 1 and vals.dtype != object:
            o = np.empty(1, dtype=object)
            o[0] = vals.tolist()[0]
            vals = o
        out.append(MetaBlock(str(scope[a]), str(key[a]), vals, owners))
    return out


def replace_info(info: SessionInfo, **kw) -> SessionInfo:
    return dataclasses.replace(info, **kw)
