"""Which idtracker.ai files make up a session, and reading each container into a trajectories dict.

A *container* is one file (``.npy``, ``.pickle``, ``.h5``, ``.parquet``, tidy CSV) or one CSV
group (``*_csv/`` folder, v5.0 ``<stem>/`` folder, v3/v4 ``<stem>.<key>.csv`` files) holding one
*variant* of the trajectories (``trajectories``, ``with_gaps``, ``without_gaps``, ``validated``,
``trajectories_wo_gaps``, ...). Each is described by an *entry*: a JSON-able dict that is stored in
the session's metadata, so the writer can produce the same files again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParseError
from ..safe_pickle import load_npy, load_pickle
from . import _idtrackerai_text as txt

#: Variant file stems, most precise first (validated > gap-closed > with gaps > no identities).
VARIANTS = ("validated", "trajectories_validated", "without_gaps", "trajectories_wo_gaps", "trajectories",
            "with_gaps", "trajectories_wo_identification", "trajectories_wo_identities")
#: Sibling folders of ``trajectories/`` in v3/v4 session folders.
SIBLINGS = ("trajectories_wo_gaps", "trajectories_wo_identification", "trajectories_wo_identities")
#: Container kinds, best source of exact arrays first.
KIND_RANK = {"npy": 0, "npy_array": 0, "pickle": 1, "h5": 2, "parquet": 3, "csv": 4, "tidy": 5}
SESSION_JSONS = ("session.json", "video_object.json")
TIDY_HEADER = "frame,time,individual,x,y,probability"
ARRAY_KEYS = ("trajectories", "id_probabilities")


@dataclass
class Found:
    """What discovery found: where the session is rooted and its containers' entries."""

    root: Path
    root_kind: str  # "session" | "folder" | "file"
    entries: list[dict] = field(default_factory=list)
    jsons: list[dict] = field(default_factory=list)


# ------------------------------------------------------------------ discovery
def _csv_group(folder: Path, stem: str | None) -> dict | None:
    """The CSV files of one variant in ``folder`` (``trajectories.csv`` or ``<stem>.trajectories.csv``)."""
    pre = f"{stem}." if stem else ""
    if not (folder / f"{pre}trajectories.csv").is_file():
        return None
    files: dict[str, dict] = {"trajectories": {"name": f"{pre}trajectories.csv"}}
    for role, name in (("id_probabilities", f"{pre}id_probabilities.csv"), ("areas", f"{pre}areas.csv"),
                       ("attributes", f"{pre}attributes.json")):
        if (folder / name).is_file():
            files[role] = {"name": name}
    return {"kind": "csv", "files": files}


def scan_trajectories_dir(tdir: Path, rel: str, only: tuple[str, ...] | None = None) -> list[dict]:
    """Entries for every known trajectories file in one folder (``rel`` prefixes their paths)."""
    if not tdir.is_dir():
        return []
    out: list[dict] = []
    try:
        names = sorted(p.name for p in tdir.iterdir())
    except OSError:
        return []
    stems = only or VARIANTS
    for name in names:
        p = tdir / name
        for stem in stems:
            if p.is_file():
                for ext, kind in ((".npy", "npy"), (".h5", "h5"), (".hdf5", "h5"), (".pickle", "pickle"),
                                  (".parquet", "parquet")):
                    if name == stem + ext:
                        out.append({"kind": kind, "variant": stem, "path": rel + name})
                if name == f"{stem}_tidy.csv":
                    e = {"kind": "tidy", "variant": stem, "path": rel + name, "attributes": None}
                    if (tdir / "attributes_tidy.json").is_file():
                        e["attributes"] = {"name": "attributes_tidy.json"}
                    out.append(e)
                if name == f"{stem}.trajectories.csv":  # v3/v4: CSVs next to the npy
                    g = _csv_group(tdir, stem)
                    if g:
                        out.append({**g, "variant": stem, "path": rel.rstrip("/")})
            elif p.is_dir():
                if name == f"{stem}_csv":  # v5.1.7+ and v6
                    g = _csv_group(p, None)
                    if g:
                        out.append({**g, "variant": stem, "path": rel + name})
                elif name == stem:
                    g = _csv_group(p, stem)  # v5.0-5.1.6: trajectories/<stem>/<stem>.trajectories.csv
                    if g:
                        out.append({**g, "variant": stem, "path": rel + name})
    return out


