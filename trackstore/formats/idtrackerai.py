"""idtracker.ai trajectories (versions 3 to 6): session folders and single trajectories files.

Reading maps the ``trajectories[frame, animal, xy]`` array to the model: every non-NaN cell is a
position (frame-major order), animal ``k`` is track ``k`` with identity ``k+1``, consecutive
positions of one animal are linked (a NaN gap becomes one link that skips frames), and
``id_probabilities`` becomes ``positions["quality"]``. Where several variants exist (v5
``with_gaps``/``without_gaps``/``validated``, v3/v4 ``trajectories_wo_gaps``) the most complete
one gives the positions and the others give their origin (``observed``, ``gap_closed``,
``validated``). Every attribute of the trajectories dict becomes a session metadata value of
the same type, in the same order.

Nothing is lost: at read time every file is rebuilt from the model exactly as :func:`write` would
write it and compared bit for bit (CSV/JSON byte for byte); whatever differs (a position a person
deleted in ``validated.npy``, NaNs with odd bit patterns, a CSV printed some other way) is stored
in ``idtrackerai.*`` metadata, so writing the session back gives the same arrays and text.
The whole path is vectorized numpy: no Python loop over frames, animals or positions.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LossyConversionWarning, ParseError, WriteError
from ..model import ORIGIN_CODE, SessionInfo, TrackTables, _same_value
from ..safe_pickle import MAX_BYTES, read_npy_header
from . import _idtrackerai_files as files
from . import _idtrackerai_text as txt
from ._base import prepare_target, read_head

NAME = "idtrackerai"
SUFFIXES = ("/", ".npy", ".h5", ".hdf5", ".pickle", ".pkl", ".parquet", ".csv")
DESCRIPTION = "idtracker.ai v3-v6 session folders and trajectories files (.npy, .h5, .pickle, .parquet, CSV)"
EXTRA = None

#: Layouts :func:`write` can produce (``layout=``).
LAYOUTS = ("v6", "v5", "v4", "v3", "npy", "h5", "pickle", "parquet", "csv", "tidy_csv")

_OBS, _GAP, _VAL = ORIGIN_CODE["observed"], ORIGIN_CODE["gap_closed"], ORIGIN_CODE["validated"]
_ALL = [_OBS, _GAP, _VAL]
_CANON_NAN = np.array(np.nan).view(np.uint64)[()]
_F8 = np.dtype(np.float64)
_META_LAYOUT = "idtrackerai.layout"
_META_SESSION_JSON = "idtrackerai.session_json"
_PATCH = "idtrackerai.patch:"
_RAW = "idtrackerai.raw:"
_GAPS_VARIANTS = ("with_gaps", "trajectories")
_NO_GAPS_VARIANTS = ("without_gaps", "trajectories_wo_gaps")
_VALIDATED_VARIANTS = ("validated", "trajectories_validated")
_NO_ID_VARIANTS = ("trajectories_wo_identification", "trajectories_wo_identities")
_KEYWORDS = (b"trajectories", b"frames_per_second", b"body_length", b"id_probabilities", b"video_path")


# ====================================================================== sniff
def sniff(path: Path) -> bool:
    """True for an idtracker.ai session folder, trajectories folder, ``*_csv`` folder or file.

    Reads at most a few KB (and lists a few folders); never raises.
    """
    try:
        path = Path(path)
        if path.is_dir():
            try:
                files.find(path)
                return True
            except ParseError:
                return False
        low = path.name.lower()
        if low.endswith(".npy"):
            return _sniff_npy(path)
        if low.endswith((".pickle", ".pkl")):
            head = read_head(path)
            return head[:1] == b"\x80" and any(k in head for k in _KEYWORDS)
        if low.endswith((".h5", ".hdf5")):
            if read_head(path, 8) != b"\x89HDF\r\n\x1a\n":
                return False
            import h5py
            with h5py.File(path, "r") as f:
                return "trajectories" in f
        if low.endswith(".parquet"):
            import pyarrow.parquet as pq
            schema = pq.read_schema(path)
            return b"idtrackerai_attributes" in (schema.metadata or {}) or \
                {"frame", "individual", "x", "y", "probability"} <= set(schema.names)
        if low.endswith(".csv"):
            return files.looks_like_trajectories_csv(path)
    except Exception:  # a sniff must never raise
        return False
    return False


def _sniff_npy(path: Path) -> bool:
    with open(path, "rb") as f:
        try:
            info = read_npy_header(f, path)
        except ParseError:
            return False
        if info.descr == "|O":
            rest = f.read(4096)
            return any(k in rest for k in _KEYWORDS)
        return len(info.shape or ()) == 3 and info.shape[2] == 2 and str(info.descr)[1:2] == "f"


# ====================================================================== read
def read(path: Path, *, max_bytes: int = MAX_BYTES) -> TrackTables:
    """Read an idtracker.ai session folder or trajectories file.

    Args:
        path: A ``session_*`` folder (v3-v6), a ``trajectories/`` or ``*_csv`` folder, or one
            trajectories file (``.npy`` dict or plain array, ``.h5``, ``.pickle``, ``.parquet``,
            ``trajectories.csv``, tidy CSV).
        max_bytes: Refuse files (and pickled arrays) larger than this many bytes.

    Returns:
        The session; ``session.source_files`` lists every file read.

    Raises:
        ParseError: A file is malformed (the message names the file and the line/key/dataset).
        UnsafeInputError: A pickle asks for code outside the safe whitelist.

    Example:
        >>> t = read(Path("session_test"))  # doctest: +SKIP
        >>> t.n_tracks, t.session.frame_interval  # doctest: +SKIP
        (8, 0.03571428571428571)
    """
    found = files.find(Path(path))
    by_variant: dict[str, list[dict]] = {}
    for e in found.entries:
        by_variant.setdefault(e["variant"], []).append(e)
    for v in by_variant.values():
        v.sort(key=lambda e: files.KIND_RANK[e["kind"]])
    variants = [v for v in files.VARIANTS if v in by_variant]
    primary = variants[0]
    read_files: list[Path] = []

    # ---- the primary variant's best container gives the positions
    src = files.load(found, by_variant[primary][0], max_bytes=max_bytes)
    read_files += src.files
    traj = src.data["trajectories"]
    idp = src.data.get("id_probabilities")
    n_frames, n_animals = traj.shape[0], traj.shape[1]
    attrs = {k: v for k, v in src.data.items() if k not in files.ARRAY_KEYS}
    _record_entry(src.entry, src, attrs)
    fps = _fps(attrs.get("frames_per_second"))

    valid = ~(np.isnan(traj[:, :, 0]) & np.isnan(traj[:, :, 1]))
    # Positions are listed animal by animal (track-major): consecutive positions of one animal
    # are then neighbours, so links are (i, i + 1) and the store's link geometry reads memory
    # sequentially. Boolean indexing of the transposed grid costs little more than frame-major.
    valid_t = np.ascontiguousarray(valid.T)

    def take(grid: np.ndarray) -> np.ndarray:
        """The cells of an (F, N) grid that hold a position, in position order."""
        return grid.T[valid_t]

    # int32 frames and tracks straight from the grid: half the memory of int64 (the store takes any int)
    frame = take(np.broadcast_to(np.arange(n_frames, dtype=np.int32)[:, None], valid.shape))
    col = take(np.broadcast_to(np.arange(n_animals, dtype=np.int32)[None, :], valid.shape))
    x = _canon(take(traj[:, :, 0]))
    y = _canon(take(traj[:, :, 1]))
    quality = _canon(take(idp[:, :, 0])) if idp is not None and idp.ndim == 3 and \
        idp.shape[:2] == (n_frames, n_animals) and idp.shape[2] == 1 else None
    origin = np.zeros(len(frame), np.int8)
    patches: dict[str, dict] = {}
    fast = _fast_patches(src, traj, idp, valid)
    patches.update(fast)
    version = attrs.get("version")
    version_major = str(version)[:1] if isinstance(version, str) else ("3" if "git_commit" in attrs else "")
    # v3/v4/v5.0 "trajectories" is the with-gaps file; in v6 gaps are closed before saving
    gaps_semantics = primary == "with_gaps" or (primary == "trajectories" and (
        version_major in ("3", "4", "5") or any(v in by_variant for v in files.SIBLINGS)))

    # ---- the other variants give origins (loaded one at a time)
    others: list[tuple[str, files.Loaded]] = []
    rules: dict[str, list[int]] = {primary: list(_ALL)}
    grid_shape = traj.shape

    def load_with_gaps() -> bool:
        """Origins from the with-gaps file that sits beside a without-gaps one; False if there is none."""
        gaps = next((v for v in _GAPS_VARIANTS if v in by_variant), None)
        if gaps is None:
            return False
        g = files.load(found, by_variant[gaps][0], max_bytes=max_bytes)
        read_files.extend(g.files)
        _mark_gap_closed(origin, g.data["trajectories"], grid_shape, take)
        others.append((gaps, g))
        rules[gaps] = [_OBS]
        return True

    if primary in _VALIDATED_VARIANTS:
        base = next((v for v in _NO_GAPS_VARIANTS + _GAPS_VARIANTS if v in by_variant), None)
        if base is not None:
            b = files.load(found, by_variant[base][0], max_bytes=max_bytes)
            read_files += b.files
            bt = b.data["trajectories"]
            if bt.shape == traj.shape:
                changed = take(_cell_differs(traj, bt))
                origin[changed] = _VAL
            others.append((base, b))
            rules[base] = [_OBS, _GAP] if base in _NO_GAPS_VARIANTS else [_OBS]
            if base in _NO_GAPS_VARIANTS:
                load_with_gaps()
    elif primary in _NO_GAPS_VARIANTS:
        if not load_with_gaps() and quality is not None:
            _mark_by_probability(origin, quality, idp)
    elif not gaps_semantics and quality is not None:
        _mark_by_probability(origin, quality, idp)
    for v in variants:
        if v not in rules:
            rules[v] = [] if v in _NO_ID_VARIANTS else [_OBS]
            o = files.load(found, by_variant[v][0], max_bytes=max_bytes)
            read_files += o.files
            others.append((v, o))

    # ---- the tables
    tables = TrackTables()
    tables.frames = {"frame": np.arange(n_frames, dtype=np.int64),
                     "time": (np.arange(n_frames) / fps) if fps else
                     (src.times.astype(np.float64) if src.times is not None else np.arange(n_frames, dtype=np.float64))}
    pos = {"frame": frame, "x": x, "y": y, "track_id": col, "origin": origin}
    del frame
    if quality is not None:
        pos["quality"] = quality
    tables.positions = pos
    del traj, idp
    src.data.pop("trajectories", None)
    src.data.pop("id_probabilities", None)
    tables.links = _links(col)
    del valid
    labels = attrs.get("identities_labels")
    names = np.empty(n_animals, dtype=object)
    names[:] = [str(labels[k]) if labels is not None and len(labels) == n_animals else str(k + 1)
                for k in range(n_animals)]
    identity = np.empty(n_animals, dtype=object)
    identity[:] = list(range(1, n_animals + 1))
    tables.tracks = {"name": names, "identity": identity, "lineage_id": np.arange(n_animals, dtype=np.int64),
                     "visible": np.ones(n_animals, bool), "native_id": np.full(n_animals, None, dtype=object)}

    # ---- metadata: the attributes, then the layout and whatever is needed to write it back
    for k, v in attrs.items():
        tables.add_meta("session", k, v)
    groups = attrs.get("identities_groups")
    if isinstance(groups, dict) and groups:
        owners, gnames = [], []
        for gname, members in groups.items():
            for ident in np.asarray(members).ravel().tolist():
                if isinstance(ident, (int, float)) and 1 <= int(ident) <= n_animals:
                    owners.append(int(ident) - 1)
                    gnames.append(str(gname))
        if owners:
            tables.add_meta("track", "group", np.array(gnames, dtype=object), np.array(owners, np.int64))
    layout = _layout_name(found, by_variant, version_major)
    manifest = {"layout": layout, "root": found.root_kind, "primary": primary, "shape": [n_frames, n_animals],
                "rules": rules, "entries": []}
    session_attrs = attrs
    jsons: list[tuple[dict, str]] = []
    for j in found.jsons:
        p = found.root / j["path"]
        text = txt.read_text(p)
        read_files.append(p)
        tables.add_meta("session", _META_SESSION_JSON if not jsons else f"{_META_SESSION_JSON}:{j['path']}",
                        txt.parse_json(p, text))
        j["meta"] = _META_SESSION_JSON if not jsons else f"{_META_SESSION_JSON}:{j['path']}"
        jsons.append((j, text))
    tables.session = SessionInfo(
        name=found.root.stem if found.root_kind == "file" else found.root.name,
        source_format=NAME, format_version=str(version) if version is not None else
        ("3" if "git_commit" in attrs else None),
        source_path=str(Path(found.root).resolve()), space_unit="pixel",
        time_unit="second" if fps or src.times is not None else "frame",
        frame_interval=(1.0 / fps) if fps else _interval(tables.frames["time"]) if src.times is not None else 1.0,
        image_size=(_int_or_none(attrs.get("width")), _int_or_none(attrs.get("height")), None),
    )

    # ---- record every container; compare it with what write() would produce from the tables
    loaded_by_entry: list[tuple[dict, files.Loaded | None]] = [(src.entry, src)]
    loaded_by_entry += [(o.entry, o) for _, o in others]
    seen = {id(e) for e, _ in loaded_by_entry}
    loaded_by_entry += [(e, None) for e in found.entries if id(e) not in seen]
    manifest["entries"] = [e for e, _ in loaded_by_entry] + [j for j, _ in jsons]
    tables.add_meta("session", _META_LAYOUT, manifest)
    ctx = _Ctx(tables, manifest, session_attrs, lazy=True)
    for i, (entry, loaded) in enumerate(loaded_by_entry):
        if loaded is None:
            loaded = files.load(found, entry, max_bytes=max_bytes)
            read_files += loaded.files
            loaded_by_entry[i] = (entry, loaded)
        if loaded is not src:
            _record_entry(entry, loaded, session_attrs)
            patches.update(_array_patches(ctx, entry, loaded))
        loaded.data = {}
    ctx.patches = patches
    raws: dict[str, str] = {}
    main_name = Path(found.root).name if found.root_kind == "file" else None
    for entry, loaded in loaded_by_entry:
        if loaded is None or not loaded.texts:
            continue
        _pick_json_styles(ctx, entry, loaded.texts)
        rendered = ctx.render_texts(entry, file_name=main_name)
        for rel, text in loaded.texts.items():
            if rendered.get(rel) != text:
                raws[rel] = text
    for j, text in jsons:
        for indent in (4, None, 2):
            j["indent"] = indent
            if ctx.render_json_file(j) == text:
                break
        else:
            j["indent"] = 4
            raws[j["path"]] = text
    for key, patch in patches.items():
        tables.add_meta("session", key, patch)
    for rel, text in raws.items():
        tables.add_meta("session", _RAW + rel, text)
    tables.session.source_files = tuple(str(p) for p in dict.fromkeys(read_files))
    return tables


def _canon(a: np.ndarray) -> np.ndarray:
    """``a`` (a fresh array) as float64 with every NaN the canonical quiet NaN (what a database gives back)."""
    out = a.astype(np.float64, copy=False)
    nan = np.isnan(out)
    if nan.any():
        out[nan] = np.nan
    return out


def _fps(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) and f > 0 else None


def _int_or_none(v):
    try:
        return int(v) if v is not None and not isinstance(v, (str, bytes)) else None
    except (TypeError, ValueError):
        return None


def _interval(times: np.ndarray) -> float | None:
    t = times[np.isfinite(times)]
    return float((t[-1] - t[0]) / (len(t) - 1)) if len(t) > 1 and t[-1] > t[0] else None


def _cell_differs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(F, N) bool: cells whose x or y bits differ."""
    ua = a.view(np.uint64) if a.dtype == np.float64 else a.astype(np.float64).view(np.uint64)
    ub = b.view(np.uint64) if b.dtype == np.float64 else b.astype(np.float64).view(np.uint64)
    return (ua[:, :, 0] != ub[:, :, 0]) | (ua[:, :, 1] != ub[:, :, 1])


