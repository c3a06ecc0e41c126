"""OrganoidTracker ``.aut`` files (v1 and v2): positions, tracks with divisions and merges, typed metadata.

Read (both layouts, both JSON spellings: compact orjson and stdlib with bare ``NaN``/``Infinity``):

* **positions**: every ``(time point, x, y, z)`` in ``positions`` in file order, then any position
  found only in ``tracks`` (v2), nodes or links (v1), flagged ``organoidtracker.not_in_positions``.
  Coordinates are float64 exactly as written, in pixels; time points may be negative or > 5000.
* **tracks**: one row per v2 track in file order (v1: per maximal unbranched chain of links);
  positions in no track have ``track_id`` -1. ``lineage_id`` is the connected family.
* **links**: consecutive positions of a track, then one link per ``coords_xyz_px_before`` entry
  (division: 2+ tracks name the same parent; merge: one track names 2+ parents). A parent reference
  is matched exactly, else within OrganoidTracker's 0.005 px; one that matches nothing, or the
  middle of a track, raises :class:`ParseError` naming the track and the coordinates.
* **metadata**, each value with its JSON type (int, float, bool, str, list; a v1 ``null`` is kept
  as a null value, while a v2 ``null`` in a column list is the absence OrganoidTracker means by it):

  ====================================  ==========  ====================================================
  key                                   scope       from
  ====================================  ==========  ====================================================
  ``<name>`` (e.g. ``intensity``)       position    ``position_meta`` / v1 node keys
  ``<name>`` (e.g. ``link_probability``) link       ``link_meta`` and ``link_meta_before`` / v1 link keys
  ``<name>`` (e.g. ``color``)           lineage     ``lineage_meta`` of a lineage's first root track
  ``organoidtracker.lineage_meta``      track       ``lineage_meta`` (dict) of any other track (merged
                                                    lineages have several roots)
  ``<name>``                            session     ``other_data`` entries (experiment-level metadata)
  ``organoidtracker.<key>``             session     every other top-level key, verbatim (``name``,
                                                    ``data_axes``, ``beacons``, ``connections``,
                                                    ``warning_limits``, ``image_*``, ``color``, unknown keys)
  ``organoidtracker.key_order``         session     the file's top-level keys in order
  ====================================  ==========  ====================================================

  Connections are kept verbatim (``organoidtracker.connections``, either spelling) so they are
  written back exactly. Write-back details are also kept: ``organoidtracker.link_meta_before_trailing_null``
  (OrganoidTracker's writer quirk), and for v1 ``organoidtracker.d3_keys``, ``organoidtracker.v1_node_index``
  (node order, when it is not the positions order), ``organoidtracker.v1_reversed`` (links written
  target first) and ``organoidtracker.v1_extra`` (old shape values after z).
* **units**: ``image_resolution`` gives ``pixel_size`` (µm per px) and ``frame_interval`` (minutes);
  ``image_timings`` (cumulative minutes) gives each frame's time, else ``frame * t_m``.

Write: v2 by default (``version="v1"`` for the d3 layout), compact JSON, NaN as ``null``. Positions
are written per time point, tracks are the unbranched runs of consecutive-frame links (a 1:1 link
between two different tracks stays a track boundary, as in the source). AUT links must join
consecutive time points: a link that skips time points is filled with copies of its source position
(``gaps="fill"``, what OrganoidTracker's own TrackMate importer does) or cut (``gaps="split"``),
with a :class:`LossyConversionWarning` giving the count.

A session from another format keeps what AUT has room for: plain session keys go to
``other_data``; the position columns ``quality``, ``radius``, ``native_id`` and a non-observed
``origin`` become position metadata of those names; each root track's ``identity`` and ``name``
become its ``lineage_meta`` (``identity``, ``track_name``), so idtracker.ai identities stay
recognisable; physical coordinates are divided by the pixel size; 2D positions get z = 0. Anything
else (track or frame metadata, other formats' own ``<format>.*`` keys) is named in a warning.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import ParseError
from ..model import TrackTables
from ._base import read_head
from ._organoidtracker_read import TOLERANCE, read_aut

NAME = "organoidtracker"
SUFFIXES = (".aut", ".json")
DESCRIPTION = "OrganoidTracker .aut (v1 and v2): tracks, divisions, merges, typed metadata"
EXTRA = None

_AUT_KEY = re.compile(rb'"(version|positions|tracks|family_scores)"\s*:')
_VERSION = re.compile(rb'"version"\s*:\s*"v[12]"')
_BARE_POSITIONS = re.compile(rb'^\s*\{\s*"-?\d+"\s*:\s*\[\s*\[\s*-?[\d.]')


def sniff(path: Path) -> bool:
    """True for an OrganoidTracker JSON file (reads the first 4 KB)."""
    path = Path(path)
    if not path.is_file():
        return False
    head = read_head(path, 4096)
    if not head.lstrip().startswith(b"{"):
        return False
    if _VERSION.search(head) or b'"family_scores"' in head:
        return True
    if _BARE_POSITIONS.match(head):
        return True
    if path.suffix.lower() == ".aut":
        return bool(_AUT_KEY.search(head)) or (b'"directed"' in head and b'"_time_point_number"' in head)
    return False


def read(path: Path, *, tolerance: float = TOLERANCE, **options: Any) -> TrackTables:
    """Read one OrganoidTracker file (v1 or v2 ``.aut``, or its ``.json`` forms) into TrackTables.

    Args:
        path: The ``.aut`` or ``.json`` file.
        tolerance: How far (px, per axis) a ``coords_xyz_px_before`` may be from the parent's last
            position when no position matches it exactly (OrganoidTracker: 0.005).

    Returns:
        One session (see the module doc for where everything lands).

    Raises:
        ParseError: Not JSON, not an AUT layout, or a reference that matches no track's last position.

    Example:
        >>> t = read("tests/data/organoidtracker/tiny_v2.aut")  # doctest: +SKIP
    """
    if options:
        raise TypeError(f"unknown option(s) for organoidtracker read: {', '.join(options)}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
        raise ParseError(f"tolerance must be a number of pixels >= 0, not {tolerance!r}", path=path)
    return read_aut(Path(path), tolerance=float(tolerance))


def write(tables: TrackTables, path: Path, *, overwrite: bool = False, version: str = "v2",
          gaps: str = "fill", trailing_null: bool | None = None, **options: Any) -> list[Path]:
    """Write one session as an OrganoidTracker ``.aut`` file.

    Args:
        tables: The session.
        path: The file to write.
        overwrite: Replace an existing file.
        version: ``"v2"`` (what OrganoidTracker writes today) or ``"v1"`` (the d3 layout).
        gaps: What to do with a link that skips time points, which AUT cannot store: ``"fill"``
            copies the source position into each skipped time point (as OrganoidTracker's TrackMate
            importer does; the copies are in the tracks, not in ``positions``), ``"split"`` ends the
            track there and starts a new one.
        trailing_null: Add OrganoidTracker's extra trailing ``null`` to ``link_meta_before`` lists;
            by default only if the file read had it.

    Returns:
        ``[path]``.

    Raises:
        WriteError: The target exists (without ``overwrite``) or an option is wrong.

    Example:
        >>> write(tables, "out.aut", version="v1")  # doctest: +SKIP
    """
    from ._organoidtracker_write import write_aut

    if options:
        raise TypeError(f"unknown option(s) for organoidtracker write: {', '.join(options)}")
    return write_aut(tables, Path(path), overwrite=overwrite, version=version, gaps=gaps,
                     trailing_null=trailing_null)
