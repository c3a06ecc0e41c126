"""The store keeps every session exactly: positions bit-exact, links, tracks, typed metadata."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import examples
from trackstore import values
from trackstore.errors import SessionNotFoundError
from trackstore.model import MetaBlock, SessionInfo, TrackTables, compare_tables


def _roundtrip(store, tables, content_hash="h"):
    with store.transaction() as c:
        sid = store.write_session(c, tables, content_hash=content_hash)
    return sid, store.read_session(sid)


@pytest.mark.parametrize("name", sorted(examples.ALL))
def test_store_roundtrip_examples(any_store, name):
    t = examples.ALL[name]()
    _, back = _roundtrip(any_store, t, name)
    assert compare_tables(t, back) == []


def test_store_link_geometry_is_stored(any_store):
    import sqlalchemy as sa

    t = examples.gap()
    sid, _ = _roundtrip(any_store, t)
    with any_store.connect() as c:
        rows = [tuple(r) for r in c.execute(sa.text(
            "SELECT source_id, target_id, frame_gap, time_gap, dx, dy FROM links WHERE session_id = :s "
            "ORDER BY link_id"), {"s": sid})]
    x, y, f = t.positions["x"], t.positions["y"], t.positions["frame"]
    expected = [(s, d, int(f[d] - f[s]), float(f[d] - f[s]), x[d] - x[s], y[d] - y[s])
                for s, d in zip(t.links["source_id"].tolist(), t.links["target_id"].tolist())]
    assert rows == expected


def test_store_metadata_types_survive(any_store):
    store = any_store
    t = examples.linear()
    vals = [28, 28.0, np.float64(0.5), np.int64(7), np.bool_(True), True, "µm", None, float("nan"), -0.0,
            [1, 2.5, "a", None], (1, 2), {"b": 1, "a": [np.arange(3)]}, np.array([[1.5, np.nan]]),
            np.array(["x", "y"], dtype=object), {1: "int key"}, 2**70, b"\x00\x01"]
    for i, v in enumerate(vals):
        t.add_meta("session", f"k{i}", v)
    t.add_meta("position", "intensity", np.array([1.0, np.nan, -0.0, 4.0]), owners=[3, 1, 0, 2])
    t.add_meta("position", "count", np.array([1, 2, 3, 4], np.int64), owners=[0, 1, 2, 3])
    t.add_meta("track", "label", np.array(["a"], dtype=object), owners=[0])
    _, back = _roundtrip(store, t)
    assert compare_tables(t, back) == []
    got = back.session_meta()
    assert list(got) == [f"k{i}" for i in range(len(vals))]
    assert type(got["k0"]) is int and type(got["k1"]) is float and type(got["k2"]) is np.float64
    assert math.isnan(got["k8"]) and math.copysign(1, got["k9"]) == -1


def test_store_failed_write_leaves_no_trace(any_store):
    store = any_store
    t = examples.linear()
    with pytest.raises(RuntimeError):
        with store.transaction() as c:
            store.write_session(c, t, content_hash="x")
            raise RuntimeError("interrupted")
    assert store.list_sessions() == []
    with store.connect() as c:
        for table in ("positions", "links", "metadata", "frames", "tracks"):
            assert c.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar() == 0


def test_store_resolve_session_by_id_and_name(store):
    a, _ = _roundtrip(store, examples.linear(), "a")
    b, _ = _roundtrip(store, examples.gap(), "b")
    assert store.resolve_session(str(b)) == b
    assert store.resolve_session("linear") == a
    with pytest.raises(SessionNotFoundError, match="no session 'nope'"):
        store.resolve_session("nope")
    _roundtrip(store, examples.linear(), "c")
    with pytest.raises(SessionNotFoundError, match="2 sessions are named 'linear'"):
        store.resolve_session("linear")


# ---------------------------------------------------------------- properties (hypothesis)
floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
_hashes = itertools.count()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_store_property_positions_and_ids_survive(store, data):
    n = data.draw(st.integers(0, 30))
    frames = np.array(data.draw(st.lists(st.integers(-1000, 10**6), min_size=n, max_size=n)), np.int64)
    xs = np.array(data.draw(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=n,
                                     max_size=n)), np.float64)
    zs = np.array(data.draw(st.lists(floats, min_size=n, max_size=n)), np.float64)
    native = np.array(data.draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n)), np.int64)
    t = TrackTables.from_columns(frame=frames, x=xs, y=xs[::-1].copy(), z=np.where(np.isnan(zs), np.nan, zs),
                                 native_id=native, session=SessionInfo(name="p"))
    # links go forward in time between distinct frames
    order = np.argsort(frames, kind="stable")
    fwd = [(int(a), int(b)) for a, b in zip(order[:-1], order[1:]) if frames[a] < frames[b]]
    t.links = {"source_id": np.array([a for a, _ in fwd], np.int64),
               "target_id": np.array([b for _, b in fwd], np.int64)}
    t.add_meta("position", "v", np.array(data.draw(st.lists(floats, min_size=n, max_size=n)), np.float64),
               owners=np.arange(n))
    with store.transaction() as c:
        sid = store.write_session(c, t, content_hash=f"p{next(_hashes)}")
    back = store.read_session(sid)
    assert compare_tables(t, back) == []


@settings(max_examples=200, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | floats | st.text(),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4)
    | st.tuples(c, c), max_leaves=12))
def test_values_property_any_value_roundtrips(v):
    from trackstore.model import _same_value

    assert _same_value(values.decode(*values.encode(v)), v)
    assert _same_value(values.from_json_text(values.to_json_text(v)), v)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=6) | st.none() | st.integers() | st.booleans() | floats, max_size=8),
       st.booleans())
def test_encode_column_of_objects_is_each_value_encoded(vals, only_text):
    """A column of Python objects (all text takes a bulk path) encodes exactly as value by value."""
    if only_text:
        vals = [str(v) for v in vals]
    arr = np.empty(len(vals), dtype=object)
    arr[:] = vals
    cols = values.encode_column(arr)
    names = ("vtype", "v_int", "v_float", "v_bool", "v_str", "v_json")
    for i, v in enumerate(vals):
        got = tuple(cols[k] if k == "vtype" and isinstance(cols[k], str) else
                    (cols[k][i] if cols.get(k) is not None else None) for k in names)
        assert got == values.encode(v) or (v != v and got[2] != got[2]), (i, v, got)


def test_values_refuse_arbitrary_objects():
    with pytest.raises(TypeError, match="cannot store"):
        values.encode(object())


def test_metablock_lengths_must_match():
    with pytest.raises(ValueError, match="differ in length"):
        MetaBlock("position", "k", np.zeros(3), owners=[1, 2])


def test_store_signed_zeros_survive_constant_segments(any_store):
    """DuckDB stores a segment of zeros as one constant and keeps the first zero's sign for all;
    the store records -0.0 positions and metadata values so both signs come back."""
    n = 6
    t = TrackTables.from_columns(frame=np.arange(n), x=np.array([-0.0, 0.0, 0.0, -0.0, 0.0, 0.0]),
                                 y=np.array([0.0, -0.0, -0.0, 0.0, 0.0, -0.0]), z=np.zeros(n),
                                 quality=np.array([-0.0] * n), session=SessionInfo(name="zeros"))
    t.add_meta("position", "v", np.array([-0.0, 0.0, -0.0, 0.0, 0.0, 0.0]), owners=np.arange(n))
    t.add_meta("session", "neg", -0.0)
    t.add_meta("session", "pos", 0.0)
    t.add_meta("session", "np_neg", np.float64(-0.0))
    _, back = _roundtrip(any_store, t)
    assert compare_tables(t, back) == []
    for col in ("x", "y", "z", "quality"):
        assert np.signbit(back.positions[col]).tolist() == np.signbit(t.positions[col]).tolist(), col
    assert [math.copysign(1, v) for v in back.session_meta().values()] == [-1, 1, -1]


def test_consumed_session_comes_back_whole(any_store):
    """``consume=True`` (what ingest does) drops stored position columns early, yet everything is
    stored: quality, origin, native_id, radius, and the sign of a -0.0 quality."""
    import copy

    n = 6
    t = TrackTables.from_columns(frame=np.arange(n), x=np.arange(n) * 1.5, y=np.ones(n), track_id=np.zeros(n, int),
                                 quality=np.array([-0.0, 0.5, 0.0, -0.0, 1.0, 0.25]), radius=np.full(n, 2.5),
                                 native_id=np.arange(100, 100 + n), origin=np.array([0, 1, 2, 0, 0, 1], np.int8),
                                 session=SessionInfo(name="consumed"))
    t.links = {"source_id": np.arange(n - 1), "target_id": np.arange(1, n)}
    keep = copy.deepcopy(t)
    with any_store.transaction() as c:
        sid = any_store.write_session(c, t, content_hash="consumed", consume=True)
    assert not {"quality", "origin", "native_id", "radius"} & set(t.positions)  # handed over, dropped
    back = any_store.read_session(sid)
    assert compare_tables(keep, back) == []
    assert np.signbit(back.positions["quality"]).tolist() == np.signbit(keep.positions["quality"]).tolist()


def test_duckdb_insert_releases_its_source_before_commit(store):
    """One session's columns must not all stay pinned until commit (a dropped view did that)."""
    import gc
    import weakref

    from trackstore.store import _DuckDBBulk

    with store.transaction() as c:
        col = np.arange(1000, dtype=np.int64)
        ref = weakref.ref(col)
        _DuckDBBulk(c)._insert("frames", {"frame": col, "time": col * 0.5}, 7, "frame, time")
        del col
        gc.collect()
        assert ref() is None, "DuckDB still holds the inserted array inside the transaction"
        assert c.exec_driver_sql("SELECT count(*), max(time) FROM frames WHERE session_id = 7").one() == (1000, 499.5)