def _mark_gap_closed(origin, gaps_traj: np.ndarray, shape, take) -> None:
    """Positions missing from the with-gaps file were filled by idtracker.ai's gap closing."""
    if gaps_traj.shape != shape:
        return
    missing = take(np.isnan(gaps_traj[:, :, 0]) & np.isnan(gaps_traj[:, :, 1]))
    origin[missing & (origin == _OBS)] = _GAP


def _mark_by_probability(origin, quality: np.ndarray, idp) -> None:
    """v6 (and lone without_gaps): a position with NaN id_probability was filled by idtracker.ai."""
    if idp is None or not np.isfinite(idp).any():
        return  # no identity model ran: every probability is NaN, so the rule says nothing
    origin[np.isnan(quality) & (origin == _OBS)] = _GAP


def _links(col: np.ndarray) -> dict[str, np.ndarray]:
    """Consecutive positions of each animal: positions are track-major, so ``i -> i + 1`` within a column."""
    src = np.flatnonzero(col[1:] == col[:-1])
    if len(col) < 2**31 - 1:
        src = src.astype(np.int32)  # half the memory of int64 for 10 M links
    return {"source_id": src, "target_id": src + 1}


def _layout_name(found: files.Found, by_variant: dict, version_major: str) -> str:
    if found.root_kind == "file":
        return "file"
    if found.root_kind == "folder":
        return "folder"
    in_siblings = any(e["path"].split("/", 1)[0] in files.SIBLINGS for e in found.entries)
    if in_siblings or version_major in ("3", "4"):
        return "v3" if version_major == "3" else "v4"
    if any(v in by_variant for v in ("with_gaps", "without_gaps", "validated", "trajectories_wo_gaps",
                                     "trajectories_validated")) or version_major == "5":
        return "v5"
    return "v6"


