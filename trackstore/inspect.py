"""Human-readable summaries of a store and of one session (``trackstore info``)."""

from __future__ import annotations

import sqlalchemy as sa

from . import db, schema
from .store import Store


def store_info(store: Store) -> str:
    """Where the store is, its schema revision, and how much it holds."""
    lines = [f"store:     {store.url}"]
    path = db.duckdb_path(store.url)
    if path is not None and path.exists():
        lines.append(f"file size: {path.stat().st_size / 1e6:.1f} MB")
    with store.connect() as c:
        rev = db.current_revision(c)
        lines.append(f"schema:    revision {rev} (this trackstore: {db.head_revision()})")
        for t in (schema.sessions, schema.frames, schema.positions, schema.tracks, schema.links,
                  schema.metadata_table):
            n = c.execute(sa.select(sa.func.count()).select_from(t)).scalar()
            lines.append(f"{t.name + ':':10s} {n:,} rows")
        fmts = c.execute(sa.select(schema.sessions.c.source_format, sa.func.count())
                         .group_by(schema.sessions.c.source_format).order_by(schema.sessions.c.source_format)).all()
    if fmts:
        lines.append("formats:   " + ", ".join(f"{f} ({n})" for f, n in fmts))
    return "\n".join(lines)


def session_info(store: Store, ref: str) -> str:
    """One session's columns, tags, and metadata keys by scope."""
    m = schema.metadata_table
    with store.connect() as c:
        sid = store.resolve_session(ref, c)
        row = c.execute(sa.select(schema.sessions).where(schema.sessions.c.session_id == sid)).mappings().one()
        keys = c.execute(
            sa.select(m.c.scope, m.c.key, sa.func.min(m.c.vtype), sa.func.count())
            .where(m.c.session_id == sid).group_by(m.c.scope, m.c.key).order_by(sa.func.min(m.c.seq))
        ).all()
    lines = [f"{k + ':':16s} {v}" for k, v in row.items() if v is not None]
    tags = [(k, v) for s, k, v, _ in keys if s == "tag"]
    if tags:
        lines.append("tags:")
    by_scope: dict[str, list[str]] = {}
    for scope, key, vtype, n in keys:
        if scope == "tag":
            continue
        by_scope.setdefault(scope, []).append(f"{key} ({vtype}{', ' + format(n, ',') + ' values' if n > 1 else ''})")
    with store.connect() as c:
        for k, v in c.execute(sa.select(m.c.key, m.c.v_str).where(m.c.session_id == sid, m.c.scope == "tag")):
            lines.append(f"  {k} = {v}")
    for scope, items in by_scope.items():
        lines.append(f"metadata ({scope}):")
        lines.extend(f"  {i}" for i in items)
    return "\n".join(lines)
