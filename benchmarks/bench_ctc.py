"""CTC ingest/export benchmark against traccuracy and tracksdata, measured in the same run.

Data: a synthetic CTC sequence (``gen_ctc.py --frames 100 --size 512 --cells 200``: ~22,000
labels in 100 LZW frames of 512x512) generated on demand into ``benchmarks/_data/`` (git-ignored).

Ours, each in a fresh process (so peak RSS is that operation's, interpreter and imports included):
  ingest  = ``ctc.read`` (streams the frames) + one store transaction into a new DuckDB file
  export  = ``Store.read_session`` + ``ctc.write`` (masks repainted from their runs)
Peers, installed on demand into ``benchmarks/_data/venv`` (a failed install is reported):
  traccuracy  ``load_ctc_data(run_checks=True)``     (whole mask stack in memory)
  tracksdata  ``RustWorkXGraph.from_ctc``            (in memory)
  tracksdata  ``SQLGraph.from_ctc`` on SQLite        (a database, like ours)
Times are medians over ``--repeat`` runs of the operation alone (imports excluded), as in
specs/trackmate_ctc_geff.md §5. Targets: ingest <= 2.5 s with peak RSS < 0.3 GB, export <= 3 s.

Example: python benchmarks/bench_ctc.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import peer_python

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / "_data"
VENV = DATA / "venv"
PEERS = {"traccuracy": "traccuracy", "tracksdata": "tracksdata"}
TARGETS = {"ingest": 2.5, "export": 3.0}
RSS_TARGET_GB = 0.3

# one operation in a fresh interpreter; prints {"seconds": ..., "rss_gb": ...}
OPS = {
    "ours_ingest": """
import time, resource, warnings
from trackstore.formats import ctc
from trackstore.store import Store
t0 = time.perf_counter()
tables = ctc.read(SRC)
with Store(DB) as s, s.transaction() as conn:
    s.write_session(conn, tables, content_hash="bench")
dt = time.perf_counter() - t0
""",
    "ours_export": """
import time, resource
from trackstore.formats import ctc
from trackstore.store import Store
t0 = time.perf_counter()
with Store(DB, read_only=True) as s:
    tables = s.read_session(1)
ctc.write(tables, OUT, overwrite=True)
dt = time.perf_counter() - t0
""",
    "traccuracy": """
import time, resource
from traccuracy.loaders import load_ctc_data
t0 = time.perf_counter()
load_ctc_data(SRC, SRC + "/man_track.txt", run_checks=True)
dt = time.perf_counter() - t0
""",
    "tracksdata_memory": """
import time, resource
from tracksdata.graph import RustWorkXGraph
t0 = time.perf_counter()
RustWorkXGraph.from_ctc(SRC)
dt = time.perf_counter() - t0
""",
    "tracksdata_sqlite": """