# ---------------------------------------------------------------------- patches
def _patch(actual: np.ndarray, rebuilt: np.ndarray | None) -> dict | None:
    """What turns ``rebuilt`` into ``actual`` bit for bit (None when nothing)."""
    actual = np.asarray(actual)
    if rebuilt is None or rebuilt.shape != actual.shape or rebuilt.dtype != actual.dtype or actual.dtype.hasobject:
        return {"array": np.ascontiguousarray(actual)}
    ua = np.ascontiguousarray(actual).reshape(-1).view(f"u{actual.dtype.itemsize}") if actual.size else actual
    ub = np.ascontiguousarray(rebuilt).reshape(-1).view(f"u{rebuilt.dtype.itemsize}") if rebuilt.size else rebuilt
    diff = np.flatnonzero(ua != ub)
    if not len(diff):
        return None
    if 2 * len(diff) > actual.size:
        return {"array": np.ascontiguousarray(actual)}
    return {"index": diff.astype(np.int64), "values": np.ascontiguousarray(actual).reshape(-1)[diff]}


def _apply(arr: np.ndarray, patch: dict | None) -> np.ndarray:
    if not patch:
        return arr
    if "array" in patch:
        return np.asarray(patch["array"])
    out = arr.copy()
    out.reshape(-1)[np.asarray(patch["index"], np.int64)] = patch["values"]
    return out


def _fast_patches(src: files.Loaded, traj, idp, valid) -> dict[str, dict]:
    """Patches of the primary container without rebuilding it: only odd NaNs and odd fills can differ."""
    rel = src.entry["path"]
    out: dict[str, dict] = {}
    if src.entry["kind"] in ("csv", "tidy"):  # compared as text; only the fill is needed
        if idp is not None and idp.shape[:2] == traj.shape[:2]:
            p2 = np.ascontiguousarray(idp[:, :, 0])
            src.entry["id_fill"] = _choose_fill(p2, p2.view(np.uint64), valid)
        return out
    if traj.dtype != np.float64:
        out[f"{_PATCH}{rel}:trajectories"] = {"array": np.ascontiguousarray(traj)}
    else:
        bits = traj.view(np.uint64)
        odd = np.isnan(traj) & (bits != _CANON_NAN)
        if odd.any():
            idx = np.flatnonzero(odd.ravel())
            out[f"{_PATCH}{rel}:trajectories"] = {"index": idx, "values": traj.reshape(-1)[idx]}
    if idp is not None:
        shape_ok = idp.ndim == 3 and idp.shape[:2] == traj.shape[:2] and idp.shape[2] == 1 and idp.dtype == np.float64
        if not shape_ok:
            out[f"{_PATCH}{rel}:id_probabilities"] = {"array": np.ascontiguousarray(idp)}
            src.entry["id_fill"] = np.nan
        else:
            p2 = idp[:, :, 0]
            bits = p2.view(np.uint64) if p2.flags.c_contiguous else np.ascontiguousarray(p2).view(np.uint64)
            fill = _choose_fill(p2, bits, valid)
            src.entry["id_fill"] = fill
            fbits = np.array(fill, np.float64).view(np.uint64)[()]
            odd = np.where(valid, np.isnan(p2) & (bits != _CANON_NAN), bits != fbits)
            if odd.any():
                idx = np.flatnonzero(odd.ravel())
                out[f"{_PATCH}{rel}:id_probabilities"] = {"index": idx, "values": p2.reshape(-1)[idx]}
    return out


