"""Small helpers shared by the benchmarks: run a measured step in a fresh process, print rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: Prepended to every child: ``peak_mb()`` is the child's own peak resident memory, ``rss_mb()``
#: its resident memory now (taken right before a step, so that the step's growth can be told).
PRELUDE = (
    "import json, resource, sys, time\n"
    "def peak_mb():\n"
    "    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
    "def rss_mb():\n"
    "    with open('/proc/self/status') as f:\n"
    "        return next((int(l.split()[1]) / 1024 for l in f if l.startswith('VmRSS:')), 0.0)\n"
)


def run_child(code: str, *args: str, env: dict[str, str] | None = None) -> dict:
    """Run ``PRELUDE + code`` in a fresh Python (cold imports, own memory); return the JSON it prints last.

    ``env`` adds variables to the child's environment."""
    p = subprocess.run([sys.executable, "-c", PRELUDE + code, *args], capture_output=True, text=True, cwd=ROOT,
                       env=None if env is None else {**os.environ, **env})
    if p.returncode != 0:
        raise RuntimeError(f"benchmark step failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def row(label: str, value: str) -> None:
    print(f"  {label:<60s} {value}", flush=True)


def peer_python(venv: Path, peers: dict[str, str], extra: tuple[str, ...] = ()) -> tuple[str, dict[str, str]]:
    """A venv's python with the peer packages in it (``{import name: pip name}``), made on demand.

    Returns the python and ``{package: why it could not be installed}`` (a failed peer is
    reported by the benchmark, not fatal). ``extra`` packages are installed alongside each peer.
    """
    problems: dict[str, str] = {}
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    for mod, pkg in peers.items():
        if subprocess.run([str(py), "-c", f"import {mod}"], capture_output=True).returncode == 0:
            continue
        print(f"installing {pkg} into {venv} ...", flush=True)
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", pkg, *extra], capture_output=True, text=True)
        if r.returncode != 0:
            problems[pkg] = (r.stderr.strip().splitlines() or ["pip failed"])[-1]
    return str(py), problems
