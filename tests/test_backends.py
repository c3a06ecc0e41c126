"""Every view and every named query gives the same rows on DuckDB and on PostgreSQL."""

from __future__ import annotations

import math

import numpy as np
import pytest

import examples
from trackstore import db, pglocal
from trackstore.model import SessionInfo, TrackTables
from trackstore.queries import list_queries, run_query
from trackstore.store import Store


def _animals(seed: int) -> TrackTables:
    """Eight animals over 60 frames with gaps, gap-closed positions and groups (idtracker.ai-like)."""
    rng = np.random.default_rng(seed)
    F, N = 60, 8
    xy = np.cumsum(rng.normal(0, 1, (F, N, 2)), axis=0) + 50
    seen = rng.random((F, N)) > 0.15
    f, a = np.nonzero(seen)
    order = np.lexsort((f, a))
    f, a = f[order], a[order]
    t = TrackTables.from_columns(frame=f, x=xy[f, a, 0], y=xy[f, a, 1], track_id=a,
                                 origin=(rng.random(len(f)) < 0.1).astype(np.int8), quality=rng.random(len(f)),
                                 session=SessionInfo(name=f"animals{seed}", frame_interval=1 / 30, time_unit="second"))
    same = a[1:] == a[:-1]
    idx = np.arange(len(f))
    t.links = {"source_id": idx[:-1][same], "target_id": idx[1:][same]}
    t.frames = {"frame": np.arange(F), "time": np.arange(F) / 30}
    t.tracks = {"name": np.array([str(i + 1) for i in range(N)], object),
                "identity": np.arange(1, N + 1).astype(object), "lineage_id": np.arange(N),
                "visible": np.ones(N, bool), "native_id": np.full(N, None, object)}
    t.add_meta("track", "group", np.array(["odd" if i % 2 else "even" for i in range(N)], object), owners=np.arange(N))
    return t


@pytest.fixture(scope="module")
def both(tmp_path_factory, pg_server):
    import os

    import sqlalchemy as sa

    name = f"backends{os.getpid()}"
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    pg = pglocal.database_url(pg_server, name)
    duck = tmp_path_factory.mktemp("backends") / "s.duckdb"
    sessions = [f() for f in examples.ALL.values()] + [_animals(1), _animals(2)]
    for url in (duck, pg):
        with Store(url) as s:
            for i, t in enumerate(sessions):
                with s.transaction() as c:
                    s.write_session(c, t, content_hash=f"h{i}", tags={"group": "a" if i % 2 else "b"})
    stores = {"duckdb": Store(duck, read_only=True), "postgresql": Store(pg, read_only=True)}
    yield stores
    for s in stores.values():
        s.close()


def _rows(result) -> list[tuple]:
    def norm(v):
        if isinstance(v, float):
            return None if math.isnan(v) else round(v, 9)
        if hasattr(v, "item") and not isinstance(v, (str, bytes)):
            return norm(v.item())
        if isinstance(v, list):
            return tuple(norm(x) for x in v)
        return v
    return sorted((tuple(norm(v) for v in r) for r in result.rows), key=repr)


@pytest.mark.parametrize("view", sorted(db.view_files("duckdb")))
def test_backends_views_agree(both, view):
    got = {k: _rows(run_query(s, f"SELECT * FROM {view}")) for k, s in both.items()}
    assert got["duckdb"] == got["postgresql"]


@pytest.mark.parametrize("query", [q.name for q in list_queries()])
def test_backends_named_queries_agree(both, query):
    got = {k: _rows(run_query(s, query, {})) for k, s in both.items()}
    assert got["duckdb"] == got["postgresql"]