def _choose_fill(p2: np.ndarray, bits: np.ndarray, valid: np.ndarray) -> float:
    """The value id_probabilities has where there is no position (NaN before 6.0.8, 0 after)."""
    empty = ~valid
    if not empty.any():
        return float("nan")
    n_nan = int(np.count_nonzero(empty & (bits == _CANON_NAN)))
    n_zero = int(np.count_nonzero(empty & (bits == 0)))
    return 0.0 if n_zero > n_nan else float("nan")


def _array_patches(ctx: _Ctx, entry: dict, loaded: files.Loaded) -> dict[str, dict]:
    """Patches of a non-primary binary container, from a full rebuild of its arrays."""
    out: dict[str, dict] = {}
    if entry["kind"] in ("csv", "tidy"):
        return out
    rel = entry["path"]
    rule = ctx.manifest["rules"][entry["variant"]]
    t = loaded.data.get("trajectories")
    if t is not None:
        p = _patch(t, ctx.traj(rule, np.dtype(t.dtype)))
        if p:
            out[f"{_PATCH}{rel}:trajectories"] = p
    idp = loaded.data.get("id_probabilities")
    if idp is not None and isinstance(idp, np.ndarray):
        valid = ctx.valid_grid(rule)
        p2 = idp[:, :, 0] if (idp.ndim == 3 and idp.shape[2] == 1 and idp.shape[:2] == (ctx.F, ctx.N)) else None
        fill = float("nan")
        if p2 is not None and p2.dtype == np.float64:
            fill = _choose_fill(p2, np.ascontiguousarray(p2).view(np.uint64), valid)
        entry["id_fill"] = fill
        p = _patch(idp, ctx.idp(rule, fill, idp.shape, np.dtype(idp.dtype)))
        if p:
            out[f"{_PATCH}{rel}:id_probabilities"] = p
    if loaded.long is not None:
        for name, arr in loaded.long.items():
            p = _patch(arr, ctx.long_column(name, arr.dtype))
            if p:
                out[f"{_PATCH}{rel}:{name}"] = p
    return out


def _record_entry(entry: dict, loaded: files.Loaded, session_attrs: dict) -> None:
    """Keep the container's key order and every value that differs from the session's attributes."""
    data = loaded.data
    entry["keys"] = [k for k in data]
    entry["arrays"] = {k: [str(np.asarray(data[k]).dtype.str), list(np.shape(data[k]))]
                       for k in files.ARRAY_KEYS if isinstance(data.get(k), np.ndarray)}
    entry["values"] = {k: v for k, v in data.items()
                       if k not in entry["arrays"] and not (k in session_attrs and _same_value(session_attrs[k], v))}


