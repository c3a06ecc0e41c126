"""Paraview CSV series, as OrganoidTracker exports positions for Paraview.

One folder holds ``{name}.csv.{t}`` for every time point ``t`` from the first to the last (the
extension is the time point, so Paraview sees a file series). Each file has the header
``x,y,z`` and one row per position, in pixels or micrometres; on request, metadata columns follow,
sorted by name, plus the built-ins ``track_id``, ``lineage_id`` (the lineage of a cell whose
family divides, else -1) and ``ancestor_track_id`` (its lineage, -1 without a track). Missing
values are ``NaN``, booleans ``True``/``False`` and lists their JSON without brackets. Next to
the series: ``How to import to Paraview.txt`` and, with metadata, ``lineage_colormap.json``.

The series has no links: reading it back gives positions and their metadata only.
"""

from __future__ import annotations

import colorsys
import csv
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np

from ..errors import LossyConversionWarning, ParseError, WriteError
from ..model import MetaBlock, SessionInfo, TrackTables
from ._base import prepare_target, read_head

NAME = "paraview_csv"
SUFFIXES = ("/",)
DESCRIPTION = "Paraview CSV series ({name}.csv.{t} per time point), as OrganoidTracker exports"
EXTRA = None

_FILE = re.compile(r"^(?P<stem>.+)\.csv\.(?P<t>-?\d+)$")
HELP_FILE = "How to import to Paraview.txt"
COLORMAP_FILE = "lineage_colormap.json"
BUILTINS = ("ancestor_track_id", "lineage_id", "track_id")
_UNITS = {"pixel": "pixel", "px": "pixel", "micrometre": "micrometre", "micrometer": "micrometre",
          "um": "micrometre", "µm": "micrometre", "micron": "micrometre"}
_INT = re.compile(r"^-?\d+$")


# ---------------------------------------------------------------------------------------- sniff
def _series(folder: Path) -> tuple[str, dict[int, Path]] | None:
    """The (stem, {t: file}) of the CSV series in a folder (the largest one if there are several)."""
    groups: dict[str, dict[int, Path]] = {}
    for child in folder.iterdir():
        m = _FILE.match(child.name)
        if m and child.is_file():
            groups.setdefault(m.group("stem"), {})[int(m.group("t"))] = child
    if not groups:
        return None
    stem = max(groups, key=lambda s: (len(groups[s]), s))
    return stem, dict(sorted(groups[stem].items()))


def sniff(path: Path) -> bool:
    """True for a folder holding a ``*.csv.<t>`` series whose header starts with ``x,y,z``."""
    try:
        path = Path(path)
        folder = path if path.is_dir() else path.parent
        found = _series(folder)
        if found is None or (path.is_file() and not _FILE.match(path.name)):
            return False
        first = next(iter(found[1].values()))
        return read_head(first, 512).split(b"\n", 1)[0].strip().startswith(b"x,y,z")
    except OSError:
        return False


