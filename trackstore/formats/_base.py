"""The format-module contract.

Each ``trackstore/formats/<name>.py`` exposes exactly these names (everything else is private):

``NAME``         registry key == ``--format`` value == test-file suffix (``"idtrackerai"``)
``SUFFIXES``     file endings it may read, lower case (``(".npy", ".h5")``); ``"/"`` = a folder
``DESCRIPTION``  one line for ``trackstore formats``
``EXTRA``        the pip extra it needs (``None`` when the core install suffices)
``sniff(path)``  True if the path is this format; reads at most a few KB; never raises
``read(path, **options) -> TrackTables``
                 one session; streams large inputs; raises ParseError naming file and place
``write(tables, path, *, overwrite=False, **options) -> list[Path]``
                 refuses an existing target unless ``overwrite``; returns every path written;
                 warns ``LossyConversionWarning`` (by name and count) for anything it cannot hold

A format module never touches the database: any reader pairs with any writer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..errors import WriteError
from ..model import TrackTables


@runtime_checkable
class Format(Protocol):
    NAME: str
    SUFFIXES: tuple[str, ...]
    DESCRIPTION: str
    EXTRA: str | None

    def sniff(self, path: Path) -> bool: ...

    def read(self, path: Path, **options: Any) -> TrackTables: ...

    def write(self, tables: TrackTables, path: Path, *, overwrite: bool = False, **options: Any) -> list[Path]: ...


def prepare_target(path: Path, *, overwrite: bool, is_dir: bool = False) -> Path:
    """Refuse an existing target unless ``overwrite``; create parent folders. Returns the path."""
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise WriteError("already exists", path=path, hint="pass --overwrite to replace it")
        if is_dir and not path.is_dir():
            raise WriteError("exists and is not a folder", path=path)
        if not is_dir and path.is_dir():
            raise WriteError("exists and is a folder", path=path)
    if is_dir:
        path.mkdir(parents=True, exist_ok=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    return path


def read_head(path: Path, n: int = 4096) -> bytes:
    """The first ``n`` bytes of a file (b"" if unreadable), for ``sniff``."""
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""