# ====================================================================== the writer's view of a session
class _Ctx:
    """A session seen as idtracker.ai arrays: positions placed in (frame, column) cells."""

    def __init__(self, tables: TrackTables, manifest: dict | None, attrs: dict, *, on_conflict: str = "error",
                 warn: bool = False, lazy: bool = False):
        self.tables = tables
        self.manifest = manifest or {}
        self.attrs = attrs
        self.on_conflict = on_conflict
        self.patches: dict[str, dict] = {}
        self.raws: dict[str, str] = {}
        self._cache: dict[Any, np.ndarray] = {}
        self._placed: tuple | None = None
        self.lost: list[str] = []
        if lazy and "shape" in self.manifest:  # read time: the shape is known, place positions on demand
            self.F, self.N = (int(v) for v in self.manifest["shape"])
        else:
            self._place()
            if warn and self.lost:
                warnings.warn("idtracker.ai cannot hold: " + "; ".join(self.lost), LossyConversionWarning,
                              stacklevel=3)
        ft = tables.frames.get("time")
        fn = tables.frame_numbers()
        if ft is not None and len(fn):
            times = np.full(self.F, np.nan)
            ok = (fn >= 0) & (fn < self.F)
            times[fn[ok]] = np.asarray(ft, np.float64)[ok]
        else:
            fps = _fps(attrs.get("frames_per_second"))
            times = np.arange(self.F) / fps if fps else np.arange(self.F, dtype=np.float64)
        self.times = times

    @property
    def frame(self) -> np.ndarray:
        return self._place()[0]

    @property
    def col(self) -> np.ndarray:
        return self._place()[1]

    @property
    def idx(self) -> np.ndarray:
        return self._place()[2]

    @property
    def origin(self) -> np.ndarray:
        return self._place()[3]

    def _place(self) -> tuple:
        """Put every position in a (frame, column) cell: ``(frame, col, position index, origin)``."""
        if self._placed is not None:
            return self._placed
        tables = self.tables
        manifest = self.manifest
        n = tables.n_positions
        frame = tables.positions["frame"]
        track = tables.pos("track_id")
        keep = track >= 0
        lost = self.lost
        if not keep.all():
            lost.append(f"{int((~keep).sum())} positions in no track")
        if tables.is_3d:
            lost.append(f"z of {int(np.isfinite(tables.pos('z')).sum())} positions (idtracker.ai is 2D)")
        if tables.n_links:
            cross = int(np.count_nonzero(track[tables.links["source_id"]] != track[tables.links["target_id"]]))
            if cross:
                lost.append(f"{cross} links between different tracks (divisions or merges)")
        if n and (frame[keep] < 0).any():
            raise WriteError(f"{int((frame[keep] < 0).sum())} positions have negative frame numbers; "
                             "idtracker.ai frames start at 0")
        col_of_track = self._columns(tables)
        if keep.all():
            idx = np.arange(n, dtype=np.int64)
            fr = frame
            col = col_of_track[track] if n else np.empty(0, np.int64)
        else:
            idx = np.flatnonzero(keep)
            fr = frame[idx]
            col = col_of_track[track[idx]] if len(idx) else np.empty(0, np.int64)
        n_cols = int(col_of_track.max()) + 1 if len(col_of_track) else 0
        if "shape" in manifest:
            n_cols = max(n_cols, int(manifest["shape"][1]))
        fns = tables.frame_numbers()
        n_frames = int(fns.max()) + 1 if len(fns) else 0
        if len(fr):
            n_frames = max(n_frames, int(fr.max()) + 1)
        if "shape" in manifest:
            n_frames = max(n_frames, int(manifest["shape"][0]))
        if len(idx):
            # two positions of one track in one frame cannot share an identity column
            key = fr * max(n_cols, 1) + col
            if np.bincount(key, minlength=n_frames * max(n_cols, 1)).max() > 1:
                col, n_cols = self._split(key, col, n_cols)
        self.F, self.N = n_frames, n_cols
        self._placed = (fr, col, idx, tables.pos("origin")[idx] if len(idx) < n else tables.pos("origin"))
        return self._placed

    def _split(self, key: np.ndarray, col: np.ndarray, n_cols: int) -> tuple[np.ndarray, int]:
        order = np.argsort(key, kind="stable")
        sk = key[order]
        n_dup = int(np.count_nonzero(sk[1:] == sk[:-1]))
        if self.on_conflict != "split":
            raise WriteError(f"{n_dup} positions share a frame with another position of the same track; "
                             "an identity column holds one position per frame",
                             hint="pass on_conflict='split' to give them extra identity columns")
        # rank within each (frame, column) cell -> one extra column per (column, rank)
        starts = np.r_[0, np.flatnonzero(sk[1:] != sk[:-1]) + 1]
        rank = np.arange(len(sk)) - np.repeat(starts, np.diff(np.r_[starts, len(sk)]))
        r = np.empty_like(rank)
        r[order] = rank
        extra = r > 0
        pairs = col[extra] * (int(r.max()) + 1) + r[extra]
        uniq, inv = np.unique(pairs, return_inverse=True)
        col = col.copy()
        col[extra] = n_cols + inv
        self.lost.append(f"{n_dup} positions of tracks with two positions in one frame moved to "
                         f"{len(uniq)} extra identity columns")
        return col, n_cols + len(uniq)

    @staticmethod
    def _columns(tables: TrackTables) -> np.ndarray:
        """Column of every track: identity k -> k-1; other tracks appended in track order."""
        nt = tables.n_tracks
        if nt == 0:
            nt = int(tables.pos("track_id").max()) + 1 if tables.n_positions else 0
            return np.arange(nt, dtype=np.int64)
        ident = tables.track_col("identity")
        cols = np.full(nt, -1, np.int64)
        used: set[int] = set()
        for t in range(nt):  # one entry per track (small): identity numbers are Python objects
            v = ident[t]
            if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 and int(v) - 1 not in used:
                cols[t] = int(v) - 1
                used.add(int(v) - 1)
        nxt = max(used) + 1 if used else 0
        rest = np.flatnonzero(cols < 0)
        cols[rest] = nxt + np.arange(len(rest))
        return cols

    def valid_grid(self, rule) -> np.ndarray:
        key = ("valid", tuple(rule))
        if key not in self._cache:
            g = np.zeros((self.F, self.N), bool)
            sel = np.isin(self.origin, rule)
            g[self.frame[sel], self.col[sel]] = True
            self._cache[key] = g
        return self._cache[key]

    def traj(self, rule, dtype=_F8) -> np.ndarray:
        """trajectories (F, N, 2) of the positions whose origin is in ``rule``, NaN elsewhere."""
        key = ("traj", tuple(rule), dtype.str)
        if key not in self._cache:
            g = np.full((self.F, self.N, 2), np.nan, dtype=dtype)
            sel = np.isin(self.origin, rule)
            i = self.idx[sel]
            g[self.frame[sel], self.col[sel], 0] = self.tables.positions["x"][i]
            g[self.frame[sel], self.col[sel], 1] = self.tables.positions["y"][i]
            self._cache = {k: v for k, v in self._cache.items() if k[0] != "traj"}  # keep one grid at a time
            self._cache[key] = g
        return self._cache[key]

    def idp(self, rule, fill, shape=None, dtype=_F8) -> np.ndarray | None:
        """id_probabilities (F, N, 1): quality at the rule's positions, ``fill`` elsewhere."""
        if shape is not None and tuple(shape) != (self.F, self.N, 1):
            return None  # an odd shape: the stored patch holds the whole array
        g = np.full((self.F, self.N, 1), fill, dtype=dtype)
        sel = np.isin(self.origin, rule)
        g[self.frame[sel], self.col[sel], 0] = self.tables.pos("quality")[self.idx[sel]]
        return g

    def long_column(self, name: str, dtype) -> np.ndarray:
        if name == "frame":
            return np.repeat(np.arange(self.F), self.N).astype(dtype)
        if name == "individual":
            return np.tile(np.arange(self.N), self.F).astype(dtype)
        return np.repeat(self.times, self.N).astype(dtype)

    def has_quality(self) -> bool:
        return "quality" in self.tables.positions

    # ------------------------------------------------------------ containers
    def arrays(self, entry: dict) -> tuple[np.ndarray, np.ndarray | None]:
        """The entry's trajectories and id_probabilities arrays, patches applied."""
        rule = self.manifest.get("rules", {}).get(entry["variant"], _ALL)
        rel = entry["path"]
        spec = entry.get("arrays", {})
        tdt = np.dtype(spec["trajectories"][0]) if "trajectories" in spec else np.dtype(np.float64)
        t = _apply(self.traj(rule, tdt), self.patches.get(f"{_PATCH}{rel}:trajectories"))
        p = None
        if "id_probabilities" in spec or (not spec and self.has_quality()):
            dt, shape = (np.dtype(spec["id_probabilities"][0]), spec["id_probabilities"][1]) \
                if "id_probabilities" in spec else (np.dtype(np.float64), None)
            p = _apply(self.idp(rule, entry.get("id_fill", np.nan), shape, dt),
                       self.patches.get(f"{_PATCH}{rel}:id_probabilities"))
        return t, p

    def entry_dict(self, entry: dict, t: np.ndarray, p: np.ndarray | None) -> dict:
        """The trajectories dict of a binary container, in its key order with its value types."""
        out: dict[str, Any] = {}
        values = entry.get("values", {})
        for k in entry.get("keys", []):
            if k == "trajectories":
                out[k] = t
            elif k == "id_probabilities" and k in entry.get("arrays", {}):
                out[k] = p
            elif k in values:
                out[k] = values[k]
            elif k in self.attrs:
                out[k] = self.attrs[k]
        return out

    def _best(self, variant: str) -> dict | None:
        best = None
        for e in self.manifest.get("entries", []):
            if e.get("variant") == variant and e["kind"] != "json" and (
                    best is None or files.KIND_RANK[e["kind"]] < files.KIND_RANK[best["kind"]]):
                best = e
        return best

    def variant_arrays(self, entry: dict) -> tuple[np.ndarray, np.ndarray | None]:
        """The arrays a CSV container prints: its variant's best binary container's, patches applied."""
        best = self._best(entry["variant"])
        if best is not None and best["kind"] not in ("csv", "tidy"):
            t, p = self.arrays(best)
            if t.shape == (self.F, self.N, 2) and (p is None or p.shape == (self.F, self.N, 1)):
                return t.astype(np.float64, copy=False), p
        spec = {"trajectories": ["<f8", [self.F, self.N, 2]]}
        if self.has_quality():
            spec["id_probabilities"] = ["<f8", [self.F, self.N, 1]]
        return self.arrays({**entry, "arrays": spec})

    def variant_dict(self, variant: str) -> dict:
        """Attributes of a variant (from its best container): what its CSV/JSON files print."""
        best = self._best(variant)
        if best is None:
            return dict(self.attrs)
        out: dict[str, Any] = {}
        values = best.get("values", {})
        for k in best.get("keys", []):
            if k in files.ARRAY_KEYS and k in best.get("arrays", {}):
                continue
            if k in values:
                out[k] = values[k]
            elif k in self.attrs:
                out[k] = self.attrs[k]
        return out

    def render_texts(self, entry: dict, file_name: str | None = None) -> dict[str, str | None]:
        """Every text file of a CSV/tidy container, keyed by relative path (None: cannot be printed)."""
        out: dict[str, str | None] = {}
        if entry["kind"] not in ("csv", "tidy"):
            return out
        t, p = self.variant_arrays(entry)
        attrs = self.variant_dict(entry["variant"])
        if entry["kind"] == "tidy":
            spec = entry["csv"]
            rows = np.column_stack([np.repeat(np.arange(self.F), self.N), np.repeat(self.times, self.N),
                                    np.tile(np.arange(self.N), self.F), t[:, :, 0].ravel(), t[:, :, 1].ravel(),
                                    p[:, :, 0].ravel() if p is not None and self.has_quality()
                                    else np.full(self.F * self.N, np.nan)])
            body = txt.format_rows(rows, spec["fmts"], ",", spec["newline"])
            out[file_name or entry["path"]] = spec["header"] + spec["newline"] + body
            a = entry.get("attributes")
            if a:
                d = {k: attrs[k] for k in a.get("keys", attrs) if k in attrs}
                out[files._sibling(entry["path"], a["name"])] = txt.json_text(d, indent=a.get("indent", 4),
                                                                               style=a.get("style", "v6"))
            return out
        rel = (entry["path"] + "/") if entry["path"] else ""
        fs = entry["files"]
        for role, spec in fs.items():
            name = rel + spec["name"]
            if role == "trajectories":
                body = t.reshape(self.F, 2 * self.N)
                out[name] = self._csv(spec, body)
            elif role == "id_probabilities":
                if p is None or not self.has_quality():
                    continue
                out[name] = self._csv(spec, p.reshape(self.F, self.N))
            elif role == "areas":
                areas = attrs.get("areas")
                if isinstance(areas, dict) and all(k in areas for k in ("mean", "median", "std")):
                    body = np.column_stack([np.asarray(areas[k], np.float64) for k in ("mean", "median", "std")])
                elif isinstance(areas, np.ndarray) and areas.ndim == 2:
                    body = areas
                else:
                    out[name] = None  # only the raw text (kept at read time) can give it
                    continue
                out[name] = self._csv({**spec, "time": False}, body)
            elif role == "attributes":
                d = {k: attrs[k] for k in spec.get("keys", []) if k in attrs}
                out[name] = self._json(spec, d)
        if file_name is not None and "trajectories" in fs:  # a single CSV file is named by the caller
            out[file_name] = out.pop(rel + fs["trajectories"]["name"])
        return out

    def _csv(self, spec: dict, body: np.ndarray) -> str:
        nl = spec.get("newline", "\n")
        delim = spec.get("delimiter", ",")
        fmts = [spec.get("fmt", "%.3f")] * body.shape[1]
        if spec.get("time"):
            body = np.column_stack([self.times, body])
            fmts = [spec.get("time_fmt") or "%.3f"] + fmts
        head = (spec["header"] + nl) if spec.get("header") is not None else ""
        return head + txt.format_rows(body, fmts, delim, nl)

    def _json(self, spec: dict, d: dict) -> str:
        if "indent" not in spec:  # first time: find the printing that gives the file's text
            spec["indent"], spec["style"] = 4, "v6"
        try:
            return txt.json_text(d, indent=spec["indent"], style=spec["style"])
        except (TypeError, ValueError):
            return ""

    def render_json_file(self, j: dict) -> str:
        value = self.tables.session_meta().get(j["meta"])
        try:
            return txt.json_text(value, indent=j.get("indent", 4))
        except (TypeError, ValueError):
            return ""


