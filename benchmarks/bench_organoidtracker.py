"""OrganoidTracker .aut benchmarks: ingest and export of 1,000 cells x 300 time points, v2 and v1.

Inputs: ``shared/tools/gen_aut.py --cells 1000 --time-points 300 --merges 5 --singletons 5`` (with
metadata: intensity, type, ending, link_probability, lineage colour), written as v2 and as its v1
twin. Every figure is measured in a fresh process, against a floor measured in the same run: a raw
parse of the same file (orjson, and the standard library for reference).

Targets: ingest into the store (read, validate, hash, write, commit) <= 1 s for v2 and <= 2 s for
v1, peak memory <= 3x the file size, and export of the stored session back to v2 <= 1 s.
OrganoidTracker's own loader takes about 3.3-4.6 s (v2) and 7-11 s (v1) on this machine
(specs/organoidtracker.md section 7).

Peak memory is reported twice: the process's peak resident set, and its growth over the process
right before the step (after Python, numpy, DuckDB, SQLAlchemy and pyarrow are imported), which is
what the step itself costs. ``pyarrow.dataset`` counts as a library: DuckDB imports it at its first
Arrow scan, 23 MB of shared-library code whatever the file's size.

A big file's v2 tracks / v1 links are read by a forked child (trackstore/_forked.py). The ingest is
also timed without it (``TRACKSTORE_FORK=0``), alternating run by run; the child's memory is counted
by one more ingest that samples both processes' proportional set sizes each millisecond.

Run:  python benchmarks/bench_organoidtracker.py            (full size)
      python benchmarks/bench_organoidtracker.py --quick    (100 cells, for a smoke run)
Inputs are generated on demand under benchmarks/_data/ (git-ignored) and reused.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from _util import HERE, ROOT, row, run_child

GEN = ROOT.parent / "shared" / "tools" / "gen_aut.py"

# each child measures its resident set right before the step (rss_mb) and its peak after (peak_mb)
FLOOR = r"""
import gc
path, which = sys.argv[1], sys.argv[2]
if which == "orjson":
    import orjson
    loads = orjson.loads
else:
    import json
    loads = json.loads
before = rss_mb()
t0 = time.perf_counter()
with open(path, "rb") as f:
    doc = loads(f.read())
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "peak_mb": peak_mb(), "growth_mb": peak_mb() - before}))
"""

INGEST = r"""
import os, threading
import trackstore
from trackstore import open_store, ingest, _forked
import trackstore.formats.organoidtracker, duckdb, pyarrow, pyarrow.dataset, sqlalchemy, numpy
path, db = sys.argv[1], sys.argv[2]
with open_store(db) as store, store.transaction():
    pass  # a migrated, empty store: what is measured is the ingest itself

# with "sample": this process and its children (the forked reader) together, by their proportional
# set sizes (a page shared by two counts half in each) every millisecond, a thread's work that
# slows the ingest: the time of such a run is not reported
sample, me, stop, pss_peak = sys.argv[3:] == ["sample"], os.getpid(), threading.Event(), [0.0]
def pss(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next((int(l.split()[1]) / 1024 for l in f if l.startswith("Pss:")), 0.0)
    except OSError:  # the child has just ended
        return 0.0
def together():
    try:
        with open(f"/proc/{me}/task/{me}/children") as f:
            kids = f.read().split()
    except OSError:
        kids = []
    return pss(me) + sum(pss(k) for k in kids)
def sampler():
    while not stop.is_set():
        pss_peak[0] = max(pss_peak[0], together())
        stop.wait(0.001)
pss_before = together() if sample else 0.0
if sample:
    threading.Thread(target=sampler, daemon=True).start()
before = rss_mb()
t0 = time.perf_counter()
with open_store(db) as store:
    rep = ingest(store, [path], fmt="organoidtracker")[0]
dt = time.perf_counter() - t0
stop.set()
print(json.dumps({"seconds": dt, "positions": rep.counts["positions"], "links": rep.counts["links"],
                  "metadata": rep.counts["metadata"], "session_id": rep.session_id,
                  "peak_mb": peak_mb(), "growth_mb": peak_mb() - before, "child_mb": _forked.peak_growth_mb,
                  "together_mb": pss_peak[0] - pss_before if sample else None}))
"""

READ = r"""
from trackstore.formats import organoidtracker as ot
path = sys.argv[1]
before = rss_mb()
t0 = time.perf_counter()
t = ot.read(path)
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "positions": t.n_positions, "peak_mb": peak_mb(), "growth_mb": peak_mb() - before}))
"""

EXPORT = r"""
import warnings
from trackstore import open_store
from trackstore.formats import organoidtracker as ot
import duckdb, pyarrow, pyarrow.dataset, sqlalchemy, numpy  # the libraries, as for the ingest
db, sid, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
before = rss_mb()
t0 = time.perf_counter()
with open_store(db, read_only=True) as store:
    tables = store.read_session(sid)