import time, resource
from tracksdata.graph import SQLGraph
t0 = time.perf_counter()
SQLGraph.from_ctc(SRC, drivername="sqlite", database=DB)
dt = time.perf_counter() - t0
""",
}
_TAIL = """
import json
print(json.dumps({"seconds": dt, "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}))
"""


def find_generator(arg: str | None) -> Path:
    for cand in [arg, REPO.parent / "shared" / "tools" / "gen_ctc.py", Path("/work/shared/tools/gen_ctc.py")]:
        if cand and Path(cand).is_file():
            return Path(cand)
    sys.exit("gen_ctc.py not found: pass --gen PATH")


def generate(gen: Path, frames: int, size: int, cells: int) -> Path:
    out = DATA / f"ctc_{frames}x{size}_{cells}"
    tra = out / "01_GT" / "TRA"
    if not (tra / "man_track.txt").is_file():
        try:
            import imagecodecs  # noqa: F401
            comp = "lzw"  # what the peers were measured on
        except ModuleNotFoundError:
            comp = "zlib"
            print("imagecodecs is not installed: generating zlib instead of LZW frames")
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run([sys.executable, str(gen), "--frames", str(frames), "--size", str(size), "--cells",
                        str(cells), "--compression", comp, "--out", str(out)], check=True)
    return tra


def run_op(python: str, op: str, env: dict[str, str], repeat: int) -> dict:
    code = "".join(f"{k} = {v!r}\n" for k, v in env.items()) + OPS[op] + _TAIL
    runs = []
    for _ in range(repeat):
        r = subprocess.run([python, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
        if r.returncode != 0:
            return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    return {"seconds": statistics.median(x["seconds"] for x in runs), "runs": [round(x["seconds"], 3) for x in runs],
            "rss_gb": max(x["rss_gb"] for x in runs)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--cells", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--gen", help="path of gen_ctc.py (default: shared/tools next to the repo)")
    ap.add_argument("--no-peers", action="store_true", help="measure trackstore only")
    a = ap.parse_args(argv)
    DATA.mkdir(parents=True, exist_ok=True)
    src = generate(find_generator(a.gen), a.frames, a.size, a.cells)
    work = Path(tempfile.mkdtemp(prefix="bench_ctc_"))
    results: dict[str, dict] = {}
    try:
        for _ in range(a.repeat):  # each ingest needs a new store file
            (work / "ours.duckdb").unlink(missing_ok=True)
            r = run_op(sys.executable, "ours_ingest", {"SRC": str(src), "DB": str(work / "ours.duckdb")}, 1)
            if "error" in r:
                results["ours_ingest"] = r
                break
            prev = results.get("ours_ingest", {"runs": [], "rss_gb": 0})
            results["ours_ingest"] = {"runs": prev["runs"] + r["runs"], "rss_gb": max(prev["rss_gb"], r["rss_gb"])}
        if "runs" in results["ours_ingest"]:
            results["ours_ingest"]["seconds"] = statistics.median(results["ours_ingest"]["runs"])
            results["ours_export"] = run_op(sys.executable, "ours_export",
                                            {"DB": str(work / "ours.duckdb"), "OUT": str(work / "export")}, a.repeat)
        problems: dict[str, str] = {}
        if not a.no_peers:
            py, problems = peer_python(VENV, PEERS, ("imagecodecs",))
            for op in ("traccuracy", "tracksdata_memory", "tracksdata_sqlite"):
                pkg = op.split("_")[0]
                if pkg in problems:
                    results[op] = {"error": f"not installed: {problems[pkg]}"}
                    continue
                runs = []
                for i in range(a.repeat):
                    db = work / f"td{i}.sqlite"
                    r = run_op(py, op, {"SRC": str(src), "DB": str(db)}, 1)
                    if "error" in r:
                        runs = r
                        break
                    runs.append(r)
                results[op] = runs if isinstance(runs, dict) else {
                    "seconds": statistics.median(x["seconds"] for x in runs),
                    "runs": [x["runs"][0] for x in runs], "rss_gb": max(x["rss_gb"] for x in runs)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results, a, src)
    ok = all(results.get(f"ours_{k}", {}).get("seconds", 1e9) <= v for k, v in TARGETS.items())
    ok = ok and results.get("ours_ingest", {}).get("rss_gb", 9) < RSS_TARGET_GB
    return 0 if ok else 1


def report(results: dict, a, src: Path) -> None:
    print(f"\nCTC {a.frames} frames x {a.size}^2, ~{a.cells} cells ({src}); medians of {a.repeat}\n")
    print(f"{'operation':<22}{'seconds':>9}{'peak RSS GB':>13}  runs")
    for op, r in results.items():
        if "error" in r:
            print(f"{op:<22}{'-':>9}{'-':>13}  {r['error']}")
        else:
            print(f"{op:<22}{r['seconds']:>9.2f}{r['rss_gb']:>13.3f}  {r['runs']}")
    ing = results.get("ours_ingest", {}).get("seconds")
    exp = results.get("ours_export", {}).get("seconds")
    print()
    for op in ("traccuracy", "tracksdata_memory", "tracksdata_sqlite"):
        r = results.get(op, {})
        if ing and "seconds" in r:
            print(f"ingest vs {op:<18} {r['seconds'] / ing:5.1f}x faster ({r['seconds']:.2f} s vs {ing:.2f} s)")
        elif op in results:
            print(f"ingest vs {op:<18} not measured: {r.get('error')}")
    print()
    for key, limit in TARGETS.items():
        got = {"ingest": ing, "export": exp}[key]
        verdict = "ok" if got is not None and got <= limit else "MISSED"
        print(f"target {key} <= {limit} s: {'-' if got is None else f'{got:.2f} s'} {verdict}")
    rss = results.get("ours_ingest", {}).get("rss_gb")
    print(f"target ingest peak RSS < {RSS_TARGET_GB} GB: {'-' if rss is None else f'{rss:.3f} GB'} "
          f"{'ok' if rss is not None and rss < RSS_TARGET_GB else 'MISSED'}")


if __name__ == "__main__":
    t0 = time.perf_counter()
    code = main()
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")
    sys.exit(code)