def _session_entries(folder: Path) -> tuple[list[dict], list[dict]]:
    entries = scan_trajectories_dir(folder / "trajectories", "trajectories/")
    for sib in SIBLINGS:
        entries += scan_trajectories_dir(folder / sib, sib + "/", only=(sib,))
    jsons = [{"kind": "json", "path": n} for n in SESSION_JSONS if (folder / n).is_file()]
    return entries, jsons


def find(path: Path) -> Found:
    """Every container of the session at ``path`` (a session folder, a trajectories/CSV folder or a file).

    Raises:
        ParseError: Nothing idtracker.ai-like there.
    """
    path = Path(path)
    if path.is_dir():
        entries, jsons = _session_entries(path)
        if entries:
            return Found(path, "session", entries, jsons)
        entries = scan_trajectories_dir(path, "")
        if entries:
            return Found(path, "folder", entries, [{"kind": "json", "path": n} for n in SESSION_JSONS
                                                   if (path / n).is_file()])
        g = _csv_group(path, None)
        if g:
            variant = path.name[:-4] if path.name.endswith("_csv") and path.name[:-4] in VARIANTS else "trajectories"
            return Found(path, "folder", [{**g, "variant": variant, "path": ""}])
        raise ParseError("no idtracker.ai trajectories in this folder (looked for trajectories/, "
                         "trajectories_wo_gaps/, *.npy/*.h5 trajectories files and *_csv folders)", path=path)
    if not path.is_file():
        raise ParseError("no such file or folder", path=path)
    name = path.name
    low = name.lower()
    stem = path.stem if path.stem in VARIANTS else "trajectories"
    if low.endswith(".npy"):
        e = {"kind": "npy", "variant": stem, "path": name}
    elif low.endswith((".h5", ".hdf5")):
        e = {"kind": "h5", "variant": stem, "path": name}
    elif low.endswith((".pickle", ".pkl")):
        e = {"kind": "pickle", "variant": stem, "path": name}
    elif low.endswith(".parquet"):
        e = {"kind": "parquet", "variant": stem, "path": name}
    elif low.endswith(".csv"):
        head = _first_line(path)
        if head.strip() == TIDY_HEADER:
            e = {"kind": "tidy", "variant": "trajectories", "path": name, "attributes": None}
            if (path.parent / "attributes_tidy.json").is_file() and name.endswith("_tidy.csv"):
                e["attributes"] = {"name": "attributes_tidy.json"}
        else:
            files: dict[str, dict] = {"trajectories": {"name": name}}
            pre = name[: -len("trajectories.csv")] if name.endswith("trajectories.csv") else None
            if pre is not None:  # trajectories.csv of a *_csv folder or <stem>.trajectories.csv
                for role, sib in (("id_probabilities", f"{pre}id_probabilities.csv"), ("areas", f"{pre}areas.csv"),
                                  ("attributes", f"{pre}attributes.json")):
                    if (path.parent / sib).is_file():
                        files[role] = {"name": sib}
            e = {"kind": "csv", "variant": "trajectories", "path": "", "files": files}
    else:
        raise ParseError("not an idtracker.ai trajectories file (.npy, .h5, .pickle, .parquet or .csv)", path=path)
    return Found(path, "file", [e])


def _first_line(path: Path, n: int = 4096) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(n).split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r")
    except OSError:
        return ""


def looks_like_trajectories_csv(path: Path) -> bool:
    """A CSV whose header is idtracker.ai's (``[time|seconds,]x1,y1,...``, tidy, or ``# x1,y1``)."""
    head = _first_line(path).lstrip("# ").strip()
    if head == TIDY_HEADER:
        return True
    cols = head.split(",")
    if cols and cols[0] in ("time", "seconds"):
        cols = cols[1:]
    return len(cols) >= 2 and (cols[:2] == ["x1", "y1"] or cols[:2] == ["trajectories1", "trajectories2"])


