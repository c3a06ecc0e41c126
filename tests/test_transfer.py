"""Sessions move between stores and through a Parquet lake without loss; many writers on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import numpy as np
import pyarrow.dataset as ds
import pytest
import sqlalchemy as sa

import examples
from trackstore import transfer
from trackstore.errors import StoreError
from trackstore.ingest import ingest
from trackstore.model import compare_tables
from trackstore.store import Store


def _fill(store: Store) -> dict[str, object]:
    """Every canonical example as a session, with a tag and awkward metadata."""
    out = {}
    for name, f in examples.ALL.items():
        t = f()
        t.add_meta("session", "nan", float("nan"))
        t.add_meta("session", "arr", np.arange(4, dtype=np.int32))
        if t.n_positions:
            t.add_meta("position", "intensity", np.linspace(-1, 1, t.n_positions), owners=np.arange(t.n_positions))
        with store.transaction() as c:
            store.write_session(c, t, content_hash=f"hash-{name}", tags={"example": name})
        out[name] = t
    return out


def _same_store(a: Store, b: Store, originals) -> None:
    ra = {r["content_hash"]: r for r in a.list_sessions()}
    rb = {r["content_hash"]: r for r in b.list_sessions()}
    assert set(ra) == set(rb)
    for h, row in ra.items():
        other = rb[h]
        assert other["tags"] == row["tags"] and other["imported_at"] == row["imported_at"]
        assert compare_tables(originals[row["name"]], b.read_session(other["session_id"])) == []


def test_transfer_lake_is_read_by_duckdb_and_pyarrow(store, tmp_path):
    originals = _fill(store)
    lake = tmp_path / "lake"
    transfer.export_lake(store, lake)
    expected = {r["session_id"]: r["n_positions"] for r in store.list_sessions()}
    # DuckDB, hive partitioning: session_id comes from the folder names
    got = dict(duckdb.sql(f"SELECT session_id, count(*) FROM read_parquet('{lake}/positions/*/*.parquet', "
                          "hive_partitioning = true) GROUP BY 1").fetchall())
    assert got == {k: v for k, v in expected.items() if v}
    # pyarrow.dataset
    d = ds.dataset(lake / "positions", format="parquet", partitioning="hive")
    tbl = d.to_table()
    assert tbl.num_rows == sum(expected.values())
    sid = next(r["session_id"] for r in store.list_sessions() if r["name"] == "division")
    sub = tbl.filter(ds.field("session_id") == sid).sort_by("position_id")
    np.testing.assert_array_equal(sub["x"].to_numpy(), originals["division"].positions["x"])
    assert transfer.n_positions_per_session(lake) == {k: v for k, v in expected.items()}


def test_transfer_lake_ingests_back_losslessly(store, tmp_path):
    originals = _fill(store)
    transfer.export_lake(store, tmp_path / "lake")
    with Store(tmp_path / "back.duckdb") as back:
        reps = ingest(back, [tmp_path / "lake"])
        assert [r.status for r in reps] == ["ingested"] * len(originals)
        _same_store(store, back, originals)
        assert [r.status for r in ingest(back, [tmp_path / "lake"])] == ["skipped"] * len(originals)


def test_transfer_lake_refuses_to_overwrite(store, tmp_path):
    _fill(store)
    transfer.export_lake(store, tmp_path / "lake")
    with pytest.raises(Exception, match="already exists"):
        transfer.export_lake(store, tmp_path / "lake")


def test_transfer_copy_duckdb_to_postgres_and_back(store, pg_url, tmp_path):
    originals = _fill(store)
    with Store(pg_url) as pg:
        res = transfer.copy_sessions(store, pg)
        assert [s for *_, s in res] == ["copied"] * len(originals)
        _same_store(store, pg, originals)
        assert [s for *_, s in transfer.copy_sessions(store, pg)] == ["skipped"] * len(originals)
        with Store(tmp_path / "again.duckdb") as again:
            transfer.copy_sessions(pg, again)
            _same_store(pg, again, originals)


def test_transfer_postgres_read_only_role_can_query_not_write(pg_url):
    with Store(pg_url) as admin:
        _fill(admin)
        with admin.engine.connect() as c, c.begin():
            c.exec_driver_sql("DROP ROLE IF EXISTS ts_reader")
            c.exec_driver_sql("CREATE ROLE ts_reader LOGIN")
            c.exec_driver_sql("GRANT USAGE ON SCHEMA public TO ts_reader")
            c.exec_driver_sql("GRANT SELECT ON ALL TABLES IN SCHEMA public TO ts_reader")
    reader_url = pg_url.replace("postgres:@", "ts_reader:@", 1)
    with Store(reader_url, read_only=True) as r:
        assert len(r.list_sessions()) == len(examples.ALL)
    with Store(reader_url) as r, pytest.raises(StoreError, match="permission denied"):
        with r.transaction() as c:
            r.write_session(c, examples.linear(), content_hash="x")


def test_transfer_postgres_read_only_connection_refuses_writes(pg_url):
    with Store(pg_url) as admin:
        _fill(admin)
    with Store(pg_url, read_only=True) as r, r.connect() as c:
        with pytest.raises(sa.exc.DBAPIError, match="read-only transaction"):
            c.exec_driver_sql("DELETE FROM positions")


INGEST_LAKE = r"""
import sys
from trackstore.store import Store
from trackstore.ingest import ingest
with Store(sys.argv[1]) as s:
    reps = ingest(s, [sys.argv[2]])
print(",".join(r.status for r in reps))
"""


def test_transfer_postgres_concurrent_ingests_no_duplicates(store, pg_url, tmp_path):
    originals = _fill(store)
    transfer.export_lake(store, tmp_path / "lake")
    procs = [subprocess.Popen([sys.executable, "-c", INGEST_LAKE, pg_url, str(tmp_path / "lake")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    statuses = [o.strip().split(",") for o, _ in outs]
    # every session ingested exactly once across the three processes, skipped by the others
    for i in range(len(originals)):
        column = [s[i] for s in statuses]
        assert column.count("ingested") == 1 and column.count("skipped") == 2, column
    with Store(pg_url) as pg:
        _same_store(store, pg, originals)


def test_transfer_lake_read_by_spark_when_installed(store, tmp_path):
    pyspark = pytest.importorskip("pyspark")
    _fill(store)
    transfer.export_lake(store, tmp_path / "lake")
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.master("local[1]").appName("trackstore-test").getOrCreate()
    try:
        df = spark.read.parquet(str(tmp_path / "lake" / "positions"))
        counts = {r["session_id"]: r["count"] for r in df.groupBy("session_id").count().collect()}
    finally:
        spark.stop()
    assert counts == {r["session_id"]: r["n_positions"] for r in store.list_sessions() if r["n_positions"]}
    assert pyspark