def test_prefetch_keeps_order_passes_errors_and_stops_early():
    import itertools as it

    from trackstore.store import _prefetch

    assert list(_prefetch(iter([b"a", b"b", b"c"]))) == [b"a", b"b", b"c"]

    def broken():
        yield b"x"
        raise ValueError("bad piece")

    with pytest.raises(ValueError, match="bad piece"):
        list(_prefetch(broken()))
    g = _prefetch(bytes([i % 256]) for i in it.count())  # endless: the consumer stops after 3
    assert [next(g) for _ in range(3)] == [b"\x00", b"\x01", b"\x02"]
    g.close()  # returns (the producer sees the stop), does not hang


def test_pgcopy_pieces_join_to_the_whole_stream():
    from trackstore import _pgcopy
    from trackstore._pgcopy import Column

    rng = np.random.default_rng(3)
    n = 1000
    x = rng.normal(size=n)
    x[rng.random(n) < 0.2] = np.nan
    cols = [Column(np.arange(n, dtype=np.int64), "int8"), Column(x, "float8", np.isnan(x)),
            Column(rng.integers(0, 3, n), "text", None, ("observed", "gap_closed", "validated"))]
    whole = _pgcopy.payload(cols)
    pieces = list(_pgcopy.payload_chunks(cols, rows=97))
    assert bytes(pieces[0]) == _pgcopy.HEADER and bytes(pieces[-1]) == _pgcopy.TRAILER
    assert _pgcopy.TRAILER not in [bytes(p) for p in pieces[1:-1]]  # one trailer, at the very end
    # each of the 11 ranges of <= 97 rows is one or more layout groups
    assert len(pieces) - 2 >= 11
    # rows are grouped by layout within each piece, so compare the multiset of rows, not the bytes
    assert sum(len(p) for p in pieces) == len(whole)
    assert sorted(_rows(b"".join(pieces))) == sorted(_rows(whole))