# ------------------------------------------------------------------ loading
@dataclass
class Loaded:
    """One container read: its entry (filled in), dict (arrays included) and the raw texts read."""

    entry: dict
    data: dict
    files: list[Path]
    texts: dict[str, str] = field(default_factory=dict)  # relpath -> text (CSV/JSON) to verify
    times: np.ndarray | None = None  # per-frame times printed in the file, if it has them
    long: dict | None = None  # columns of a long table (parquet, tidy CSV) as read


def _check_traj(data: Any, path: Path) -> dict:
    if not isinstance(data, dict):
        raise ParseError(f"expected a dict of trajectories, found {type(data).__name__}", path=path)
    if "trajectories" not in data:
        raise ParseError("no 'trajectories' key in the trajectories dict", path=path)
    t = data["trajectories"]
    if not isinstance(t, np.ndarray) or t.ndim != 3 or t.shape[2] != 2 or t.dtype.kind != "f":
        raise ParseError(f"key 'trajectories' must be a float array (frames, animals, 2), found "
                         f"{getattr(t, 'dtype', type(t).__name__)} {getattr(t, 'shape', '')}", path=path)
    p = data.get("id_probabilities")
    if p is not None and (not isinstance(p, np.ndarray) or p.dtype.kind != "f"):
        raise ParseError(f"key 'id_probabilities' must be a float array or None, found {type(p).__name__}",
                         path=path)
    return data


def load(found: Found, entry: dict, *, max_bytes: int) -> Loaded:
    """Read one container into a :class:`Loaded`."""
    kind = entry["kind"]
    base = found.root if found.root_kind != "file" else found.root.parent
    p = found.root if (found.root_kind == "file" and kind not in ("csv",)) else base / entry["path"]
    if kind in ("npy", "npy_array"):
        value, info = load_npy(p, max_bytes=max_bytes)
        if isinstance(value, np.ndarray) and not value.dtype.hasobject:
            entry["kind"] = "npy_array"
            entry["npy"] = {"header": info.header}
            return Loaded(entry, _check_traj({"trajectories": value}, p), [p])
        entry["npy"] = {"header": info.header, "protocol": info.protocol, "numpy_prefix": info.numpy_prefix}
        return Loaded(entry, _check_traj(value, p), [p])
    if kind == "pickle":
        value, info = load_pickle(p, max_bytes=max_bytes)
        entry["pickle"] = {"protocol": info.protocol, "numpy_prefix": info.numpy_prefix or "numpy._core"}
        return Loaded(entry, _check_traj(value, p), [p])
    if kind == "h5":
        from ._idtrackerai_h5 import read_h5
        data, tree = read_h5(p)
        entry["tree"] = tree
        return Loaded(entry, _check_traj(data, p), [p])
    if kind == "parquet":
        return _load_parquet(p, entry)
    if kind == "csv":
        folder = base / entry["path"] if found.root_kind != "file" else found.root.parent
        return _load_csv(folder, entry, found)
    if kind == "tidy":
        return _load_tidy(p, entry)
    raise ParseError(f"unknown container kind {kind!r}", path=p)  # pragma: no cover


def _split_header(path: Path, text: str) -> tuple[str | None, list[str], str]:
    """(header line or None, data lines, newline) of a CSV text."""
    newline = "\r\n" if "\r\n" in text[:65536] else "\n"
    lines = text.split(newline)
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise ParseError("empty CSV file (line 1)", path=path)
    first = lines[0]
    is_header = txt.detect_fmt(first.split(",")[0]) is None and first.split(",")[0].strip() not in ("nan", "-nan")
    return (first if is_header else None), (lines[1:] if is_header else lines), newline


def _csv_spec(path: Path, text: str, *, label: str) -> tuple[dict, list[str]]:
    header, body, newline = _split_header(path, text)
    names = header.lstrip("# ").split(",") if header is not None else []
    time_col = bool(names) and names[0] in ("time", "seconds")
    spec = {"header": header, "newline": newline, "delimiter": ",", "time": time_col,
            "time_fmt": txt.first_fmt(body[:50], ",", 0) if time_col else None,
            "fmt": txt.first_fmt(body[:200], ",", slice(1 if time_col else 0, None)) or
            ("%.3e" if label == "id_probabilities" else "%.3f")}
    if time_col and spec["time_fmt"] is None:
        spec["time_fmt"] = "%.3f"
    return spec, body


