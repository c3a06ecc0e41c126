"""TrackMate XML: ingest and export against peers and a bare-parser floor measured in the same run.

Input: ``gen_trackmate.py --frames 500 --per-frame 400 --p-die 0.01 --p-div 0.003 --p-gap 0.005``
(~199 k spots, ~197 k edges, ~1,800 tracks, ~118 MB, the file of shared/specs/trackmate_ctc_geff.md
§5), generated on demand under ``benchmarks/_data/trackmate/`` (git-ignored) and reused.

Each step runs in a fresh process (cold imports, its own peak RSS); medians of ``--repeat`` runs:

=================  ===========================================================================
ours ingest        ``ingest(store, [xml])``: stream-parse, validate, hash the file, commit every
                   spot, edge, track, feature and setting in one transaction (store schema made
                   before the clock starts)
ours read          ``trackmate.read`` alone (no database)
ours export        ``export(store, session, "trackmate", out)``: read the session back from the
                   store and write the XML
ours write         ``trackmate.write`` of the session already in memory
geff               ``geff.convert.from_trackmate_xml_to_geff`` (parse + zarr write)
pytrackmate        ``pytrackmate.trackmate_peak_import`` (spots only: drops edges and tracks)
lxml floor         lxml ``iterparse`` + ``clear()`` of every Spot and Edge into two pandas
                   DataFrames of strings: no numbers, no tracks, no store (not a peer: the floor)
=================  ===========================================================================

Peers run in their own venv, ``benchmarks/_data/venv-trackmate`` (made on demand; a failed install
is reported, not fatal). Targets (issue 4): ingest <= 4 s and <= 0.5 GB peak, >= 4x faster than
geff's converter, export <= 4 s.

Run:  python benchmarks/bench_trackmate.py [--repeat 3] [--no-peers] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from _util import peer_python

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / "_data" / "trackmate"
VENV = HERE / "_data" / "venv-trackmate"
PEERS = {"geff": "geff", "pytrackmate": "pytrackmate", "pandas": "pandas", "lxml": "lxml"}
GEN_ARGS = ["--frames", "500", "--per-frame", "400", "--p-die", "0.01", "--p-div", "0.003", "--p-gap", "0.005"]
TARGET_INGEST_S, TARGET_INGEST_GB, TARGET_VS_GEFF, TARGET_EXPORT_S = 4.0, 0.5, 4.0, 4.0

_HEAD = """
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
_clock = {}
def _start():
    _clock["wall"], _clock["cpu"] = time.perf_counter(), time.process_time()
