"""CTC topology: the ``L B E P`` track file, its consistency rules, and labels for export.

The rules checked on import are those of the official consistency check (java-ctcmetrics
``TRA.CheckConsistency``, py-ctcmetrics ``valid``), numbered as in specs/trackmate_ctc_geff.md §2:
labels unique and > 0 (3), 0 <= B <= E < frames (1, 2), P >= 0 (7), parent declared with
B(child) > E(parent) (4), every declared label in every mask from B to E (5) and every label in
a mask declared and inside [B, E] (6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ParseError


@dataclass
class TrackRow:
    label: int
    begin: int
    end: int
    parent: int
    line: int


def parse_track_file(path: Path) -> list[TrackRow]:
    """Rows of a ``man_track.txt``/``res_track.txt`` (space or tab separated; blank lines skipped)."""
    rows = []
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as e:
        raise ParseError(f"cannot read the track file: {e}", path=path) from e
    for no, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 4:
            raise ParseError(f"line {no}: expected 4 numbers 'L B E P', found {len(parts)} fields: {line!r}",
                             path=path)
        try:
            lab, b, e, p = (int(x) for x in parts)
        except ValueError:
            raise ParseError(f"line {no}: 'L B E P' must be integers: {line!r}", path=path) from None
        rows.append(TrackRow(lab, b, e, p, no))
    return rows


def format_track_rows(rows: list[tuple[int, int, int, int]]) -> str:
    """The text of a track file (single spaces, one row per line, trailing newline)."""
    return "".join(f"{lab} {b} {e} {p}\n" for lab, b, e, p in rows)


def frame_ranges(frames: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"`` for messages."""
    out = []
    start = prev = None
    for f in frames:
        if start is None:
            start = prev = f
        elif f == prev + 1:
            prev = f
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = f
    if start is not None:
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(out)


@dataclass
class Topology:
    """What the checks decided: one track per label, and the links to make."""

    track_labels: list[int]  # label of each track, file order (undeclared labels appended)
    parent_of: dict[int, int]  # child label -> parent label (only parent links kept)
    violations: list[str] = field(default_factory=list)


def check_and_repair(rows: list[TrackRow], pos_label: np.ndarray, pos_frame: np.ndarray,
                     n_frames: int) -> Topology:
    """Check the CTC rules against the masks found, and decide how to repair each violation.

    Repairs (never silent: each one is a violation in the returned list):
    a label missing inside [B, E] keeps its positions and is linked across the hole (a gap link,
    which an export writes as a new gap-linked label); a label found outside [B, E] or not
    declared keeps its positions (undeclared labels become parentless tracks); a duplicate row
    keeps the first; a label in no mask is dropped; a missing or self parent is ignored.
    """
    v: list[str] = []
    declared: dict[int, TrackRow] = {}
    for r in rows:
        if r.label <= 0:
            v.append(f"line {r.line}: label {r.label} must be > 0 (row ignored)")
            continue
        if r.label in declared:
            v.append(f"label {r.label}: declared twice (lines {declared[r.label].line} and {r.line}; "
                     "the first is used)")
            continue
        if r.begin < 0 or r.end < r.begin:
            v.append(f"label {r.label}: frames {r.begin}-{r.end} are not a valid range (B >= 0, E >= B)")
        if r.end >= n_frames:
            v.append(f"label {r.label}: ends at frame {r.end}, but there are only {n_frames} masks")
        if r.parent < 0:
            v.append(f"label {r.label}: parent {r.parent} must be >= 0 (treated as 0)")
        declared[r.label] = r
    # frames where each label was found
    found: dict[int, np.ndarray] = {}
    if len(pos_label):
        order = np.lexsort((pos_frame, pos_label))
        sl, sf = pos_label[order], pos_frame[order]
        cut = np.flatnonzero(np.diff(sl)) + 1
        for lab_arr, fr in zip(np.split(sl, cut), np.split(sf, cut)):
            found[int(lab_arr[0])] = fr
    track_labels: list[int] = []
    for lab, r in declared.items():
        fr = found.get(lab)
        if fr is None:
            v.append(f"label {lab}: declared for frames {r.begin}-{r.end} but found in no mask (dropped)")
            continue
        track_labels.append(lab)
        want = np.arange(max(r.begin, 0), min(r.end, n_frames - 1) + 1)
        missing = np.setdiff1d(want, fr)
        if len(missing):
            inner = missing[(missing > fr.min()) & (missing < fr.max())]
            how = " (linked across the gap)" if len(inner) else ""
            v.append(f"label {lab}: missing from frame(s) {frame_ranges(missing.tolist())} "
                     f"of its declared frames {r.begin}-{r.end}{how}")
        outside = fr[(fr < r.begin) | (fr > r.end)]
        if len(outside):
            v.append(f"label {lab}: found in frame(s) {frame_ranges(outside.tolist())}, outside its "
                     f"declared frames {r.begin}-{r.end} (kept)")
    for lab in sorted(set(found) - set(declared)):
        v.append(f"label {lab}: found in frame(s) {frame_ranges(found[lab].tolist())} but not declared "
                 "in the track file (kept as a track without parent)")
        track_labels.append(lab)
    parent_of: dict[int, int] = {}
    for lab in track_labels:
        r = declared.get(lab)
        if r is None or r.parent <= 0:
            continue
        p = r.parent
        if p == lab:
            v.append(f"label {lab}: is its own parent (ignored)")
            continue
        if p not in declared:
            v.append(f"label {lab}: parent {p} is not declared (parent link dropped)")
            continue
        if p not in found:
            continue  # already reported: the parent is in no mask
        pr = declared[p]
        if r.begin <= pr.end:
            v.append(f"label {lab}: begins at frame {r.begin}, not after its parent {p} ends at frame "
                     f"{pr.end} (linked from the parent's last position before frame {found[lab].min()})")
        parent_of[lab] = p
    return Topology(track_labels, parent_of, v)