def _load_csv(folder: Path, entry: dict, found: Found) -> Loaded:
    files = entry["files"]
    read: list[Path] = []
    texts: dict[str, str] = {}
    data: dict[str, Any] = {}
    rel = "" if found.root_kind == "file" else (entry["path"] + "/" if entry["path"] else "")
    # attributes first: they give the dict's non-array keys
    if "attributes" in files:
        p = folder / files["attributes"]["name"]
        t = txt.read_text(p)
        read.append(p)
        texts[rel + files["attributes"]["name"]] = t
        attrs = txt.parse_json(p, t)
        if not isinstance(attrs, dict):
            raise ParseError("attributes JSON is not an object (line 1)", path=p)
        files["attributes"]["keys"] = list(attrs)
        data.update(attrs)
    p = folder / files["trajectories"]["name"]
    t = txt.read_text(p)
    read.append(p)
    texts[rel + files["trajectories"]["name"]] = t
    spec, body = _csv_spec(p, t, label="trajectories")
    files["trajectories"].update(spec)
    hl = 1 if spec["header"] is not None else 0
    arr = txt.parse_numeric(p, t, header_lines=hl)
    ncol = arr.shape[1] - (1 if spec["time"] else 0)
    if ncol % 2:
        raise ParseError(f"line {hl + 1}: {ncol} coordinate columns, expected x,y pairs", path=p)
    n_animals = ncol // 2
    traj = np.ascontiguousarray(arr[:, (1 if spec["time"] else 0):]).reshape(len(arr), n_animals, 2)
    times = arr[:, 0].copy() if spec["time"] else None
    idp = None
    if "id_probabilities" in files:
        q = folder / files["id_probabilities"]["name"]
        qt = txt.read_text(q)
        read.append(q)
        texts[rel + files["id_probabilities"]["name"]] = qt
        qspec, _ = _csv_spec(q, qt, label="id_probabilities")
        files["id_probabilities"].update(qspec)
        qa = txt.parse_numeric(q, qt, header_lines=1 if qspec["header"] is not None else 0,
                               n_cols=n_animals + (1 if qspec["time"] else 0))
        if len(qa) != len(arr):
            raise ParseError(f"{len(qa)} data rows, but {p.name} has {len(arr)}", path=q)
        idp = np.ascontiguousarray(qa[:, (1 if qspec["time"] else 0):]).reshape(len(qa), n_animals, 1)
    if "areas" in files:
        a = folder / files["areas"]["name"]
        at = txt.read_text(a)
        read.append(a)
        texts[rel + files["areas"]["name"]] = at
        header, body_a, newline = _split_header(a, at)
        delim = ", " if body_a and ", " in body_a[0] else ","
        files["areas"].update({"header": header, "newline": newline, "delimiter": delim,
                               "fmt": txt.first_fmt(body_a[:5], delim, slice(None)) or "%.1f"})
    data["trajectories"] = traj
    if idp is not None:
        data["id_probabilities"] = idp
    return Loaded(entry, data, read, texts, times=times)


def _load_tidy(p: Path, entry: dict) -> Loaded:
    t = txt.read_text(p)
    texts = {entry["path"]: t}
    read = [p]
    header, body, newline = _split_header(p, t)
    if header is None or header.strip() != TIDY_HEADER:
        raise ParseError(f"line 1: expected the header {TIDY_HEADER!r}", path=p)
    arr = txt.parse_numeric(p, t, header_lines=1, n_cols=6)
    entry["csv"] = {"header": header, "newline": newline,
                    "fmts": ["%d", txt.first_fmt(body[:20], ",", 1) or "%.3f", "%d",
                             txt.first_fmt(body[:200], ",", slice(3, 5)) or "%.3f",
                             txt.first_fmt(body[:200], ",", slice(3, 5)) or "%.3f",
                             txt.first_fmt(body[:200], ",", 5) or "%.3e"]}
    data: dict[str, Any] = {}
    if entry.get("attributes"):
        j = p.parent / entry["attributes"]["name"]
        jt = txt.read_text(j)
        read.append(j)
        texts[_sibling(entry["path"], entry["attributes"]["name"])] = jt
        attrs = txt.parse_json(j, jt)
        if not isinstance(attrs, dict):
            raise ParseError("attributes JSON is not an object (line 1)", path=j)
        entry["attributes"]["keys"] = list(attrs)
        data.update(attrs)
    traj, idp, times = long_to_grid(p, arr[:, 0], arr[:, 2], arr[:, 3], arr[:, 4], arr[:, 5], arr[:, 1])
    data["trajectories"] = traj
    data["id_probabilities"] = idp
    return Loaded(entry, data, read, texts, times=times,
                  long={"frame": arr[:, 0], "individual": arr[:, 2], "time": arr[:, 1]})


