"""Canonical sessions every format is tested against (diagrams: frames left to right).

Each function returns a fresh TrackTables in pixel units. Formats that cannot hold one of them
(merges in CTC, gaps in AUT, ...) skip it with the reason, or check the warning they give.
"""

from __future__ import annotations

import numpy as np

from trackstore.model import SessionInfo, TrackTables, derive_tracks


def _finish(name: str, frame, x, y, src, dst, z=None, n_frames=None) -> TrackTables:
    t = TrackTables.from_columns(
        frame=frame, x=x, y=y, z=z, links=(src, dst),
        session=SessionInfo(name=name, source_format="example", space_unit="pixel", time_unit="frame",
                            frame_interval=1.0),
    )
    track, lineage = derive_tracks(t.n_positions, t.links["source_id"], t.links["target_id"], t.positions["frame"])
    t.positions["track_id"] = track
    nt = int(track.max()) + 1 if len(track) else 0
    t.tracks = {"name": np.array([f"track {i}" for i in range(nt)], dtype=object),
                "identity": np.full(nt, None, dtype=object),
                "lineage_id": lineage, "visible": np.ones(nt, bool),
                "native_id": np.full(nt, None, dtype=object)}
    if n_frames is not None:
        t.frames = {"frame": np.arange(n_frames, dtype=np.int64), "time": np.arange(n_frames, dtype=np.float64)}
    return t


def linear() -> TrackTables:
    """One cell moving right for 4 frames.

    0 -- 1 -- 2 -- 3
    """
    return _finish("linear", [0, 1, 2, 3], [10.0, 11.5, 13.25, 14.0], [20.0, 20.5, 21.0, 21.75],
                   [0, 1, 2], [1, 2, 3], n_frames=4)


def division() -> TrackTables:
    """A mother divides into two daughters at frame 2.

    0 -- 1 -- 2 -- 3 -- 4
               \\
                5 -- 6
    """
    return _finish("division", [0, 1, 2, 3, 4, 3, 4], [5.0, 6.0, 7.0, 8.0, 9.0, 7.5, 7.25],
                   [5.0, 5.0, 5.0, 4.0, 3.0, 6.0, 7.0], [0, 1, 2, 3, 2, 5], [1, 2, 3, 4, 5, 6], n_frames=5)


def gap() -> TrackTables:
    """One track missing at frames 2 and 3 (one link skips them).

    0 -- 1 -········- 4 -- 5
    """
    return _finish("gap", [0, 1, 4, 5], [1.0, 2.0, 5.0, 6.0], [1.0, 1.0, 4.0, 5.0], [0, 1, 2], [1, 2, 3],
                   n_frames=6)


def merge() -> TrackTables:
    """Two tracks fuse at frame 2.

    0 -- 1 \\
            4 -- 5
    2 -- 3 /
    """
    return _finish("merge", [0, 1, 0, 1, 2, 3], [0.0, 1.0, 4.0, 3.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
                   [0, 1, 2, 3, 4], [1, 4, 3, 4, 5], n_frames=4)


def singleton() -> TrackTables:
    """A linked pair and a lone detection in no track (kept as its own one-spot track).

    0 -- 1      2
    """
    return _finish("singleton", [0, 1, 1], [3.0, 4.0, 9.0], [3.0, 3.0, 9.0], [0], [1], n_frames=2)


def three_d() -> TrackTables:
    """A 3D track with a division (z in slices).

    0 -- 1 -- 2
          \\
           3
    """
    return _finish("three_d", [0, 1, 2, 2], [1.0, 2.0, 3.0, 2.5], [1.0, 1.0, 1.0, 2.0], [0, 1, 1], [1, 2, 3],
                   z=[4.0, 4.5, 5.0, 4.0], n_frames=3)


def empty() -> TrackTables:
    """No positions at all."""
    return _finish("empty", [], [], [], [], [], n_frames=0)


ALL = {f.__name__: f for f in (linear, division, gap, merge, singleton, three_d, empty)}