@dataclass
class ExportLabels:
    """Labels chosen for an export."""

    label_of_position: np.ndarray
    rows: list[tuple[int, int, int, int]]  # (L, B, E, P) sorted by L


def assign_labels(n: int, frame: np.ndarray, src: np.ndarray, dst: np.ndarray,
                  native: np.ndarray | None) -> ExportLabels:
    """Cut the position graph into CTC labels (links must have at most one parent per position).

    A link continues a label when it joins consecutive frames, its source has no other child,
    its target no other parent, and (when ``native`` labels are reused) both ends carry the same
    native label. Every other link becomes a parent reference (division, gap or re-label).
    Native labels are kept where they are valid and unique; other pieces get fresh labels.
    """
    outdeg = np.bincount(src, minlength=n)
    indeg = np.bincount(dst, minlength=n)
    cont = (outdeg[src] == 1) & (indeg[dst] == 1) & (frame[dst] == frame[src] + 1)
    if native is not None:
        cont &= native[src] == native[dst]
    head = np.arange(n, dtype=np.int64)
    head[dst[cont]] = src[cont]
    while True:  # pointer doubling: every position learns the first position of its piece
        nxt = head[head]
        if np.array_equal(nxt, head):
            break
        head = nxt
    heads = np.flatnonzero(head == np.arange(n))
    heads = heads[np.lexsort((heads, frame[heads]))]
    piece_of_head = np.full(n, -1, np.int64)
    piece_of_head[heads] = np.arange(len(heads))
    piece = piece_of_head[head]
    n_pieces = len(heads)
    labels = np.zeros(n_pieces, np.int64)
    if native is not None:
        used: set[int] = set()
        pending = []
        for k, h in enumerate(heads.tolist()):
            lab = int(native[h])
            if 0 < lab <= 65535 and lab not in used:
                labels[k] = lab
                used.add(lab)
            else:
                pending.append(k)
        nxt_label = max(used, default=0) + 1
        for k in pending:
            labels[k] = nxt_label
            nxt_label += 1
    else:
        labels[:] = np.arange(1, n_pieces + 1)
    first = np.full(n_pieces, np.iinfo(np.int64).max)
    last = np.full(n_pieces, np.iinfo(np.int64).min)
    np.minimum.at(first, piece, frame)
    np.maximum.at(last, piece, frame)
    parent = np.zeros(n_pieces, np.int64)
    not_cont = ~cont
    parent[piece[dst[not_cont]]] = labels[piece[src[not_cont]]]
    rows = sorted(zip(labels.tolist(), first.tolist(), last.tolist(), parent.tolist()))
    return ExportLabels(labels[piece] if n else np.empty(0, np.int64), rows)
