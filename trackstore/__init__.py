"""trackstore: one store for every tracking experiment.

Ingest idtracker.ai sessions and cell-tracking results into one DuckDB (or PostgreSQL) store,
query across all of them with SQL, and export any session back to any supported format.

Example:
    >>> import trackstore
    >>> with trackstore.open_store("tracks.duckdb") as store:  # doctest: +SKIP
    ...     trackstore.ingest(store, ["experiments/"], tags={"group": "control"})
    ...     result = trackstore.run_query(trackstore.open_store("tracks.duckdb", read_only=True), "track_lengths")
"""

from __future__ import annotations

from . import errors
from .errors import TrackstoreError, TrackstoreWarning
from .export import convert, export
from .formats import detect_format, get_format, list_formats
from .ingest import IngestReport, ingest
from .model import SessionInfo, TrackTables
from .store import Store

__version__ = "0.1.0"


def open_store(db=None, *, read_only: bool = False, **kwargs) -> Store:
    """Open a store: a DuckDB file path, a SQLAlchemy URL, or ``$TRACKSTORE_DB`` / ``./trackstore.duckdb``.

    A new DuckDB store is created (and migrated) on the first write.
    """
    return Store(db, read_only=read_only, **kwargs)


def upgrade(db=None) -> tuple[str | None, str]:
    """Migrate the store to the current schema; returns (old, new) revision."""
    with Store(db) as s:
        return s.upgrade()


def run_query(store: Store, name_or_sql: str, params: dict | None = None, **kwargs):
    """Run a named query or SQL on a (preferably read-only) store; see :mod:`trackstore.queries`."""
    from .queries import run_query as _run

    return _run(store, name_or_sql, params, **kwargs)


__all__ = [
    "open_store", "ingest", "export", "convert", "run_query", "list_formats", "get_format", "detect_format",
    "upgrade", "errors", "Store", "TrackTables", "SessionInfo", "IngestReport", "TrackstoreError",
    "TrackstoreWarning", "__version__",
]
