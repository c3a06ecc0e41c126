"""TrackMate XML: every spot, edge, track, feature, ROI and setting, in and out, streamed.

Reading makes one streaming pass with a SAX-style parser target (lxml when installed, else the
standard library's expat parser; see :mod:`._trackmate_xml`): no element tree is built and values
become numeric columns every few thousand rows, so memory stays bounded as files reach hundreds of
MB. A file that declares a DTD (hence entities: "billion laughs", XXE) is refused before parsing.

How a TrackMate file maps onto the model (details in :mod:`._trackmate_read`):

=====================  ===========================================================================
TrackMate              trackstore
=====================  ===========================================================================
Spot                   a position: ``frame``/``x``/``y``/``z``/``quality``/``radius`` from FRAME,
                       POSITION_X/Y/Z, QUALITY, RADIUS; ``native_id`` = spot ID. Singletons kept.
                       z is NaN for a 2D file (one slice, every POSITION_Z 0).
spot name, features    position metadata ``name`` (unless it is TrackMate's default ``ID<ID>``) and
                       one key per feature (int64 when ``isint``, float64 otherwise, in declaration
                       order); ``ROI`` = ``[[dx, dy], ...]`` relative to the spot centre, as
                       TrackMate stores it. POSITION_T is ``frames.time`` (FRAME x interval) unless
                       a spot says otherwise; values TrackMate derives are written back exactly
Edge                   a link, forward in time (a gap when it skips frames; splits and merges
                       allowed); link metadata: every edge feature
Track                  a lineage (tracklets are derived); lineage metadata ``TRACK_ID``, ``name``,
                       ``visible`` (in FilteredTracks) and every track feature;
                       ``tracks.visible``/``name``/``native_id`` repeat them on each tracklet
units, ImageData       ``space_unit``/``time_unit`` normalized (micron, µm → micrometre; sec →
                       second), pixel size, frame interval, image size
everything else        session metadata ``trackmate.*``: version, raw unit strings, Log,
                       FeatureDeclarations, Settings, GUIState, DisplaySettings, unknown elements
=====================  ===========================================================================

Writing works for any session: one written as it came in round-trips exactly (same spots, edges,
tracks, feature values and types, ROIs, visibility, filtered tracks and settings); one from
another format gets TrackMate's standard features, a manual detector/tracker and its own units
(idtracker.ai identities and AUT lineages become tracks, with their divisions, merges and gaps).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import ParseError
from ..model import TrackTables
from ._base import prepare_target, read_head

NAME = "trackmate"
SUFFIXES = (".xml",)
DESCRIPTION = "TrackMate XML (Fiji): spots, edges, tracks, features, ROIs and settings"
EXTRA = "trackmate"

_ROOT_TAG = re.compile(rb"<([A-Za-z_][\w.\-]*)")


def sniff(path: Path) -> bool:
    """True if ``path`` is an XML file whose root element is ``<TrackMate>`` (reads 4 KB; never raises).

    Example:
        >>> sniff(Path("FakeTracks.xml"))  # doctest: +SKIP
        True
    """
    head = read_head(Path(path), 4096)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or head[:2] in (b"<\x00", b"\x00<"):
        head = head.decode("utf-16", errors="ignore").encode("utf-8", errors="ignore")
    i = 0
    while True:  # the first start tag that is not inside a comment (<?xml, <!DOCTYPE never match)
        m = _ROOT_TAG.search(head, i)
        if m is None:
            return False
        start = m.start()
        if head.rfind(b"<!--", 0, start) > head.rfind(b"-->", 0, start):
            i = m.end()
            continue
        return m.group(1) == b"TrackMate"


def read(path: Path, *, use_lxml: bool | None = None, **options: Any) -> TrackTables:
    """Read one TrackMate XML file into a TrackTables (one streaming pass).

    Args:
        path: The ``.xml`` file.
        use_lxml: Force (True) or avoid (False) the lxml parser; default: lxml when installed.
        **options: Accepted for the common format interface; none are used.

    Returns:
        The session: positions (every spot), links (every edge), tracklets and lineages, and
        all features, ROIs and settings as metadata (see the module docstring).

    Raises:
        UnsafeInputError: The file declares a DTD/entities (billion laughs, XXE).
        ParseError: Not well-formed XML or not valid TrackMate; the message names the line, spot
            ID, edge or track.

    Example:
        >>> tables = read(Path("FakeTracks.xml"))  # doctest: +SKIP
    """
    from ._trackmate_read import build_tables
    from ._trackmate_xml import parse

    path = Path(path)
    if options:
        raise ParseError(f"unknown read option(s) for TrackMate XML: {', '.join(options)}", path=path)
    raw = parse(path, use_lxml=use_lxml)
    return build_tables(raw, path)


def write(tables: TrackTables, path: Path, *, overwrite: bool = False, **options: Any) -> list[Path]:
    """Write a session as TrackMate XML that TrackMate's own reader accepts.

    Every spot (singletons too), every edge with its features, one track per connected component
    (with its features and FilteredTracks membership), declarations for every attribute written,
    and the Settings/GUIState/DisplaySettings/Log the session came with (or defaults).

    Args:
        tables: Any session.
        path: The ``.xml`` file to write.
        overwrite: Replace an existing file.
        **options: Accepted for the common format interface; none are used.

    Returns:
        ``[path]``.

    Raises:
        WriteError: The target exists (and not ``overwrite``) or is a folder.

    Warns:
        LossyConversionWarning: Naming metadata TrackMate cannot hold (non-numeric features).

    Example:
        >>> write(tables, Path("out.xml"), overwrite=True)  # doctest: +SKIP
        [PosixPath('out.xml')]
    """
    from ._trackmate_write import write_xml

    path = prepare_target(Path(path), overwrite=overwrite)
    if options:
        raise TypeError(f"unknown write option(s) for TrackMate XML: {', '.join(options)}")
    write_xml(tables, path)
    return [path]