def test_pgcopy_rows_decode_to_the_columns():
    """Every row of the stream, decoded by the format's rules (int16 field count; per field an int32
    length, -1 for NULL, then the big-endian value), is the input row: NULLs, text and numbers."""
    import struct

    from trackstore import _pgcopy
    from trackstore._pgcopy import Column

    rng = np.random.default_rng(5)
    n = 300
    a = rng.integers(-2**40, 2**40, n)
    x = rng.normal(size=n)
    x[rng.random(n) < 0.3] = np.nan
    k = rng.integers(-5, 5, n).astype(np.int32)
    cats = ("observed", "", "validated")
    c = rng.integers(0, 3, n)
    flag = rng.random(n) < 0.5
    cols = [Column(a, "int8"), Column(x, "float8", np.isnan(x)), Column(k, "int4", k < -3),
            Column(c, "text", None, cats), Column(flag, "bool")]
    want = [(int(a[i]), None if np.isnan(x[i]) else float(x[i]), None if k[i] < -3 else int(k[i]),
             cats[c[i]].encode(), bool(flag[i])) for i in range(n)]
    got = []
    for r in _rows(_pgcopy.payload(cols)):
        (nf,), j, vals = struct.unpack(">h", r[:2]), 2, []
        assert nf == 5
        for fmt in (">q", ">d", ">i", None, "?"):
            (ln,) = struct.unpack(">i", r[j:j + 4])
            j += 4
            if ln == -1:
                vals.append(None)
                continue
            raw = r[j:j + ln]
            j += ln
            vals.append(raw if fmt is None else struct.unpack(fmt, raw)[0])
        got.append(tuple(vals))
    assert sorted(got, key=repr) == sorted(want, key=repr)