t1 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("error")  # a lossless export: no warning may be raised
    ot.write(tables, out, overwrite=True)
t2 = time.perf_counter()
print(json.dumps({"seconds": t2 - t0, "read_session": t1 - t0, "write": t2 - t1, "peak_mb": peak_mb(),
                  "growth_mb": peak_mb() - before}))
"""

# DuckDB alone storing the rows the ingest stored, from ready Arrow tables: the store's own share
STORE = r"""
import os, duckdb, pyarrow, pyarrow.dataset, sqlalchemy, numpy
from trackstore import open_store
src, sid, db = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for old in (db, db + ".wal"):  # each run starts from an empty store
    if os.path.exists(old):
        os.remove(old)
names = ["sessions", "frames", "positions", "tracks", "links", "metadata_blocks", "metadata_values"]
with duckdb.connect(src, read_only=True) as c:
    rows = {t: c.execute(f"SELECT * FROM {t} WHERE session_id = {sid}").fetch_arrow_table() for t in names}
with open_store(db) as store, store.transaction():
    pass  # a migrated, empty store
c = duckdb.connect(db)
c.execute("SET memory_limit = '256MB'")  # what the ingest uses
before = rss_mb()
t0 = time.perf_counter()
c.execute("BEGIN")
for t in names:
    c.from_arrow(rows[t]).insert_into(t)
c.execute("COMMIT")
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "arrow_mb": sum(t.nbytes for t in rows.values()) / 1e6,
                  "peak_mb": peak_mb(), "growth_mb": peak_mb() - before}))
"""

# the exported file says the same as the input: positions, links, metadata, top-level keys
SAME = r"""
import json, orjson
from trackstore.formats import organoidtracker as ot
from trackstore.model import compare_tables
a, b = sys.argv[1], sys.argv[2]
ta, tb = ot.read(a), ot.read(b)
da, db = orjson.loads(open(a, "rb").read()), orjson.loads(open(b, "rb").read())
print(json.dumps({"tables": compare_tables(ta, tb, ignore_meta=["organoidtracker.key_order"]),
                  "keys": list(da) == list(db), "tracks": len(da.get("tracks", [])) == len(db.get("tracks", []))}))