# ----------------------------------------------------------------------------------------- read
def read(path: Path, *, unit: str = "pixel", **options) -> TrackTables:
    """Read a Paraview CSV series (positions and their metadata; the format has no links).

    Args:
        path: The folder with the ``{name}.csv.{t}`` files, or one of them.
        unit: The unit of x, y and z in the files: ``"pixel"`` (default) or ``"micrometre"``;
            the files do not say.
        **options: Not used.

    Returns:
        Positions per time point in file order; each extra column becomes position metadata
        (ints, floats, booleans, lists or strings, ``NaN`` = missing). All-zero ``z`` means 2D.

    Raises:
        ParseError: No series here, a header without ``x,y,z``, a row of the wrong length or a
            coordinate that is not a number (the file and line are named).

    Example:
        >>> tables = read(Path("paraview_export"))  # doctest: +SKIP
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    found = _series(folder)
    if found is None:
        raise ParseError("no {name}.csv.{t} files here", path=path)
    stem, files = found
    frames: list[int] = []
    xyz: list[list[float]] = []
    columns: dict[str, list[str]] = {}
    owners_order: list[str] = []
    for t, f in files.items():
        try:
            with open(f, newline="", encoding="utf-8") as fh:
                rows = list(csv.reader(fh))
        except (OSError, UnicodeDecodeError) as e:
            raise ParseError(f"cannot read: {e}", path=f) from e
        if not rows:
            continue
        header = rows[0]
        if header[:3] != ["x", "y", "z"]:
            raise ParseError(f"line 1: the header must start with x,y,z, found {','.join(header[:3])!r}", path=f)
        extra = header[3:]
        for name in extra:
            if name not in columns:
                columns[name] = [""] * len(frames)
                owners_order.append(name)
        for no, row in enumerate(rows[1:], start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise ParseError(f"line {no}: {len(row)} values for {len(header)} columns", path=f)
            try:
                xyz.append([float(v) for v in row[:3]])
            except ValueError:
                raise ParseError(f"line {no}: x, y, z must be numbers: {row[:3]}", path=f) from None
            frames.append(t)
            for name in columns:
                columns[name].append("")
            for name, v in zip(extra, row[3:]):
                columns[name][-1] = v
    n = len(frames)
    arr = np.array(xyz, np.float64).reshape(n, 3)
    z = arr[:, 2] if n and np.any(arr[:, 2] != 0) else np.full(n, np.nan)
    unit_name = _UNITS.get(unit, unit)
    t = TrackTables.from_columns(
        frame=frames, x=arr[:, 0], y=arr[:, 1], z=z,
        session=SessionInfo(name=stem, source_format=NAME, source_path=str(folder.resolve()), space_unit=unit_name,
                            source_files=tuple(str(p) for p in files.values())))
    t.frames = {"frame": np.arange(min(files), max(files) + 1, dtype=np.int64)}
    for name in owners_order:
        vals, owners = _parse_column(columns[name])
        t.metadata.append(MetaBlock("position", name, vals, owners))
    return t


def _parse_value(s: str):
    if s in ("", "NaN", "nan", "None"):
        return None
    if s in ("True", "False"):
        return s == "True"
    if _INT.match(s):
        return int(s)
    try:
        return float(s)
    except ValueError:
        pass
    if "," in s:
        try:
            v = json.loads("[" + s + "]")
            if all(isinstance(x, (int, float, bool, str)) for x in v):
                return v
        except ValueError:
            pass
    return s


def _parse_column(raw: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Typed values and their owners for one metadata column (a column has one type)."""
    parsed = [_parse_value(s) for s in raw]
    owners = np.array([i for i, v in enumerate(parsed) if v is not None], np.int64)
    vals = [parsed[i] for i in owners.tolist()]
    types = {type(v) for v in vals}
    if types == {bool}:
        return np.array(vals, bool), owners
    if types == {int}:
        return np.array(vals, np.int64), owners
    if types and types <= {int, float}:
        return np.array(vals, np.float64), owners
    if types and types != {list} and len(types) > 1:  # mixed: keep the text as it was written
        vals = [raw[i] for i in owners.tolist()]
    out = np.empty(len(vals), dtype=object)
    for i, v in enumerate(vals):
        out[i] = v
    return out, owners


# ---------------------------------------------------------------------------------------- write
def write(tables: TrackTables, path: Path, *, overwrite: bool = False, unit: str | None = None,
          metadata: bool | list[str] = False, **options) -> list[Path]:
    """Write positions as a Paraview CSV series, OrganoidTracker's layout.

    Args:
        tables: The session.
        path: The folder to write into.
        overwrite: Write into an existing folder (replacing this series' files).
        unit: ``"pixel"`` or ``"micrometre"`` for x, y, z (default: the session's unit);
            converting needs the session's pixel size.
        metadata: ``True`` for every position metadata key plus the built-ins
            ``track_id``, ``lineage_id`` and ``ancestor_track_id``; or a list of those names.
        **options: Not used.

    Returns:
        Every CSV file (one per time point from the first to the last), then the help text
        and, with metadata, the lineage colormap.

    Raises:
        WriteError: The folder exists (without ``overwrite``), an unknown metadata name, or a unit
            conversion without a pixel size.

    Example:
        >>> write(tables, Path("paraview"), unit="micrometre", metadata=True)  # doctest: +SKIP
    """
    path = Path(path)
    tables.validate(path)
    pos_blocks = {b.key: b for b in tables.metadata if b.scope == "position"}
    if metadata is True:
        names = sorted(set(pos_blocks) | set(BUILTINS))
    elif metadata:
        unknown = [m for m in metadata if m not in pos_blocks and m not in BUILTINS]
        if unknown:
            raise WriteError(f"no position metadata named {', '.join(map(repr, unknown))}", path=path,
                             hint=f"known: {', '.join(sorted(set(pos_blocks) | set(BUILTINS)))}")
        names = sorted(set(metadata))
    else:
        names = []
    x, y, z, unit_written = _coordinates(tables, unit, path)
    cols = {name: _column(tables, name, pos_blocks.get(name)) for name in names}
    _report_lost(tables, names, cols, unit_written)

    folder = prepare_target(path, overwrite=overwrite, is_dir=True)
    stem = re.sub(r"[^A-Za-z0-9_\- ]+", "_", tables.session.name or "").strip() or "positions"
    if overwrite:
        for old in folder.iterdir():
            m = _FILE.match(old.name)
            if m and m.group("stem") == stem:
                old.unlink()
    frames = tables.frame_numbers()
    if not len(frames):
        frames = np.zeros(1, np.int64)  # an empty session still leaves a (header-only) series
    frame = tables.positions["frame"]
    order = np.argsort(frame, kind="stable")
    written = []
    first, last = int(frames.min()), int(frames.max())
    bounds = np.searchsorted(frame[order], np.arange(first, last + 2))
    for k, t in enumerate(range(first, last + 1)):
        f = folder / f"{stem}.csv.{t}"
        with open(f, "w", newline="", encoding="utf-8") as fh:
            # OrganoidTracker writes plain series line by line ("\n") and metadata ones with
            # csv.writer's default "\r\n"; keep both so its own files come back byte for byte
            w = csv.writer(fh, lineterminator="\r\n" if names else "\n")
            w.writerow(["x", "y", "z", *names])
            for i in order[bounds[k]:bounds[k + 1]].tolist():
                w.writerow([_num(x[i]), _num(y[i]), _num(z[i]), *(cols[nm][i] for nm in names)])
        written.append(f)
    help_file = folder / HELP_FILE
    colored = [nm for nm in ("lineage_id", "ancestor_track_id") if nm in names]
    highest = max((int(max((int(v) for v in cols[nm] if v != "NaN"), default=-1)) for nm in colored), default=-1)
    help_file.write_text(_help_text(colored, highest), encoding="utf-8")
    written.append(help_file)
    if colored:
        cmap = folder / COLORMAP_FILE
        cmap.write_text(json.dumps([_colormap(tables, highest)]), encoding="utf-8")
        written.append(cmap)
    return written


