"""Make the trimmed copies in this folder from shared/data/organoidtracker (run from the repo root).

Keeps whole time points from the first time point of the file up to a limit and everything that
refers only to them (v2: tracks are cut at the limit, tracks that start later are dropped), or (v1)
a range of whole time points with the nodes and links inside it. Every other key is untouched.
The file keeps the JSON spelling (separators) of its source.

    python tests/data/organoidtracker/trim.py
"""

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[3] / "shared" / "data" / "organoidtracker"

TRIMS = [  # (source, target, first and last time point kept, stdlib spelling?)
    ("jvzonlab_OrganoidTracker/WKS216_xy002_FRAP.aut", "WKS216_xy002_FRAP.t0-19.aut", 0, 19, True),
    # the last time point: its penalties mix int (10) and float under one key
    ("RodriguezColmanLab_napari-organoidtracker/E482-AZ-pos3.aut", "E482-AZ-pos3.t60.aut", 60, 60, False),
    ("generated_with_organoidtracker/Fluo-N3DH-CE_01_GT.geff_to_aut_by_organoidtracker.aut",
     "Fluo-N3DH-CE_01_GT.t0-39.aut", 0, 39, False),
]


def trim_v2(d: dict, last: int) -> dict:
    d["positions"] = [tp for tp in d["positions"] if tp["time_point"] <= last]
    kept = []
    for tr in d.get("tracks", []):
        start = tr["time_point_start"]
        if start > last:
            continue
        n = min(len(tr["coords_xyz_px"]), last - start + 1)
        tr["coords_xyz_px"] = tr["coords_xyz_px"][:n]
        meta = {k: v[:n - 1] for k, v in tr.pop("link_meta", {}).items() if any(x is not None for x in v[:n - 1])}
        if meta:
            tr["link_meta"] = meta
        kept.append(tr)
    d["tracks"] = kept
    return d


def trim_v1(d: dict, first: int, last: int) -> dict:
    def inside(t: int) -> bool:
        return first <= t <= last

    d["positions"] = {t: v for t, v in d["positions"].items() if inside(int(t))}
    g = d["links"]
    g["nodes"] = [n for n in g["nodes"] if inside(n["id"]["_time_point_number"])]
    g["links"] = [lk for lk in g["links"] if inside(lk["source"]["_time_point_number"])
                  and inside(lk["target"]["_time_point_number"])]
    return d


def main() -> None:
    for src, dst, first, last, stdlib in TRIMS:
        d = json.loads((SHARED / src).read_text(encoding="utf-8"))
        d = trim_v2(d, last) if d.get("version") == "v2" else trim_v1(d, first, last)
        text = json.dumps(d) if stdlib else json.dumps(d, separators=(",", ":"), ensure_ascii=False)
        (HERE / dst).write_text(text, encoding="utf-8")
        print(dst, len(text.encode()), "bytes")


if __name__ == "__main__":
    main()