def _rows(stream: bytes) -> list[bytes]:
    """Split a binary COPY stream into its rows (test helper, knows only fixed-width fields)."""
    import struct

    from trackstore import _pgcopy

    out, i = [], len(_pgcopy.HEADER)
    while True:
        (nf,) = struct.unpack(">h", stream[i:i + 2])
        if nf == -1:
            return out
        j = i + 2
        for _ in range(nf):
            (ln,) = struct.unpack(">i", stream[j:j + 4])
            j += 4 + max(ln, 0)
        out.append(stream[i:j])
        i = j


@pytest.mark.parametrize("name", ["gap", "division", "three_d"])
def test_postgres_copy_in_many_pieces_roundtrips(pg_url, monkeypatch, name):
    """Sessions larger than one COPY piece (here 5 rows) arrive whole and in order."""
    from trackstore import _pgcopy
    from trackstore.store import Store

    monkeypatch.setattr(_pgcopy, "CHUNK_ROWS", 5)
    t = getattr(examples, name)()
    t.positions["origin"] = (np.arange(t.n_positions) % 3).astype(np.int8)
    with Store(pg_url) as s:
        s.upgrade()
        with s.transaction() as c:
            sid = s.write_session(c, t, content_hash=name)
        assert compare_tables(t, s.read_session(sid)) == []


def _metadata_blocks() -> list[MetaBlock]:
    """Blocks of every shape: scalars, typed columns, a mixed object column, an empty block."""
    return [MetaBlock.scalar("session", "name", "demo"), MetaBlock.scalar("session", "cfg", {"a": [1, 2]}),
            MetaBlock("position", "intensity", np.array([1.0, np.nan, -0.0, 4.0, 5.5]), np.array([4, 0, 1, 2, 3])),
            MetaBlock("position", "empty", np.array([], np.float64), np.array([], np.int64)),
            MetaBlock("track", "n", np.array([3, -1, 2**40], np.int64), np.array([0, 1, 2])),
            MetaBlock("track", "kind", np.array(["a", 2, None, 1.5, True, [1]], dtype=object), np.arange(6)),
            MetaBlock("link", "ok", np.array([True, False, True]), np.array([0, 1, 2]))]