def _sibling(relpath: str, name: str) -> str:
    """Relative path of ``name`` in the same folder as ``relpath``."""
    head = relpath.rsplit("/", 1)[0] + "/" if "/" in relpath else ""
    return head + name


def long_to_grid(path: Path, frame, individual, x, y, prob, time):
    """Scatter a long (frame, individual) table into (F, N, 2) / (F, N, 1) grids and per-frame times."""
    frame = np.asarray(frame)
    individual = np.asarray(individual)
    if len(frame) == 0:
        return np.empty((0, 0, 2)), np.empty((0, 0, 1)), np.empty(0)
    fi = frame.astype(np.int64)
    ii = individual.astype(np.int64)
    bad = (fi != frame) | (ii != individual) | (fi < 0) | (ii < 0)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise ParseError(f"row {r + 1}: frame and individual must be non-negative integers", path=path)
    n_frames, n_ind = int(fi.max()) + 1, int(ii.max()) + 1
    if n_frames * n_ind != len(fi):
        raise ParseError(f"{len(fi)} rows do not cover {n_frames} frames x {n_ind} individuals", path=path)
    traj = np.full((n_frames, n_ind, 2), np.nan)
    traj[fi, ii, 0] = x
    traj[fi, ii, 1] = y
    idp = np.full((n_frames, n_ind, 1), np.nan)
    idp[fi, ii, 0] = prob
    times = np.full(n_frames, np.nan)
    times[fi] = time
    return traj, idp, times


def _load_parquet(p: Path, entry: dict) -> Loaded:
    import pyarrow.parquet as pq
    try:
        table = pq.read_table(p)
    except Exception as e:  # pyarrow raises several unrelated types for a bad file
        raise ParseError(f"not a readable parquet file: {e}", path=p) from None
    need = ("frame", "time", "individual", "x", "y", "probability")
    missing = [c for c in need if c not in table.column_names]
    if missing:
        raise ParseError(f"parquet columns {missing} missing (idtracker.ai writes {list(need)})", path=p)
    meta = dict(table.schema.metadata or {})
    attrs_raw = meta.pop(b"idtrackerai_attributes", None)
    data: dict[str, Any] = {}
    entry["parquet"] = {"columns": table.column_names,
                        "schema_metadata": {k.decode("latin1"): v.decode("latin1") for k, v in meta.items()},
                        "attributes_text": None, "attributes_keys": None}
    if attrs_raw is not None:
        text = attrs_raw.decode("utf-8")
        attrs = txt.parse_json(p, text)
        if isinstance(attrs, dict):
            data.update(attrs)
            entry["parquet"]["attributes_keys"] = list(attrs)
            if json.dumps(attrs, default=txt.json_default_v6) != text:
                entry["parquet"]["attributes_text"] = text
        else:
            entry["parquet"]["attributes_text"] = text
    cols = {c: table.column(c).to_numpy() for c in need}
    traj, idp, times = long_to_grid(p, cols["frame"], cols["individual"], cols["x"], cols["y"],
                                    cols["probability"], cols["time"])
    data["trajectories"] = traj
    data["id_probabilities"] = idp
    return Loaded(entry, data, [p], times=times,
                  long={"frame": cols["frame"], "individual": cols["individual"], "time": cols["time"]})