def _num(v: float) -> str:
    return "NaN" if not math.isfinite(v) else repr(float(v))


def _coordinates(tables: TrackTables, unit: str | None, path: Path):
    info = tables.session
    have = _UNITS.get(info.space_unit or "pixel", info.space_unit or "pixel")
    want = _UNITS.get(unit, unit) if unit else have
    x, y = tables.positions["x"], tables.positions["y"]
    z = tables.pos("z")
    z = np.where(np.isfinite(z), z, 0.0)  # Paraview needs three coordinates: a plane at z = 0
    if want != have:
        px, py, pz = info.pixel_size
        if not (px and py):
            raise WriteError(f"cannot convert {have} to {want}: the session has no pixel size", path=path)
        pz = pz or px
        if have == "pixel" and want == "micrometre":
            x, y, z = x * px, y * py, z * pz
        elif have == "micrometre" and want == "pixel":
            x, y, z = x / px, y / py, z / pz
        else:
            raise WriteError(f"cannot convert {have} to {want}", path=path, hint="use unit='pixel' or 'micrometre'")
    return x, y, z, want


def _column(tables: TrackTables, name: str, block: MetaBlock | None) -> list[str]:
    n = tables.n_positions
    if block is None:  # a built-in
        tid = tables.pos("track_id")
        lin = tables.track_col("lineage_id")
        has_track = tid >= 0
        lineage = np.where(has_track, lin[np.where(has_track, tid, 0)] if len(lin) else -1, -1)
        if name == "track_id":
            vals = tid
        elif name == "ancestor_track_id":
            vals = lineage
        else:  # lineage_id: only for families with a division
            outdeg = np.bincount(tables.links["source_id"], minlength=n)
            dividing = np.unique(lineage[(outdeg >= 2) & (lineage >= 0)])
            vals = np.where(np.isin(lineage, dividing), lineage, -1)
        return [str(int(v)) for v in vals]
    out = ["NaN"] * n
    owners = block.owners if block.owners is not None else np.arange(n)
    for o, v in zip(owners.tolist(), block.values.tolist() if block.values.dtype.kind != "O" else block.values):
        out[o] = _cell(v)
    return out


def _cell(v) -> str:
    if v is None:
        return "NaN"
    if isinstance(v, (bool, np.bool_)):
        return "True" if v else "False"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return _num(float(v))
    if isinstance(v, str):
        return v
    if isinstance(v, (list, tuple)) and all(isinstance(x, (int, float, str, bool)) for x in v):
        return json.dumps(list(v))[1:-1]
    if isinstance(v, np.ndarray):
        return json.dumps(v.tolist())[1:-1] if v.ndim == 1 else json.dumps(v.tolist())
    return json.dumps(v, default=str)