def _pick_json_styles(ctx: _Ctx, entry: dict, texts: dict[str, str]) -> None:
    """Record how each attributes JSON of a container was printed (indent, numpy style)."""
    attrs = ctx.variant_dict(entry["variant"])
    if entry["kind"] == "csv" and "attributes" in entry["files"]:
        spec = entry["files"]["attributes"]
        rel = ((entry["path"] + "/") if entry["path"] else "") + spec["name"]
    elif entry["kind"] == "tidy" and entry.get("attributes"):
        spec = entry["attributes"]
        rel = files._sibling(entry["path"], spec["name"])
    else:
        return
    if rel in texts:
        _json_candidates(spec, {k: attrs[k] for k in spec.get("keys", []) if k in attrs}, texts[rel])


def _json_candidates(spec: dict, d: dict, text: str) -> None:
    """Pick the indent/style that reproduces ``text`` (v6, v5 wrappers, v3/v4 compact)."""
    for indent, style in ((4, "v6"), (4, "v5"), (None, "v6"), (None, "v5")):
        try:
            if txt.json_text(d, indent=indent, style=style) == text:
                spec["indent"], spec["style"] = indent, style
                return
        except (TypeError, ValueError):
            continue
    spec["indent"], spec["style"] = 4, "v6"


# ====================================================================== write
def write(tables: TrackTables, path: Path, *, overwrite: bool = False, layout: str | None = None,
          on_conflict: str = "error", protocol: int | None = None) -> list[Path]:
    """Write a session as idtracker.ai files.

    Args:
        tables: The session (any source format).
        path: The session folder to create (folder layouts) or the file (single-file layouts).
        overwrite: Replace existing files.
        layout: ``v6``, ``v5``, ``v4``, ``v3`` (session folders) or ``npy``, ``h5``, ``pickle``,
            ``parquet``, ``csv`` (a ``*_csv`` folder), ``tidy_csv`` (one file). Default: the layout
            the session was read from (files and formatting alike), else chosen by the suffix of
            ``path`` (a folder without suffix gets ``v6``).
        on_conflict: ``"error"`` (default) refuses a track with two positions in one frame;
            ``"split"`` moves the extra positions to new identity columns (with a warning).
        protocol: Pickle protocol of ``.npy``/``.pickle`` files (default: as read, else 4).

    Returns:
        Every file written.

    Raises:
        WriteError: The target exists (without ``overwrite``), or the session cannot be held.

    Example:
        >>> write(read(Path("session_a")), Path("out/session_a"))  # doctest: +SKIP
        [PosixPath('out/session_a/trajectories/trajectories.npy'), ...]
    """
    path = Path(path)
    meta = tables.session_meta()
    manifest = meta.get(_META_LAYOUT)
    if manifest is not None and not isinstance(manifest, dict):
        manifest = None
    if layout is not None and layout not in LAYOUTS and not (manifest and layout == manifest.get("layout")):
        raise WriteError(f"unknown idtracker.ai layout {layout!r}", path=path, hint=f"one of {', '.join(LAYOUTS)}")
    attrs = {b.key: b.values[0] for b in tables.metadata
             if b.scope == "session" and not b.key.startswith("idtrackerai.")}
    if manifest is not None and _same_layout(manifest, layout):
        entries = [dict(e) for e in manifest["entries"]]
        root_kind = manifest["root"]
        ctx = _Ctx(tables, manifest, attrs, on_conflict=on_conflict, warn=True)
        ctx.patches = {k: v for k, v in meta.items() if k.startswith(_PATCH)}
        ctx.raws = {k[len(_RAW):]: v for k, v in meta.items() if k.startswith(_RAW)}
        _warn_foreign_meta(tables, known_session=True)
    else:
        if layout is None:
            layout = _layout_for_suffix(path)
        ctx = _Ctx(tables, None, attrs, on_conflict=on_conflict, warn=True)
        entries, root_kind, rules = _fresh_layout(ctx, layout, manifest, meta, path)
        ctx.manifest = {"rules": rules, "shape": [ctx.F, ctx.N], "entries": entries}
        if manifest is None:
            ctx.attrs = {k: v for e in entries for k, v in e.get("values", {}).items()} | attrs
        _warn_foreign_meta(tables, known_session=manifest is not None)
        if manifest is not None:
            lost = [v for v in manifest.get("rules", {}) if v not in rules]
            if lost:
                warnings.warn(f"layout {layout!r} has no place for the variant(s) {', '.join(lost)} "
                              f"of this {manifest.get('layout')} session", LossyConversionWarning, stacklevel=2)
    if protocol is not None:
        for e in entries:
            for k in ("npy", "pickle"):
                if k in e and isinstance(e[k], dict):
                    e[k] = {**e[k], "protocol": protocol}
    return _write_entries(ctx, entries, root_kind, path, overwrite)