"""


#: glibc's own tunable: a fixed mmap threshold (its default start value), so that every block of
#: 128 KB or more is mapped on its own and unmapped when freed (see docs/design.md, known limits)
MMAP_FIXED = {"MALLOC_MMAP_THRESHOLD_": "131072"}
#: the reader's own switch: no forked child (see trackstore/_forked.py)
NO_FORK = {"TRACKSTORE_FORK": "0"}


def generate(out_v2: Path, out_v1: Path, cells: int, time_points: int) -> None:
    if not GEN.is_file():
        sys.exit(f"the generator {GEN} is missing (shared/ must sit beside the repository)")
    out_v2.parent.mkdir(parents=True, exist_ok=True)
    print(f"generating {cells} cells x {time_points} time points (v2 and v1) ...", flush=True)
    subprocess.run([sys.executable, str(GEN), "--cells", str(cells), "--time-points", str(time_points),
                    "--merges", "5", "--singletons", "5", "--out-v2", str(out_v2), "--out-v1", str(out_v1)],
                   check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100 cells instead of 1,000")
    ap.add_argument("--cells", type=int, default=1000)
    ap.add_argument("--time-points", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3, help="runs per step; the median is shown")
    ap.add_argument("--workdir", type=Path, default=HERE / "_data" / "organoidtracker")
    a = ap.parse_args()
    if a.quick:
        a.cells = 100
    wd = a.workdir / f"{a.cells}x{a.time_points}"
    v2, v1 = wd / "big_v2.aut", wd / "big_v1.aut"
    if not (v2.exists() and v1.exists()):
        generate(v2, v1, a.cells, a.time_points)
    dbs = wd / "db"
    shutil.rmtree(dbs, ignore_errors=True)
    dbs.mkdir(parents=True)

    def middle(runs: list[dict]) -> dict:
        """The run of median time."""
        return sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]

    def median(code: str, *args: str) -> dict:
        return middle([run_child(code, *args) for _ in range(a.repeat)])

    targets = {"v2": 1.0, "v1": 2.0}
    for name, path in (("v2", v2), ("v1", v1)):
        size = path.stat().st_size / 1e6
        print(f"\n{name}: {path.name} ({size:.1f} MB), {a.cells} cells x {a.time_points} time points")
        floor = median(FLOOR, str(path), "orjson")
        std = median(FLOOR, str(path), "json")
        read = median(READ, str(path))
        # with and without the forked reader, run by run (this machine's speed drifts)
        ing, serial = [], []
        for i in range(a.repeat):
            ing.append(run_child(INGEST, str(path), str(dbs / f"{name}_{i}.duckdb")))
            serial.append(run_child(INGEST, str(path), str(dbs / f"{name}_serial_{i}.duckdb"), env=NO_FORK))
        ours, serial = middle(ing), middle(serial)
        n = ours["positions"]
        row("floor: orjson.loads of the file", f"{floor['seconds']:.3f} s (peak +{floor['growth_mb']:.0f} MB)")
        row("reference: json.loads (standard library)", f"{std['seconds']:.3f} s")
        row("trackstore read only (file -> TrackTables)",
            f"{read['seconds']:.3f} s, {n / read['seconds'] / 1e6:.2f} M positions/s, "
            f"{read['seconds'] / floor['seconds']:.2f}x the floor")
        row(f"trackstore ingest (read, validate, hash, store, commit; target <= {targets[name]:.0f} s)",
            f"{ours['seconds']:.3f} s, {n / ours['seconds'] / 1e6:.2f} M positions/s, "
            f"{ours['seconds'] / floor['seconds']:.2f}x the floor")
        row("  rows stored", f"{n:,} positions, {ours['links']:,} links, {ours['metadata']:,} metadata values")
        if ours["child_mb"]:  # a forked child read the v2 tracks / v1 links (4 MB of them or more)
            row("  the same, all read in one process (TRACKSTORE_FORK=0)",
                f"{serial['seconds']:.3f} s: the forked reader saves {serial['seconds'] - ours['seconds']:.3f} s")
        row("peak memory of the ingest: growth / file size (target <= 3)",
            f"{ours['growth_mb']:.0f} MB / {size:.0f} MB = {ours['growth_mb'] / size:.2f}x "
            f"(whole process {ours['peak_mb']:.0f} MB)")
        if ours["child_mb"]:
            both = run_child(INGEST, str(path), str(dbs / f"{name}_sampled.duckdb"), "sample")
            row("  with the forked reader: its own growth; both together (PSS, sampled each ms)",
                f"{ours['child_mb']:.0f} MB; {both['together_mb']:.0f} MB = {both['together_mb'] / size:.2f}x")
        # glibc raises its mmap threshold (up to 32 MB) as big blocks are freed, so later column-sized
        # arrays come from its heap, whose freed holes stay resident; a fixed threshold returns them
        tuned = [run_child(INGEST, str(path), str(dbs / f"{name}_mmap_{i}.duckdb"), env=MMAP_FIXED)
                 for i in range(a.repeat)]
        tuned = middle(tuned)
        row("  the same with MALLOC_MMAP_THRESHOLD_=131072 (glibc)",
            f"{tuned['seconds']:.3f} s, growth {tuned['growth_mb']:.0f} MB = {tuned['growth_mb'] / size:.2f}x")
        row("peak memory of the read alone: growth / file size",
            f"{read['growth_mb']:.0f} MB / {size:.0f} MB = {read['growth_mb'] / size:.2f}x")
        db = str(dbs / f"{name}_{ing.index(ours)}.duckdb")
        st = median(STORE, db, str(ours["session_id"]), str(dbs / f"{name}_store_floor.duckdb"))
        row("  DuckDB alone storing the same rows from ready Arrow tables",
            f"{st['seconds']:.3f} s, peak +{st['growth_mb']:.0f} MB = {st['growth_mb'] / size:.2f}x "
            f"(on top of the {st['arrow_mb']:.0f} MB of Arrow rows)")
        if name == "v2":
            out = wd / "exported_v2.aut"
            ex = median(EXPORT, db, str(ours["session_id"]), str(out))
            row("export of the stored session to v2 (target <= 1 s)",
                f"{ex['seconds']:.3f} s (read_session {ex['read_session']:.3f} s + write {ex['write']:.3f} s), "
                f"{n / ex['seconds'] / 1e6:.2f} M positions/s")
            same = run_child(SAME, str(path), str(out))
            row("exported file == input (positions, links, metadata, keys)",
                "yes" if not same["tables"] and same["keys"] and same["tracks"] else f"NO: {same}")


if __name__ == "__main__":
    main()
