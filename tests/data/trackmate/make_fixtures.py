"""Rebuild the trimmed real fixtures of this folder from the shared TrackMate samples.

Each fixture keeps a subset of the spots of one real file (a frame window, a number of spots,
or the spots around chosen events), every edge between kept spots, and the original Log
(shortened), FeatureDeclarations, Settings, GUIState and DisplaySettings verbatim. Tracks are
re-cut into connected components of the kept edges: the first part of a track keeps its
attributes (features are the original track's, not recomputed); further parts get a new
TRACK_ID and the name suffix "-part2", "-part3", ... FilteredTracks keeps the parts of listed
tracks. Run from the repository root: ``python tests/data/trackmate/make_fixtures.py``.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

from lxml import etree

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[3] / "shared" / "data" / "trackmate"
LOG_CHARS = 600


def _spot_frames(root):
    return {int(s.get("ID")): int(f.get("frame")) for f in root.iter("SpotsInFrame") for s in f.iter("Spot")}


def _edges(root):
    return [(int(e.get("SPOT_SOURCE_ID")), int(e.get("SPOT_TARGET_ID"))) for e in root.iter("Edge")]


def around(root, events, radius):
    """Spot IDs within ``radius`` edges of the given spot IDs."""
    adj = {}
    for a, b in _edges(root):
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)
    keep = set(events)
    front = set(events)
    for _ in range(radius):
        front = {n for s in front for n in adj.get(s, ())} - keep
        keep |= front
    return keep


def _find(parent: dict[int, int], a: int) -> int:
    while parent.setdefault(a, a) != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


def trim(name: str, out: str, keep_ids, log_chars: int = LOG_CHARS) -> None:
    tree = etree.parse(str(SRC / name))
    root = tree.getroot()
    keep = set(keep_ids(root))
    log = root.find("Log")
    if log is not None and log.text and len(log.text) > log_chars:
        log.text = log.text[:log_chars] + "\n[... log shortened by make_fixtures.py]"
    allspots = root.find("Model/AllSpots")
    n = 0
    for frame in list(allspots):
        for spot in list(frame):
            if int(spot.get("ID")) in keep:
                n += 1
            else:
                frame.remove(spot)
        if not len(frame):
            allspots.remove(frame)
    allspots.set("nspots", str(n))
    # tracks: connected components of the kept edges, per original track
    alltracks = root.find("Model/AllTracks")
    filtered_el = root.find("Model/FilteredTracks")
    filtered = {t.get("TRACK_ID") for t in filtered_el}
    next_id = max([int(t.get("TRACK_ID")) for t in alltracks] + [-1]) + 1
    new_tracks, new_filtered = [], []
    for track in list(alltracks):
        edges = [e for e in track if int(e.get("SPOT_SOURCE_ID")) in keep and int(e.get("SPOT_TARGET_ID")) in keep]
        parent: dict[int, int] = {}
        for e in edges:
            parent[_find(parent, int(e.get("SPOT_SOURCE_ID")))] = _find(parent, int(e.get("SPOT_TARGET_ID")))
        parts = {}
        for e in edges:
            parts.setdefault(_find(parent, int(e.get("SPOT_SOURCE_ID"))), []).append(e)
        for k, part in enumerate(parts.values()):
            t = copy.deepcopy(track)
            for child in list(t):
                t.remove(child)
            if k:
                t.set("TRACK_ID", str(next_id))
                next_id += 1
                if t.get("name") is not None:
                    t.set("name", f"{t.get('name')}-part{k + 1}")
            for e in part:
                t.append(copy.deepcopy(e))
            new_tracks.append(t)
            if track.get("TRACK_ID") in filtered:
                new_filtered.append(t.get("TRACK_ID"))
        alltracks.remove(track)
    for t in new_tracks:
        alltracks.append(t)
    for child in list(filtered_el):
        filtered_el.remove(child)
    for tid in new_filtered:
        etree.SubElement(filtered_el, "TrackID", TRACK_ID=tid)
    etree.indent(root, space="  ")
    tree.write(str(HERE / out), xml_declaration=True, encoding="UTF-8")
    size = (HERE / out).stat().st_size
    print(f"{out}: {n} spots, {sum(len(t) for t in new_tracks)} edges, {len(new_tracks)} tracks, {size} bytes")


def frames(lo, hi):
    return lambda root: {i for i, f in _spot_frames(root).items() if lo <= f <= hi}


def main() -> int:
    if not SRC.is_dir():
        print(f"no shared samples at {SRC}", file=sys.stderr)
        return 1
    trim("CellMigStandOrg_biotracks/example_1_FakeTracks.xml", "FakeTracks_frames_36-45.xml", frames(36, 45))
    trim("Image-Analysis-Hub_pycellin/Celegans-5pc-17timepoints.xml", "Celegans_frames_0-8.xml", frames(0, 8))
    trim("Kapoorlabs-CAPED_NapaTrackMater/tracks.xml", "NapaTrackMater_frames_44-45.xml", frames(44, 45))
    trim("trackmate-sc_TrackMate/LabelImage.xml", "LabelImage_first_10_spots.xml",
         lambda root: {int(s.get("ID")) for s in list(root.iter("Spot"))[:10]})

    def ecoli_events(root):
        # the spots around one fusion (a spot with two incoming edges) and one gap-closing edge
        fr = _spot_frames(root)
        incoming = {}
        for a, b in _edges(root):
            incoming.setdefault(b, []).append(a)
        merge = min(s for s, src in incoming.items() if len(src) > 1)
        gap = min(a for a, b in _edges(root) if fr[b] - fr[a] > 1)
        return around(root, [merge], 1) | around(root, [gap], 1)

    trim("Image-Analysis-Hub_pycellin/Ecoli_growth_on_agar_pad_with_fusions.xml",
         "Ecoli_with_fusions_excerpt.xml", ecoli_events, log_chars=300)
    return 0


if __name__ == "__main__":
    sys.exit(main())