_KIND_OF_LAYOUT = {"npy": ("npy", "npy_array"), "h5": ("h5",), "pickle": ("pickle",), "parquet": ("parquet",),
                   "tidy_csv": ("tidy",), "csv": ("csv",)}


def _same_layout(manifest: dict, layout: str | None) -> bool:
    """Whether ``layout`` is the one the session was read in (then its files are rebuilt as they were)."""
    if layout is None or layout == manifest.get("layout"):
        return True
    entries = [e for e in manifest.get("entries", []) if e.get("kind") != "json"]
    return manifest.get("root") in ("file", "folder") and len(entries) == 1 and \
        entries[0]["kind"] in _KIND_OF_LAYOUT.get(layout, ()) and \
        (manifest["root"] == "file") == (layout != "csv")


def _layout_for_suffix(path: Path) -> str:
    low = path.name.lower()
    for suf, lay in ((".npy", "npy"), (".h5", "h5"), (".hdf5", "h5"), (".pickle", "pickle"), (".pkl", "pickle"),
                     (".parquet", "parquet"), ("_tidy.csv", "tidy_csv"), (".csv", "tidy_csv")):
        if low.endswith(suf):
            return lay
    return "csv" if low.endswith("_csv") else "v6"


def _warn_foreign_meta(tables: TrackTables, *, known_session: bool) -> None:
    keys = sorted({b.key for b in tables.metadata if b.scope not in ("session", "tag") and
                   not (b.scope == "track" and b.key == "group")})
    if not known_session:
        keys += sorted({b.key for b in tables.metadata if b.scope == "session"})
    if keys:
        n = len(keys)
        warnings.warn(f"idtracker.ai files have no place for {n} metadata key(s): {', '.join(keys[:10])}"
                      + (" ..." if n > 10 else ""), LossyConversionWarning, stacklevel=3)


def _default_attrs(ctx: _Ctx) -> dict:
    """A minimal idtracker.ai 6 dict for a session from another format."""
    t = ctx.tables
    names = t.track_col("name") if t.n_tracks else np.array([], dtype=object)
    cols = _Ctx._columns(t)
    labels = [str(k + 1) for k in range(ctx.N)]
    for tr, c in enumerate(cols.tolist()):
        if c < ctx.N and names[tr] is not None:
            labels[c] = str(names[tr])
    groups: dict[str, list[int]] = {}
    g = t.meta("track", "group")
    if g is not None and g.owners is not None:
        for owner, name in zip(g.owners.tolist(), g.values.tolist()):
            if 0 <= owner < len(cols):
                groups.setdefault(str(name), []).append(int(cols[owner]) + 1)
    fps = None
    if t.session.time_unit in ("second", "s") and t.session.frame_interval:
        fps = 1.0 / float(t.session.frame_interval)
    out: dict[str, Any] = {"version": "trackstore", "frames_per_second": fps, "identities_labels": labels,
                           "identities_groups": groups}
    w, h = t.session.image_size[0], t.session.image_size[1]
    if w is not None and h is not None:
        out = {"version": "trackstore", "height": int(h), "width": int(w)} | out
    return out


def _fresh_layout(ctx: _Ctx, layout: str, manifest: dict | None, meta: dict, path: Path):
    """Entries of a layout the session did not come in: (entries, root kind, rules)."""
    if manifest is not None:
        prim = next((e for e in manifest["entries"] if e.get("variant") == manifest["primary"]
                     and e["kind"] not in ("json",)), None)
        base_keys = [k for k in (prim or {}).get("keys", []) if k not in files.ARRAY_KEYS]
        base_values = dict((prim or {}).get("values", {}))
        if prim is not None and prim["kind"] in ("csv", "tidy"):
            base_keys = [k for k in ctx.attrs]
    else:
        d = _default_attrs(ctx)
        base_keys, base_values = list(d), d
    has_q = ctx.has_quality()
    origins = set(np.unique(ctx.origin).tolist())
    keys = ["trajectories"] + (["id_probabilities"] if has_q else []) + base_keys
    if manifest is not None and prim is not None and prim["kind"] not in ("csv", "tidy") and \
            "trajectories" in prim.get("keys", []):
        keys = list(prim["keys"])  # the source's own key order, arrays where they were
        if has_q and "id_probabilities" not in keys:
            keys.insert(keys.index("trajectories") + 1, "id_probabilities")
        elif has_q:
            base_values.pop("id_probabilities", None)
    arrays = {"trajectories": ["<f8", [ctx.F, ctx.N, 2]]}
    if has_q:
        arrays["id_probabilities"] = ["<f8", [ctx.F, ctx.N, 1]]

    def binary(kind, variant, rel, **extra):
        e = {"kind": kind, "variant": variant, "path": rel, "keys": list(keys), "values": base_values,
             "arrays": arrays, "id_fill": np.nan}
        e.update(extra)
        return e

    def csv_group(variant, rel, *, time, areas_delim, style):
        fs: dict[str, dict] = {}
        n = ctx.N
        traj_head = ",".join(f"x{i},y{i}" for i in range(1, n + 1)) if n != 1 else "trajectories1,trajectories2"
        tlabel = "time," if style == "v6" else "seconds,"
        fs["trajectories"] = {"name": "trajectories.csv", "header": (tlabel if time else "") + traj_head,
                              "newline": "\n", "delimiter": ",", "time": time, "time_fmt": "%.3f", "fmt": "%.3f"}
        if has_q:
            fs["id_probabilities"] = {"name": "id_probabilities.csv", "newline": "\n", "delimiter": ",",
                                      "header": (tlabel if time else "") + ",".join(
                                          f"id_probabilities{i}" for i in range(1, n + 1)),
                                      "time": time, "time_fmt": "%.3f", "fmt": "%.3e"}
        areas = ctx.attrs.get("areas", base_values.get("areas"))
        if isinstance(areas, dict):
            fs["areas"] = {"name": "areas.csv", "header": "mean, median, standard_deviation", "newline": "\n",
                           "delimiter": areas_delim, "fmt": "%.1f"}
        fs["attributes"] = {"name": "attributes.json", "indent": 4, "style": style,
                            "keys": [k for k in base_keys if k != "areas"]}
        return {"kind": "csv", "variant": variant, "path": rel, "files": fs}

    fps_known = _fps(ctx.attrs.get("frames_per_second", base_values.get("frames_per_second"))) is not None
    rules: dict[str, list[int]] = {}
    if layout == "v6":
        rules["trajectories"] = list(_ALL)
        entries = [binary("npy", "trajectories", "trajectories/trajectories.npy",
                          npy={"header": None, "protocol": 4, "numpy_prefix": "numpy._core"}),
                   binary("h5", "trajectories", "trajectories/trajectories.h5"),
                   csv_group("trajectories", "trajectories/trajectories_csv", time=fps_known, areas_delim=", ",
                             style="v6")]
        root = "session"
    elif layout == "v5":
        entries = []
        variants = [("with_gaps", [_OBS])]
        if _VAL in origins:
            variants += [("without_gaps", [_OBS, _GAP]), ("validated", list(_ALL))]
        else:
            variants += [("without_gaps", list(_ALL))]
        for v, rule in variants:
            rules[v] = rule
            entries.append(binary("npy", v, f"trajectories/{v}.npy",
                                  npy={"header": None, "protocol": 3, "numpy_prefix": "numpy.core"}))
            entries.append(csv_group(v, f"trajectories/{v}_csv", time=False, areas_delim=",", style="v5"))
        root = "session"
    elif layout in ("v4", "v3"):
        rules = {"trajectories": [_OBS], "trajectories_wo_gaps": list(_ALL)}
        entries = [binary("npy", "trajectories", "trajectories/trajectories.npy",
                          npy={"header": None, "protocol": 3, "numpy_prefix": "numpy.core"}),
                   binary("npy", "trajectories_wo_gaps", "trajectories_wo_gaps/trajectories_wo_gaps.npy",
                          npy={"header": None, "protocol": 3, "numpy_prefix": "numpy.core"})]
        root = "session"
    else:
        rules["trajectories"] = list(_ALL)
        root = "file"
        if layout == "npy":
            entries = [binary("npy", "trajectories", path.name,
                              npy={"header": None, "protocol": 4, "numpy_prefix": "numpy._core"})]
        elif layout == "pickle":
            entries = [binary("pickle", "trajectories", path.name,
                              pickle={"protocol": 4, "numpy_prefix": "numpy._core"})]
        elif layout == "h5":
            entries = [binary("h5", "trajectories", path.name)]
        elif layout == "parquet":
            entries = [binary("parquet", "trajectories", path.name, parquet={
                "columns": ["frame", "time", "individual", "x", "y", "probability"], "schema_metadata": {},
                "attributes_text": None, "attributes_keys": base_keys})]
        elif layout == "tidy_csv":
            entries = [{"kind": "tidy", "variant": "trajectories", "path": path.name,
                        "csv": {"header": files.TIDY_HEADER, "newline": "\n",
                                "fmts": ["%d", "%.3f", "%d", "%.3f", "%.3f", "%.3e"]},
                        "attributes": {"name": "attributes_tidy.json", "keys": base_keys, "indent": 4,
                                       "style": "v6"}}]
        else:  # csv folder
            entries = [csv_group("trajectories", "", time=fps_known, areas_delim=", ", style="v6")]
            root = "folder"
    if manifest is None:
        for e in entries:
            e.setdefault("values", base_values)
    return entries, root, rules