def _report_lost(tables: TrackTables, names: list[str], cols: dict, unit: str) -> None:
    lost = []
    if tables.n_links:
        lost.append(f"links ({tables.n_links}; so tracks, divisions, merges and gaps)")
    if tables.n_tracks and "track_id" not in names:
        lost.append(f"tracks ({tables.n_tracks})")
    elif tables.n_tracks:
        lost.append("the tracks table (names, lineages; track_id is kept as a column)")
    skipped = [b.key for b in tables.metadata if b.scope == "position" and b.key not in names]
    if skipped:
        lost.append(f"position metadata not requested ({', '.join(map(repr, skipped))}; pass metadata=True)")
    odd = [b.key for b in tables.metadata if b.scope == "position" and b.key in names and b.values.dtype.kind == "O"
           and any(not isinstance(v, (str, bool, int, float, list, type(None))) or isinstance(v, list) and
                   not all(isinstance(x, (int, float, bool, str)) for x in v) for v in b.values)]
    if odd:
        lost.append(f"value types of {', '.join(map(repr, odd))} (written as JSON text)")
    by_scope: dict[str, list[str]] = {}
    for b in tables.metadata:
        if b.scope != "position":
            by_scope.setdefault(b.scope, []).append(b.key)
    for scope, keys in by_scope.items():
        lost.append(f"{scope} metadata ({', '.join(map(repr, keys))})")
    p = tables.positions
    if "native_id" in p:
        lost.append("native position ids")
    for col, what in (("quality", "quality"), ("radius", "radius")):
        if col in p and np.isfinite(p[col]).any():
            lost.append(what)
    if "origin" in p and (p["origin"] != 0).any():
        lost.append("position origins")
    tm = tables.frames.get("time")
    if tm is not None and np.isfinite(np.asarray(tm, np.float64)).any():
        lost.append("frame times")
    if lost:
        warnings.warn(f"Paraview CSV cannot hold: {'; '.join(lost)}", LossyConversionWarning, stacklevel=3)


def _help_text(colored: list[str], highest: int) -> str:
    text = """
Opening these positions in Paraview
===================================

1. File > Open, select the CSV file series in this folder, press Apply: a spreadsheet appears.
2. Filters > Alphabetical > Table To Points; choose x, y and z as the coordinate columns; Apply.
3. Show the new filter (the eye icon in the Pipeline Browser) and click into the 3D view.
4. Represent it as Points, with a point size of about 40 and "Render Points As Spheres" on.

Use File > Save Animation to make a movie of the time series.
"""
    if colored:
        text += f"""

Colouring cells by lineage
==========================
1. Select the Table To Points filter and colour by {' or '.join(colored)}
   (lineage_id is -1 for cells whose family never divides; ancestor_track_id colours every cell).
2. In the colour panel keep "Interpret Values as Categories" off.
3. Choose Preset (the icon next to the colour map), show "All" presets, import
   {COLORMAP_FILE} from this folder, apply it and close the dialog.
4. Rescale to the custom range -1 to {highest}, and keep "Color Discretization" off.
"""
    return text


def _colormap(tables: TrackTables, highest: int) -> dict:
    """A Paraview RGB colormap: white for -1, then one colour per lineage id."""
    colors = _lineage_colors(tables)
    points: list[float] = [-1, 1, 1, 1]
    golden = 0.618033988749895
    for i in range(highest + 1):
        rgb = colors.get(i) or colorsys.hsv_to_rgb((i * golden) % 1.0, 0.75, 0.9)
        points += [i, *[float(c) for c in rgb]]
    return {"Colorspace": "RGB", "Name": f"Lineage colors (-1 to {highest})", "RGBPoints": points}


def _lineage_colors(tables: TrackTables) -> dict[int, tuple[float, float, float]]:
    """Colours stored as lineage metadata ``color`` (0-1 floats, 0-255 ints or 0xRRGGBB)."""
    block = tables.meta("lineage", "color")
    out: dict[int, tuple[float, float, float]] = {}
    if block is None or block.owners is None:
        return out
    for o, v in zip(block.owners.tolist(), block.values.tolist()):
        if isinstance(v, int) and not isinstance(v, bool):
            v = [(v >> 16) & 255, (v >> 8) & 255, v & 255]
        if isinstance(v, (list, tuple)) and len(v) >= 3 and all(isinstance(c, (int, float)) for c in v[:3]):
            rgb = [float(c) for c in v[:3]]
            if max(rgb) > 1:
                rgb = [c / 255 for c in rgb]
            if rgb != [0.0, 0.0, 0.0]:
                out[int(o)] = (rgb[0], rgb[1], rgb[2])
    return out