@pytest.mark.parametrize("size", [1, 2, 5, 7, 1000])
def test_metadata_rows_cut_blocks_anywhere(size):
    """Values are built a batch at a time; wherever a batch boundary falls inside a block, the rows
    are each value's own encoding, in order, with the owner and block number beside it."""
    from trackstore.store import MetadataRows

    blocks = _metadata_blocks()
    rows = MetadataRows(blocks)
    batches = list(rows.batches(size))
    assert all(b.num_rows == size for b in batches[:-1]) and 0 < batches[-1].num_rows <= size
    got = pa.Table.from_batches(batches, schema=rows.schema).to_pylist()
    expected = []
    for seq, b in enumerate(blocks):
        vals = b.values.tolist() if b.values.dtype != object else list(b.values)
        mixed = len({values.encode(v)[0] for v in vals}) > 1  # a block of one type keeps it in its head
        for i, v in enumerate(vals):
            vt, *enc = values.encode(v)
            row = dict(zip(("v_int", "v_float", "v_bool", "v_str", "v_json"), enc))
            row["vtype"] = vt if mixed else None
            row.update(seq=seq, owner_id=None if b.owners is None else int(b.owners[i]))
            expected.append(row)
    assert len(got) == len(expected) == rows.num_rows
    for g, e in zip(got, expected):
        e = {k: v for k, v in e.items() if k in g}  # a column NULL in every row is not built
        assert {k: v for k, v in g.items() if k != "v_float"} == {k: v for k, v in e.items() if k != "v_float"}
        assert (g["v_float"] is None and e["v_float"] is None) or math.isnan(e["v_float"]) and math.isnan(
            g["v_float"]) or (g["v_float"] == e["v_float"] and math.copysign(1, g["v_float"]) == math.copysign(
                1, e["v_float"]))
    assert rows.heads["key"].to_pylist() == [b.key for b in blocks]


def test_metadata_over_many_row_groups_roundtrips(any_store):
    """More values than two row groups, spread over blocks that straddle the batch boundaries."""
    from trackstore.store import _BATCH_ROWS

    t = examples.linear()
    n = _BATCH_ROWS * 2 + 1234
    rng = np.random.default_rng(3)
    t.add_meta("position", "a", rng.random(n), owners=np.arange(n))
    t.add_meta("frame", "label", np.array([f"f{i}" for i in range(5000)], dtype=object), owners=np.arange(5000))
    t.add_meta("position", "b", rng.integers(-5, 5, _BATCH_ROWS), owners=np.arange(_BATCH_ROWS))
    mixed = np.array(["a", 2, None, 1.5, True, [1], -0.0, np.float32(2.5)] * 3, dtype=object)
    t.add_meta("position", "mixed", mixed, owners=np.arange(len(mixed)))
    _, back = _roundtrip(any_store, t)
    assert compare_tables(t, back) == []
    got = next(b for b in back.metadata if b.key == "mixed").values.tolist()
    assert [type(v) for v in got] == [type(v) for v in mixed.tolist()]
    assert math.copysign(1, got[6]) == -1


@pytest.mark.parametrize("link_chunk", [10_000, 20], ids=["links-by-row-group", "links-in-big-ranges"])
def test_a_consumed_write_stores_every_table(store, monkeypatch, link_chunk):
    """``consume=True`` (what ingest does) stores the tables one at a time and frees each: nothing
    is lost, with and without the position columns the links do not need, whatever the link ranges."""
    import copy

    from trackstore import store as store_mod

    monkeypatch.setattr(store_mod, "_BATCH_ROWS", 7)  # row groups of 7: a session of 29 links has 5
    monkeypatch.setattr(store_mod, "_LINK_CHUNK", link_chunk)
    rng = np.random.default_rng(5)
    n = 30
    for extra in (False, True):
        t = TrackTables.from_columns(frame=np.arange(n), x=rng.random(n), y=rng.random(n), track_id=np.zeros(n, int),
                                     session=SessionInfo(name=f"consumed {extra}", frame_interval=2.0))
        t.links = {"source_id": np.arange(n - 1), "target_id": np.arange(1, n)}
        t.add_meta("position", "intensity", rng.random(n), owners=np.arange(n))
        t.add_meta("link", "p", rng.random(n - 1), owners=np.arange(n - 1))
        if extra:
            t.positions["quality"] = rng.random(n)
            t.positions["radius"] = rng.random(n)
        kept = copy.deepcopy(t)
        with store.transaction() as c:
            sid = store.write_session(c, t, content_hash=f"consumed {extra}", consume=True)
        assert not t.positions and not t.links and not t.metadata  # handed over and freed
        assert compare_tables(kept, store.read_session(sid)) == []