def _write_entries(ctx: _Ctx, entries: list[dict], root_kind: str, path: Path, overwrite: bool) -> list[Path]:
    if root_kind == "file":
        main = entries[0]
        targets = [path]
        if main["kind"] == "tidy" and main.get("attributes"):
            targets.append(path.parent / main["attributes"]["name"])
        if main["kind"] == "csv":
            targets += [path.parent / s["name"] for r, s in main["files"].items() if r != "trajectories"]
        for p in targets:
            prepare_target(p, overwrite=overwrite)
        base = path.parent
    else:
        prepare_target(path, overwrite=overwrite, is_dir=True)
        base = path
    written: list[Path] = []
    for e in entries:
        kind = e["kind"]
        if kind == "json":
            p = base / e["path"]
            text = ctx.raws.get(e["path"])
            if text is None:
                text = ctx.render_json_file(e)
            txt.write_text(p, text)
            written.append(p)
            continue
        rel = e["path"]
        target = path if (root_kind == "file" and kind != "csv") else base / rel
        if kind in ("csv", "tidy"):
            fname = path.name if root_kind == "file" else None
            texts = ctx.render_texts(e, file_name=fname)
            for r, text in texts.items():
                raw = ctx.raws.get(r if fname is None or r != fname else _main_csv_rel(e))
                if raw is None and text is None:
                    continue
                p = base / r
                p.parent.mkdir(parents=True, exist_ok=True)
                txt.write_text(p, raw if raw is not None else text)
                written.append(p)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        t, p = ctx.arrays(e)
        if kind == "npy_array":
            from ._idtrackerai_pickle import write_npy_array
            write_npy_array(target, t, header=(e.get("npy") or {}).get("header"))
        elif kind == "npy":
            from ._idtrackerai_pickle import write_npy_object
            n = e.get("npy") or {}
            write_npy_object(target, ctx.entry_dict(e, t, p), header=n.get("header"),
                             protocol=n.get("protocol") or 4, numpy_prefix=n.get("numpy_prefix") or "numpy._core")
        elif kind == "pickle":
            from ._idtrackerai_pickle import write_pickle
            n = e.get("pickle") or {}
            write_pickle(target, ctx.entry_dict(e, t, p), protocol=n.get("protocol") or 4,
                         numpy_prefix=n.get("numpy_prefix") or "numpy._core")
        elif kind == "h5":
            from ._idtrackerai_h5 import default_tree, write_h5
            d = ctx.entry_dict(e, t, p)
            tree = e.get("tree")
            if tree is None:
                tree, d = default_tree(d)
            write_h5(target, tree, d)
        elif kind == "parquet":
            _write_parquet(ctx, e, target, t, p)
        written.append(target)
    return written


def _main_csv_rel(e: dict) -> str:
    if e["kind"] == "tidy":
        return e["path"]
    return ((e["path"] + "/") if e["path"] else "") + e["files"]["trajectories"]["name"]


def _write_parquet(ctx: _Ctx, e: dict, target: Path, t: np.ndarray, p: np.ndarray | None) -> None:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    spec = e.get("parquet") or {}
    rel = e["path"]
    cols = {}
    for name in ("frame", "individual", "time"):
        base = ctx.long_column(name, np.dtype(np.int64) if name != "time" else np.dtype(np.float64))
        cols[name] = _apply(base, ctx.patches.get(f"{_PATCH}{rel}:{name}"))
    prob = p[:, :, 0].ravel() if p is not None else np.ones(ctx.F * ctx.N)
    data = {"frame": cols["frame"], "time": cols["time"], "individual": cols["individual"],
            "x": t[:, :, 0].ravel(), "y": t[:, :, 1].ravel(), "probability": prob}
    table = pa.table({c: data[c] for c in spec.get("columns", list(data))})
    md = {k.encode("latin1"): v.encode("latin1") for k, v in spec.get("schema_metadata", {}).items()}
    text = spec.get("attributes_text")
    if text is None:
        keys = spec.get("attributes_keys") or []
        d = {k: ctx.attrs[k] for k in keys if k in ctx.attrs}
        d.update({k: v for k, v in e.get("values", {}).items() if k in keys})
        d = {k: d[k] for k in keys if k in d}
        text = json.dumps(d, default=txt.json_default_v6)
    md[b"idtrackerai_attributes"] = text.encode("utf-8")
    pq.write_table(table.replace_schema_metadata(md), target)


