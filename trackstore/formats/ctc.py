"""Cell Tracking Challenge (CTC) folders: ``man_track.txt`` / ``res_track.txt`` + 16-bit label TIFFs.

Import (``read``) streams the masks frame by frame (memory is about one frame): each label of
each frame becomes a position at its centroid (x, y[, z] in pixels; z is the slice index), with
its pixel count (``area`` in 2D, ``volume`` in 3D), inclusive bounding box (``bbox_x_min`` ...)
and the pixels themselves as run-length runs (``ctc.mask_rle``), so an export writes the
original masks back exactly. ``native_id`` is the label. Tracks are the track file's rows (one
track per label, ``native_id`` = L); links join a label's consecutive frames and a parent's last
position to each child's first (a frame gap > 1 is a gap link; several children a division).

Export (``write``) cuts the position graph into labels the CTC rules accept: a gap becomes a new
label whose parent is the old one, a division gives labels sharing a parent. Positions with a
stored mask are painted exactly; the others are drawn as disks/balls of their radius. Merges
cannot be expressed: they fail unless ``drop_merges=True``.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from ..errors import LossyConversionWarning, ParseError, TrackstoreWarning, ValidationError, WriteError
from ..model import SessionInfo, TrackTables
from . import _ctc_masks as masks
from . import _ctc_tiff as tiff
from ._base import prepare_target
from ._ctc_topology import assign_labels, check_and_repair, format_track_rows, parse_track_file

NAME = "ctc"
SUFFIXES = ("/", ".txt")
DESCRIPTION = "Cell Tracking Challenge GT/RES folder (man_track.txt or res_track.txt + label TIFFs)"
EXTRA = "ctc"

_TRACK_FILES = {"man_track.txt": "GT", "res_track.txt": "RES"}
_MASK_PREFIX = {"GT": "man_track", "RES": "mask"}
_TRACK_FILE_OF = {"GT": "man_track.txt", "RES": "res_track.txt"}
#: Position metadata the reader computes from the masks (so an export never reports it as lost).
_MASK_KEYS = ("ctc.mask_rle", "area", "volume", "bbox_x_min", "bbox_y_min", "bbox_z_min",
              "bbox_x_max", "bbox_y_max", "bbox_z_max")
_DEFAULT_RADIUS = 3.0
_PIXEL_UNITS = (None, "", "pixel", "pixels", "px")


# ---------------------------------------------------------------------------------------- sniff
def sniff(path: Path) -> bool:
    """True for a CTC track file, a folder holding one, or a ``*_GT`` folder with ``TRA/``."""
    try:
        path = Path(path)
        if path.is_file():
            return path.name in _TRACK_FILES and _looks_like_track_file(path)
        if path.is_dir():
            return _find_track_file(path) is not None
    except OSError:
        return False
    return False


def _looks_like_track_file(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(2048).decode("ascii")
    except (OSError, UnicodeDecodeError):
        return False
    lines = [ln for ln in head.splitlines()[:-1] or head.splitlines() if ln.strip()]
    return all(re.fullmatch(r"\s*-?\d+\s+-?\d+\s+-?\d+\s+-?\d+\s*", ln) for ln in lines)


def _find_track_file(folder: Path) -> Path | None:
    for name in _TRACK_FILES:
        p = folder / name
        if p.is_file() and _looks_like_track_file(p):
            return p
    p = folder / "TRA" / "man_track.txt"
    if p.is_file() and _looks_like_track_file(p):
        return p
    return None


def _mask_files(folder: Path, kind: str) -> tuple[dict[int, Path], int | None]:
    pattern = re.compile(rf"^{_MASK_PREFIX[kind]}(\d+)\.tiff?$")
    found: dict[int, Path] = {}
    digits = set()
    for child in folder.iterdir():
        m = pattern.match(child.name)
        if m and child.is_file():
            found[int(m.group(1))] = child
            digits.add(len(m.group(1)))
    return dict(sorted(found.items())), (min(digits) if digits else None)


# ----------------------------------------------------------------------------------------- read
def read(path: Path, *, strict: bool = False, **options) -> TrackTables:
    """Read one CTC sequence (a GT ``TRA`` folder, a RES folder, or their track file).

    Args:
        path: The folder with ``man_track.txt`` + ``man_trackTTT.tif`` (GT) or ``res_track.txt``
            + ``maskTTT.tif`` (RES), a ``*_GT`` folder containing ``TRA/``, or the track file.
        strict: Refuse data that breaks the CTC consistency rules instead of repairing it.
        **options: Not used (accepted so every reader takes the same call).

    Returns:
        The session: positions at label centroids (pixels), one track per label, links for
        continuations, gaps and divisions; masks kept as runs for an exact export.

    Raises:
        ParseError: Unreadable track file or image, images of different sizes, no masks.
        ValidationError: ``strict=True`` and the data breaks a consistency rule (all listed,
            each with its label and frame).

    Example:
        >>> tables = read(Path("01_GT/TRA"))  # doctest: +SKIP
    """
    path = Path(path)
    track_file = path if path.is_file() else _find_track_file(path)
    if track_file is None:
        raise ParseError("no man_track.txt or res_track.txt here", path=path,
                         hint="point at a CTC GT/TRA or RES folder")
    folder = track_file.parent
    kind = _TRACK_FILES.get(track_file.name)
    if kind is None:
        raise ParseError("a CTC track file is named man_track.txt or res_track.txt", path=track_file)
    rows = parse_track_file(track_file)
    files, digits = _mask_files(folder, kind)
    if not files and rows:
        raise ParseError(f"no {_MASK_PREFIX[kind]}TTT.tif label images next to {track_file.name}",
                         path=folder, hint="trackstore reads CTC sequences with their masks")
    n_frames = (max(files) + 1) if files else 0
    problems = [f"frame {t}: no {_MASK_PREFIX[kind]} image (treated as empty)"
                for t in range(n_frames) if t not in files]

    shape = None
    dtype = None
    compression = None
    per_frame = []
    for t, f in files.items():
        img, comp = tiff.read_label_image(f)
        if shape is None:
            shape, dtype, compression = img.shape, img.dtype, comp
            if img.dtype != np.uint16:
                problems.append(f"frame {t}: label image is {img.dtype}, not 16-bit (read anyway)")
            if img.ndim not in (2, 3) or img.dtype.kind not in "ui":
                raise ParseError(f"expected a 2D or 3D integer label image, found {img.dtype} {img.shape}", path=f)
        elif img.shape != shape:
            raise ParseError(f"image is {img.shape}, but frame {min(files)} is {shape}: every frame must "
                             "have the same size", path=f)
        per_frame.append((t, masks.regions(img)))
        del img  # one frame in memory at a time

    tables = _build_tables(per_frame, shape, kind, digits, dtype, compression, rows, n_frames, problems,
                           folder, track_file, files, strict)
    return tables


def _build_tables(per_frame, shape, kind, digits, dtype, compression, rows, n_frames, problems,
                  folder: Path, track_file: Path, files: dict[int, Path], strict: bool) -> TrackTables:
    ndim = len(shape) if shape is not None else 2
    counts = [len(r.labels) for _, r in per_frame]
    n = int(sum(counts))
    frame = np.repeat(np.array([t for t, _ in per_frame], np.int64), counts) if per_frame else np.empty(0, np.int64)
    if n:
        label = np.concatenate([r.labels for _, r in per_frame])
        size = np.concatenate([r.size for _, r in per_frame])
        cent = np.concatenate([r.centroid for _, r in per_frame])
        bmin = np.concatenate([r.bbox_min for _, r in per_frame])
        bmax = np.concatenate([r.bbox_max for _, r in per_frame])
    else:
        label = size = np.empty(0, np.int64)
        cent = np.empty((0, ndim))
        bmin = bmax = np.empty((0, ndim), np.int64)
    runs = np.empty(n, dtype=object)
    i = 0
    for _, r in per_frame:
        for arr in r.runs:
            runs[i] = arr
            i += 1

    topo = check_and_repair(rows, label, frame, n_frames)
    problems = problems + topo.violations
    track_index = {lab: k for k, lab in enumerate(topo.track_labels)}
    lut = np.full(int(label.max()) + 1 if n else 1, -1, np.int64)
    for lab, k in track_index.items():
        if lab < len(lut):
            lut[lab] = k
    track_id = lut[label] if n else np.empty(0, np.int64)

    # links: consecutive found frames of one label (a hole becomes a gap link), then parents
    order = np.lexsort((frame, label))
    same = label[order][1:] == label[order][:-1]
    src = [order[:-1][same]]
    dst = [order[1:][same]]
    first_of: dict[int, int] = {}
    by_label: dict[int, np.ndarray] = {}
    if n:
        cut = np.flatnonzero(np.diff(label[order])) + 1
        for grp in np.split(order, cut):
            lab = int(label[grp[0]])
            by_label[lab] = grp
            first_of[lab] = int(grp[0])
    p_src, p_dst = [], []
    for child, parent in topo.parent_of.items():
        head = first_of[child]
        cands = by_label[parent]
        before = cands[frame[cands] < frame[head]]
        if not len(before):
            problems.append(f"label {child}: its parent {parent} has no position before frame "
                            f"{int(frame[head])} (parent link dropped)")
            continue
        p_src.append(int(before[-1]))
        p_dst.append(head)
    src.append(np.array(p_src, np.int64))
    dst.append(np.array(p_dst, np.int64))
    source = np.concatenate(src).astype(np.int64)
    target = np.concatenate(dst).astype(np.int64)

    if problems:
        if strict:
            raise ValidationError(problems, path=folder,
                                  hint="read without strict to repair what can be repaired")
        shown = "; ".join(problems[:50]) + (f"; ... and {len(problems) - 50} more" if len(problems) > 50 else "")
        warnings.warn(f"{folder}: {len(problems)} CTC consistency problem(s), repaired: {shown}",
                      TrackstoreWarning, stacklevel=3)

    nt = len(topo.track_labels)
    lineage = _lineages(nt, track_index, topo, p_src, p_dst, track_id)
    size_f = size.astype(np.float64)
    radius = np.sqrt(size_f / np.pi) if ndim == 2 else np.cbrt(3.0 * size_f / (4.0 * np.pi))
    pos = {"frame": frame, "x": cent[:, -1].copy(), "y": cent[:, -2].copy(),
           "z": cent[:, 0].copy() if ndim == 3 else np.full(n, np.nan),
           "track_id": track_id, "native_id": label.astype(np.int64), "radius": radius}
    name = folder.parent.name if folder.name == "TRA" else folder.name
    info = SessionInfo(
        name=name, source_format=NAME, format_version=None, source_path=str(folder.resolve()),
        space_unit="pixel", time_unit="frame", frame_interval=1.0,
        image_size=(shape[-1], shape[-2], shape[0] if ndim == 3 else None) if shape else (None, None, None),
        source_files=tuple(str(p) for p in [track_file, *files.values()]),
    )
    t = TrackTables(session=info, positions=pos)
    t.frames = {"frame": np.arange(n_frames, dtype=np.int64), "time": np.arange(n_frames, dtype=np.float64)}
    nat = np.empty(nt, dtype=object)
    nat[:] = [int(x) for x in topo.track_labels]
    t.tracks = {"name": np.full(nt, None, dtype=object), "identity": np.full(nt, None, dtype=object),
                "lineage_id": lineage, "visible": np.ones(nt, bool), "native_id": nat}
    t.links = {"source_id": source, "target_id": target}
    owners = np.arange(n, dtype=np.int64)
    t.add_meta("session", "ctc.kind", kind)
    t.add_meta("session", "ctc.digits", int(digits or 3))
    t.add_meta("session", "ctc.mask_shape", [int(s) for s in shape] if shape else [])
    t.add_meta("session", "ctc.mask_dtype", str(dtype) if dtype is not None else "uint16")
    t.add_meta("session", "ctc.compression", compression or "NONE")
    if problems:
        t.add_meta("session", "ctc.violations", list(problems))
    t.add_meta("position", "ctc.mask_rle", runs, owners)
    t.add_meta("position", "area" if ndim == 2 else "volume", size.astype(np.int64), owners)
    axes = "yx" if ndim == 2 else "zyx"
    for bound, arr in (("min", bmin), ("max", bmax)):
        for a in "xyz":
            if a in axes:
                t.add_meta("position", f"bbox_{a}_{bound}", arr[:, axes.index(a)].copy(), owners)
    return t


def _lineages(nt, track_index, topo, p_src, p_dst, track_id) -> np.ndarray:
    """Connected components of the track (label) graph, numbered in track order."""
    root = list(range(nt))

    def find(a):
        while root[a] != a:
            root[a] = root[root[a]]
            a = root[a]
        return a

    for s, d in zip(p_src, p_dst):
        a, b = find(int(track_id[s])), find(int(track_id[d]))
        if a != b:
            root[max(a, b)] = min(a, b)
    comp = [find(i) for i in range(nt)]
    ids: dict[int, int] = {}
    return np.array([ids.setdefault(c, len(ids)) for c in comp], np.int64)


# ---------------------------------------------------------------------------------------- write
def write(tables: TrackTables, path: Path, *, overwrite: bool = False, kind: str | None = None,
          digits: int | None = None, radius: float | None = None, drop_merges: bool = False,
          compression: str | None = None, **options) -> list[Path]:
    """Write a session as a CTC folder that the CTC consistency rules accept.

    Args:
        tables: The session.
        path: The folder to write into (it receives the track file and the TIFFs directly).
        overwrite: Replace an existing folder's CTC files.
        kind: ``"GT"`` (``man_track.txt`` + ``man_trackTTT.tif``) or ``"RES"`` (``res_track.txt`` +
            ``maskTTT.tif``); default: as read, else RES.
        digits: Frame-number width in file names; default: as read, else 3 (4 from 1000 frames).
        radius: Radius in pixels of the disks/balls drawn for positions without a stored mask
            (default: each position's radius, else 3 px).
        drop_merges: Keep one parent (the first link) of a position with several and drop the
            other links, with a warning, instead of failing.
        compression: tifffile compression (``"zlib"``, ``"lzw"``, ``None``); default: the source's
            when it can be written, else zlib.
        **options: Not used.

    Returns:
        The track file, then every label image, in frame order.

    Raises:
        WriteError: The target exists (without ``overwrite``), the session has merges (without
            ``drop_merges``), or more labels than 16-bit images hold.

    Example:
        >>> write(tables, Path("out/01_RES"))  # doctest: +SKIP
    """
    path = Path(path)
    tables.validate(path)
    meta = tables.session_meta("ctc.")
    from_ctc = tables.session.source_format == NAME
    kind = (kind or meta.get("ctc.kind") or "RES").upper()
    if kind not in _MASK_PREFIX:
        raise WriteError(f"kind must be GT or RES, not {kind!r}", path=path)
    n = tables.n_positions
    frame = tables.positions["frame"].astype(np.int64)
    src, dst = tables.links["source_id"].astype(np.int64), tables.links["target_id"].astype(np.int64)
    lost: list[str] = []

    # merges: CTC has one parent per label
    indeg = np.bincount(dst, minlength=n)
    if (indeg > 1).any():
        merged = np.flatnonzero(indeg > 1)
        n_extra = int((indeg[merged] - 1).sum())
        if not drop_merges:
            i = int(merged[0])
            raise WriteError(
                f"CTC cannot hold merges: {len(merged)} position(s) have several parents "
                f"(first: position {i} at frame {int(frame[i])}, {int(indeg[i])} parents)",
                path=path, hint="pass drop_merges=True to keep one parent each and drop the other links")
        keep = np.ones(len(src), bool)
        seen = np.zeros(n, bool)
        for k in range(len(dst)):
            d = dst[k]
            if indeg[d] > 1:
                if seen[d]:
                    keep[k] = False
                seen[d] = True
        src, dst = src[keep], dst[keep]
        lost.append(f"merges ({n_extra} link(s) into {len(merged)} merging position(s) dropped)")

    native = None
    if from_ctc and "native_id" in tables.positions:
        native = tables.positions["native_id"].astype(np.int64)
    labels = assign_labels(n, frame, src, dst, native)
    if labels.rows and max(r[0] for r in labels.rows) > 65535:
        raise WriteError(f"{len(labels.rows)} CTC labels do not fit in 16-bit label images (max 65535)",
                         path=path)

    # frames: CTC numbers images from 0
    frames_all = tables.frame_numbers()
    shift = 0
    if len(frames_all) and int(frames_all.min()) < 0:
        shift = -int(frames_all.min())
        lost.append(f"negative frame numbers (all frames shifted by +{shift})")
    n_images = int(frames_all.max()) + 1 + shift if len(frames_all) else 0
    rows = [(lab, b + shift, e + shift, p) for lab, b, e, p in labels.rows]
    digits = int(digits or meta.get("ctc.digits") or 3)
    digits = max(digits, len(str(max(n_images - 1, 0))))

    # geometry: pixel coordinates in image axis order
    pix, scale_note = _pixel_coordinates(tables, lost)
    shape_meta = meta.get("ctc.mask_shape")
    rle = tables.meta("position", "ctc.mask_rle")
    mask_of = {}
    if rle is not None and shape_meta:
        for o, v in zip(rle.owners.tolist(), rle.values):
            if isinstance(v, np.ndarray) and v.ndim == 2 and v.shape[1] == 2:
                mask_of[o] = v
    three_d = (len(shape_meta) == 3) if shape_meta else _is_really_3d(tables)
    if not three_d:
        pix = pix[:, 1:]
    radii, default_r = _radii(tables, radius, three_d, scale_note)
    drawn = np.array([i not in mask_of for i in range(n)], bool) if n else np.zeros(0, bool)
    shape = _image_shape(tables, shape_meta, three_d, pix, radii, drawn, lost)
    if drawn.any():
        pix, offset = _fit_inside(pix, drawn, lost)
        src_note = (f"radius {radius} px" if radius is not None else
                    "each position's radius (where unknown: 3 px, at most half the distance to the nearest position)")
        lost.append(f"sub-pixel coordinates ({int(drawn.sum())} position(s) without a mask drawn as "
                    f"{'balls' if three_d else 'disks'} of {src_note}; read back as mask centroids)")
    _report_lost(tables, from_ctc, lost)

    # write
    folder = prepare_target(path, overwrite=overwrite, is_dir=True)
    if overwrite:
        for old in folder.iterdir():
            if old.is_file() and (old.name in _TRACK_FILE_OF.values() or
                                  re.match(r"^(man_track|mask)\d+\.tiff?$", old.name)):
                old.unlink()
    comp = compression if compression is not None else tiff.writable_compression(meta.get("ctc.compression"))
    written = []
    txt = folder / _TRACK_FILE_OF[kind]
    txt.write_text(format_track_rows(rows), encoding="ascii")
    written.append(txt)
    label_of = labels.label_of_position
    order = np.argsort(frame, kind="stable")
    bounds = np.searchsorted(frame[order], np.arange(n_images + 1) - shift)
    unpainted = 0
    for t in range(n_images):
        idx = order[bounds[t]:bounds[t + 1]]
        img = np.zeros(int(np.prod(shape)), np.uint16)
        with_mask = [i for i in idx.tolist() if i in mask_of]
        if with_mask:
            masks.paint_runs(img, [mask_of[i] for i in with_mask], label_of[with_mask])
        img = img.reshape(shape)
        todo = np.array([i for i in idx.tolist() if i not in mask_of], np.int64)
        if len(todo):
            r = radii[todo]
            if radius is None and default_r[todo].any():
                r = _cap_default_radii(pix[todo], r, default_r[todo], shape)
            unpainted += len(masks.draw_balls(img, pix[todo], r, label_of[todo]))
        f = folder / f"{_MASK_PREFIX[kind]}{t:0{digits}d}.tif"
        tiff.write_label_image(f, img, comp)
        written.append(f)
    if unpainted:
        warnings.warn(f"{path}: {unpainted} position(s) share their centre pixel with another and could not "
                      "be drawn (their labels are missing from the masks)", LossyConversionWarning, stacklevel=2)
    return written


def _is_really_3d(tables: TrackTables) -> bool:
    z = tables.positions.get("z")
    return z is not None and bool(np.isfinite(z).any()) and bool(np.any(z[np.isfinite(z)] != 0))


def _pixel_size(tables: TrackTables) -> tuple[np.ndarray | None, str | None]:
    unit = tables.session.space_unit
    if unit in _PIXEL_UNITS:
        return None, None
    ps = tables.session.pixel_size
    if ps[0] and ps[1]:
        pz = ps[2] if ps[2] else ps[0]
        return np.array([pz, ps[1], ps[0]], np.float64), unit
    return None, unit


def _pixel_coordinates(tables: TrackTables, lost: list[str]):
    """(n, 3) coordinates in pixels, in image axis order (z, y, x)."""
    p = tables.positions
    z = tables.pos("z")
    z = np.where(np.isfinite(z), z, 0.0)
    pix = np.stack([z, p["y"], p["x"]], axis=1).astype(np.float64) if tables.n_positions else np.empty((0, 3))
    size, unit = _pixel_size(tables)
    if size is not None:
        pix = pix / size
    elif unit is not None and tables.n_positions:
        lost.append(f"physical coordinates (in {unit} with no pixel size: written as if they were pixels)")
    return pix, size


def _radii(tables: TrackTables, radius, three_d: bool, size) -> tuple[np.ndarray, np.ndarray]:
    """Per-position radii in pixels along each image axis, and which ones are the default."""
    n = tables.n_positions
    if radius is not None:  # given in pixels
        rr = np.full((n, 3), float(radius))
        default = np.zeros(n, bool)
    else:
        r = tables.pos("radius").astype(np.float64)
        default = ~(np.isfinite(r) & (r > 0))
        scale = size if size is not None else np.ones(3)
        rr = np.where(default[:, None], _DEFAULT_RADIUS, r[:, None] / scale[None, :])
    return (rr if three_d else rr[:, 1:]), default


def _cap_default_radii(centres: np.ndarray, radii: np.ndarray, default: np.ndarray, shape) -> np.ndarray:
    """Shrink default radii so balls neither overlap nor cross the image border.

    A default radius is arbitrary, so it may as well keep each drawn centroid on its position.
    """
    edge = np.minimum(centres, np.asarray(shape) - 1 - centres).min(axis=1) + 0.5
    half = np.maximum(edge, 0.5)
    if 2 <= len(centres) <= 4000:
        d = np.sqrt(((centres[:, None, :] - centres[None, :, :]) ** 2).sum(-1))
        np.fill_diagonal(d, np.inf)
        half = np.minimum(half, np.maximum(d.min(axis=1) / 2, 0.5))
    capped = np.minimum(radii, half[:, None])
    return np.where(default[:, None], capped, radii)


def _image_shape(tables, shape_meta, three_d, pix, radii, drawn, lost) -> tuple[int, ...]:
    if shape_meta and len(shape_meta) == (3 if three_d else 2):
        shape = tuple(int(s) for s in shape_meta)
    else:
        w, h, d = tables.session.image_size
        if w and h and (d or not three_d):
            shape = (int(d), int(h), int(w)) if three_d else (int(h), int(w))
        elif len(pix):
            top = np.ceil(np.max(np.maximum(pix, 0) + radii, axis=0)).astype(np.int64) + 1
            shape = tuple(int(v) for v in top)
        else:
            shape = (1, 1, 1) if three_d else (1, 1)
    if len(pix) and drawn.any():
        need = np.ceil(np.max(pix[drawn] - np.minimum(pix[drawn].min(axis=0), 0), axis=0)).astype(np.int64) + 1
        if np.any(need > np.array(shape)):
            shape = tuple(int(max(a, b)) for a, b in zip(shape, need))
    return shape


def _fit_inside(pix, drawn, lost):
    low = np.floor(np.min(pix[drawn], axis=0))
    offset = np.where(low < 0, -low, 0.0)
    if np.any(offset > 0):
        lost.append(f"negative coordinates (shifted by {offset[::-1].tolist()} px along x, y[, z] to fit "
                    "the image)")
        pix = pix + offset
    return pix, offset


def _report_lost(tables: TrackTables, from_ctc: bool, lost: list[str]) -> None:
    """Name everything the session has that a CTC folder cannot hold."""
    mask_keys = set(_MASK_KEYS) if tables.meta("position", "ctc.mask_rle") is not None else set()
    by_scope: dict[str, list[str]] = {}
    for b in tables.metadata:
        if b.scope == "session" and b.key.startswith("ctc."):
            continue
        if b.scope == "position" and b.key in mask_keys:
            continue
        by_scope.setdefault(b.scope, []).append(b.key)
    for scope, keys in by_scope.items():
        lost.append(f"{scope} metadata ({', '.join(repr(k) for k in keys)})")
    p = tables.positions
    if "quality" in p and np.isfinite(p["quality"]).any():
        lost.append("quality")
    if "origin" in p and (p["origin"] != 0).any():
        lost.append("position origins (gap-closed/validated)")
    if not from_ctc:
        if "radius" in p and np.isfinite(p["radius"]).any():
            lost.append("radius (read back as the equivalent radius of the drawn mask)")
        if "native_id" in p:
            lost.append("native position ids (CTC labels are renumbered)")
        nat = tables.track_col("native_id")
        if any(v is not None for v in nat):
            lost.append("native track ids")
    for col, what in (("name", "track names"), ("identity", "track identities")):
        vals = tables.track_col(col)
        if any(v is not None for v in vals) and not (from_ctc and col == "name"):
            lost.append(what)
    if tables.n_tracks and not tables.track_col("visible").all():
        lost.append("track visibility")
    tm = tables.frames.get("time")
    if tm is not None and len(tm):
        tm = np.asarray(tm, np.float64)
        fr = tables.frames["frame"].astype(np.float64)
        ok = ~np.isfinite(tm) | (tm == fr)
        if not ok.all():
            lost.append("frame times (CTC frames are image indices)")
    if lost:
        warnings.warn(f"CTC cannot hold: {'; '.join(lost)}", LossyConversionWarning, stacklevel=3)
