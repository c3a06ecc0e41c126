"""GEFF read benchmark: the GEFF of a 200k-spot TrackMate file, ours against geff's own readers.

Data, generated on demand into ``benchmarks/_data/`` (git-ignored):
  ``tm_200k.xml``  ``gen_trackmate.py --frames 500 --per-frame 400 --p-die 0.01 --p-div 0.003
                   --p-gap 0.005`` (199,101 spots, 197,299 edges, 1,774 tracks)
  ``tm_200k_trackstore.geff``  written by trackstore (``trackmate.read`` + ``geff.write``)
  ``tm_200k_geffconvert.geff`` written by ``geff.convert.from_trackmate_xml_to_geff`` (the file
                               the peers were measured on in specs/trackmate_ctc_geff.md §5)
Each read runs in a fresh process and times the operation alone (imports excluded):
  ours        ``trackstore.formats.geff.read`` -> TrackTables (positions, links, tracks, metadata)
  networkx    ``geff.read(path)``                       (geff's default backend)
  rustworkx   ``geff.read(path, backend="rustworkx")``  (installed on demand into
              ``benchmarks/_data/venv``; a failed install is reported)
Target: ours <= 1 s.

Example: python benchmarks/bench_geff.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / "_data"
VENV = DATA / "venv"
TARGET = 1.0

OPS = {
    # every reader's libraries are imported before the clock starts (our reader imports geff lazily)
    "ours": "import geff.core_io, zarr\nfrom trackstore.formats import geff as g\nt0 = time.perf_counter()\n"
            "t = g.read(SRC)\ndt = time.perf_counter() - t0\nassert t.n_positions > 0",
    "geff_networkx": "import geff, networkx\nt0 = time.perf_counter()\ngraph = geff.read(SRC)\n"
                     "dt = time.perf_counter() - t0",
    "geff_rustworkx": "import geff, rustworkx\nt0 = time.perf_counter()\ngraph = geff.read(SRC, backend='rustworkx')\n"
                      "dt = time.perf_counter() - t0",
}
_HEAD = "import time, resource, warnings\nwarnings.simplefilter('ignore')\n"
_TAIL = ("\nimport json\nprint(json.dumps({'seconds': dt, "
         "'rss_gb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}))\n")


def find_generator(arg: str | None) -> Path:
    for cand in [arg, REPO.parent / "shared" / "tools" / "gen_trackmate.py",
                 Path("/work/shared/tools/gen_trackmate.py")]:
        if cand and Path(cand).is_file():
            return Path(cand)
    sys.exit("gen_trackmate.py not found: pass --gen PATH")


def make_inputs(gen: Path, with_converter: bool) -> dict[str, Path]:
    DATA.mkdir(parents=True, exist_ok=True)
    xml = DATA / "tm_200k.xml"
    if not xml.is_file():
        subprocess.run([sys.executable, str(gen), "--frames", "500", "--per-frame", "400", "--p-die", "0.01",
                        "--p-div", "0.003", "--p-gap", "0.005", "--out", str(xml)], check=True)
    out = {}
    ours = DATA / "tm_200k_trackstore.geff"
    if not ours.is_dir():
        code = ("import warnings; warnings.simplefilter('ignore')\n"
                "from trackstore.formats import get_format, geff\n"
                f"geff.write(get_format('trackmate').read({str(xml)!r}), {str(ours)!r})\n")
        r = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)},
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"could not write the GEFF with trackstore: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    if ours.is_dir():
        out["written by trackstore"] = ours
    conv = DATA / "tm_200k_geffconvert.geff"
    if with_converter and not conv.is_dir():
        print("converting with geff.convert.from_trackmate_xml_to_geff (about 20 s) ...", flush=True)
        code = ("import warnings; warnings.simplefilter('ignore')\n"
                "from geff.convert import from_trackmate_xml_to_geff\n"
                f"from_trackmate_xml_to_geff({str(xml)!r}, {str(conv)!r}, overwrite=True)\n")
        subprocess.run([sys.executable, "-c", code], check=True)
    if conv.is_dir():
        out["written by geff's converter"] = conv
    return out


def venv_python() -> tuple[str, str | None]:
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    if subprocess.run([str(py), "-c", "import geff, rustworkx"], capture_output=True).returncode != 0:
        print(f"installing geff and rustworkx into {VENV} ...", flush=True)
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", "geff", "rustworkx"], capture_output=True,
                           text=True)
        if r.returncode != 0:
            return str(py), (r.stderr.strip().splitlines() or ["pip failed"])[-1]
    return str(py), None


def run(python: str, op: str, src: Path, repeat: int) -> dict:
    code = _HEAD + f"SRC = {str(src)!r}\n" + OPS[op] + _TAIL
    runs = []
    for _ in range(repeat):
        r = subprocess.run([python, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
        if r.returncode != 0:
            return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    return {"seconds": statistics.median(x["seconds"] for x in runs),
            "runs": [round(x["seconds"], 3) for x in runs], "rss_gb": max(x["rss_gb"] for x in runs)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--gen", help="path of gen_trackmate.py (default: shared/tools next to the repo)")
    ap.add_argument("--no-converter", action="store_true", help="skip the GEFF written by geff's converter")
    ap.add_argument("--no-peers", action="store_true")
    a = ap.parse_args(argv)
    inputs = make_inputs(find_generator(a.gen), not a.no_converter)
    py, problem = (None, "skipped") if a.no_peers else venv_python()
    ok = True
    for label, src in inputs.items():
        print(f"\nGEFF {label}: {src} (medians of {a.repeat})")
        res = {"ours": run(sys.executable, "ours", src, a.repeat),
               "geff_networkx": run(sys.executable, "geff_networkx", src, a.repeat) if not a.no_peers
               else {"error": "skipped"}}
        res["geff_rustworkx"] = run(py, "geff_rustworkx", src, a.repeat) if py and not problem else \
            {"error": f"rustworkx not installed: {problem}"}
        print(f"{'reader':<16}{'seconds':>9}{'peak RSS GB':>13}  runs")
        for op, r in res.items():
            if "error" in r:
                print(f"{op:<16}{'-':>9}{'-':>13}  {r['error']}")
            else:
                print(f"{op:<16}{r['seconds']:>9.2f}{r['rss_gb']:>13.3f}  {r['runs']}")
        ours = res["ours"].get("seconds")
        for op in ("geff_networkx", "geff_rustworkx"):
            if ours and "seconds" in res[op]:
                print(f"ours vs {op}: {res[op]['seconds'] / ours:.1f}x faster")
        met = ours is not None and ours <= TARGET
        ok = ok and met
        print(f"target read <= {TARGET} s: {'-' if ours is None else f'{ours:.2f} s'} {'ok' if met else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