def _done(**extra):
    print(json.dumps({"seconds": time.perf_counter() - _clock["wall"], "cpu": time.process_time() - _clock["cpu"],
                      "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, **extra}))
"""

OPS = {
    "ours_ingest": """
from pathlib import Path
from trackstore import formats
from trackstore.ingest import ingest
from trackstore.store import Store
db = Path(OUT) / "ingest.duckdb"
db.unlink(missing_ok=True)
store = Store(db)
with store.transaction():
    pass  # the schema, made once per store
formats.get_format("trackmate")  # imports (the registry's too) before the clock, as for the peers
_start()
rep = ingest(store, [SRC], fmt="trackmate")[0]
_done(counts=rep.counts)
store.close()
""",
    "ours_read": """
from pathlib import Path
from trackstore.formats import trackmate
_start()
t = trackmate.read(Path(SRC))
_done(positions=t.n_positions)
""",
    "ours_export": """
from pathlib import Path
from trackstore.export import export
from trackstore.store import Store
store = Store(Path(OUT) / "stored.duckdb", read_only=True)
_start()
export(store, 1, "trackmate", Path(OUT) / "exported.xml", overwrite=True)
_done()
""",
    "ours_write": """
from pathlib import Path
from trackstore.formats import trackmate
t = trackmate.read(Path(SRC))
_start()
trackmate.write(t, Path(OUT) / "written.xml", overwrite=True)
_done()
""",
    "geff": """
import shutil
from pathlib import Path
from geff.convert import from_trackmate_xml_to_geff
out = Path(OUT) / "peer.geff"
shutil.rmtree(out, ignore_errors=True)
_start()
from_trackmate_xml_to_geff(SRC, out, overwrite=True)
_done()
""",
    "pytrackmate": """
from pytrackmate import trackmate_peak_import
_start()
df = trackmate_peak_import(SRC)
_done(rows=len(df))
""",
    "lxml_floor": """
import pandas as pd
from lxml import etree
_start()
spots, edges = [], []
for _, el in etree.iterparse(SRC, events=("end",), tag=("Spot", "Edge")):
    (spots if el.tag == "Spot" else edges).append(dict(el.attrib))
    el.clear()
    while el.getprevious() is not None:
        del el.getparent()[0]
s, e = pd.DataFrame(spots), pd.DataFrame(edges)
_done(rows=len(s) + len(e))
""",
}


def find_generator(given: str | None) -> Path:
    for p in ([Path(given)] if given else []) + [REPO.parent / "shared" / "tools" / "gen_trackmate.py"]:
        if p.exists():
            return p
    sys.exit("gen_trackmate.py not found: pass --gen PATH (it lives in shared/tools/)")


def make_input(gen: Path, quick: bool) -> Path:
    args = list(GEN_ARGS)
    if quick:
        args[args.index("--frames") + 1] = "50"
    xml = DATA / ("tm_20k.xml" if quick else "tm_200k.xml")
    if not xml.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        print(f"generating {xml} ...", flush=True)
        subprocess.run([sys.executable, str(gen), *args, "--out", str(xml)], check=True)
    return xml


def run(python: str, op: str, src: Path, repeat: int) -> dict:
    code = _HEAD + f"SRC = {str(src)!r}\nOUT = {str(DATA)!r}\n" + OPS[op]
    runs = []
    for _ in range(repeat):
        r = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=REPO,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
        if r.returncode != 0:
            return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    return {"seconds": statistics.median(x["seconds"] for x in runs), "runs": [round(x["seconds"], 2) for x in runs],
            "cpu": statistics.median(x["cpu"] for x in runs), "rss_gb": max(x["rss_gb"] for x in runs),
            "last": runs[-1]}


def store_session(src: Path) -> None:
    """The store the export step reads: the session ingested once, untimed."""
    db = DATA / "stored.duckdb"
    db.unlink(missing_ok=True)
    code = ("import warnings; warnings.simplefilter('ignore')\n"
            "from trackstore.ingest import ingest\nfrom trackstore.store import Store\n"
            f"ingest(Store({str(db)!r}), [{str(src)!r}], fmt='trackmate')\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--gen", help="path of gen_trackmate.py (default: shared/tools next to the repo)")
    ap.add_argument("--no-peers", action="store_true", help="measure trackstore only")
    ap.add_argument("--quick", action="store_true", help="a tenth of the size (50 frames), for a smoke run")
    a = ap.parse_args(argv)
    src = make_input(find_generator(a.gen), a.quick)
    print(f"TrackMate XML {src.name}: {src.stat().st_size / 1e6:.0f} MB; medians of {a.repeat} fresh processes",
          flush=True)
    store_session(src)
    res = {op: run(sys.executable, op, src, a.repeat) for op in ("ours_ingest", "ours_read", "ours_export",
                                                                 "ours_write")}
    py, problems = (None, {}) if a.no_peers else peer_python(VENV, PEERS)
    for op, mod in (("geff", "geff"), ("pytrackmate", "pytrackmate"), ("lxml_floor", "pandas")):
        if py is None:
            res[op] = {"error": "skipped (--no-peers)"}
        elif mod in problems or (op == "lxml_floor" and "lxml" in problems):
            res[op] = {"error": f"not installed: {problems.get(mod) or problems.get('lxml')}"}
        else:
            res[op] = run(py, op, src, a.repeat)
    counts = res["ours_ingest"].get("last", {}).get("counts", {})
    if counts:
        print(f"  {counts.get('positions')} spots, {counts.get('links')} edges, {counts.get('metadata')} typed "
              "feature values and settings")
    print(f"\n  {'step':<14}{'wall s':>8}{'cpu s':>8}{'peak RSS GB':>13}  wall of each run")
    for op, r in res.items():
        if "error" in r:
            print(f"  {op:<14}{'-':>8}{'-':>8}{'-':>13}  {r['error']}")
        else:
            print(f"  {op:<14}{r['seconds']:>8.2f}{r['cpu']:>8.2f}{r['rss_gb']:>13.3f}  {r['runs']}")
    ingest_s = res["ours_ingest"].get("seconds")
    print()
    if ingest_s:
        for op, what in (("geff", "geff's TrackMate->GEFF converter"), ("pytrackmate", "pytrackmate (spots only)")):
            if "seconds" in res[op]:
                print(f"  ingest vs {what}: {res[op]['seconds'] / ingest_s:.1f}x faster (cpu "
                      f"{res[op]['cpu'] / res['ours_ingest']['cpu']:.1f}x), peak memory "
                      f"{res['ours_ingest']['rss_gb'] / res[op]['rss_gb']:.2f}x theirs")
        if "seconds" in res["lxml_floor"]:
            f = res["lxml_floor"]
            print(f"  ingest vs the bare lxml floor: {ingest_s / f['seconds']:.2f}x its time, "
                  f"{res['ours_ingest']['rss_gb'] / f['rss_gb']:.2f}x its memory (read alone: "
                  f"{res['ours_read']['seconds'] / f['seconds']:.2f}x its time)")
    print("  (the machine may be shared: wall times stretch under load, cpu times and ratios much less)")
    checks = [
        ("ingest <= 4 s", ingest_s is not None and ingest_s <= TARGET_INGEST_S),
        ("ingest peak <= 0.5 GB", res["ours_ingest"].get("rss_gb", 99) <= TARGET_INGEST_GB),
        (">= 4x faster than geff", "seconds" in res["geff"] and ingest_s is not None
         and res["geff"]["seconds"] / ingest_s >= TARGET_VS_GEFF),
        ("export <= 4 s", res["ours_export"].get("seconds", 99) <= TARGET_EXPORT_S),
    ]
    print("\n  targets: " + ", ".join(f"{name}: {'met' if ok else 'MISSED'}" for name, ok in checks))
    if a.quick:
        print("  (--quick: a tenth of the size; the targets are for the full file)")
    for p in (DATA / "peer.geff",):
        shutil.rmtree(p, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
