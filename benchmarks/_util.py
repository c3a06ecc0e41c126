"""Small helpers shared by the benchmarks: run a measured step in a fresh process, print rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: Prepended to every child: ``peak_mb()`` is the child's own peak resident memory.
PRELUDE = (
    "import json, resource, sys, time\n"
    "def peak_mb():\n"
    "    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
)


def run_child(code: str, *args: str) -> dict:
    """Run ``PRELUDE + code`` in a fresh Python (cold imports, own memory); return the JSON it prints last."""
    p = subprocess.run([sys.executable, "-c", PRELUDE + code, *args], capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        raise RuntimeError(f"benchmark step failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def row(label: str, value: str) -> None:
    print(f"  {label:<60s} {value}", flush=True)
