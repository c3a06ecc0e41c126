"""A private PostgreSQL 16 server in a folder, for tests, benchmarks and trying the server backend.

It uses the ``pgserver`` package (the ``postgres`` extra): initdb and start in about a second, no
root, no system service, listening on a Unix socket only. The server is configured as trackstore
wants a shared server to be (:data:`SETTINGS`, see the README): prepared transactions on, so that
large ingests copy their links on a second connection (:mod:`trackstore._pgsplit`), and room for
the WAL of a large ingest between two checkpoints.

Example:
    >>> from trackstore import pglocal  # doctest: +SKIP
    >>> srv, url = pglocal.start("/tmp/pg")  # doctest: +SKIP
    >>> url  # doctest: +SKIP
    'postgresql+psycopg://postgres:@/postgres?host=/tmp/pg'
    >>> srv.cleanup()  # stops it (and deletes the folder)  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

#: Prepared-transaction slots: one per concurrent large ingest (PostgreSQL's default is 0).
MAX_PREPARED_TRANSACTIONS = 16

#: The server settings trackstore recommends (README, "Server settings"), spelled as
#: ``SHOW`` prints them. The WAL ones follow PostgreSQL's advice for bulk loads ("Populating a
#: Database"): the ingest of a 9.5 M-position session writes 1.6 GB of WAL (positions and links),
#: so with the default max_wal_size (1 GB) a checkpoint lands in the middle of it, which a
#: positions-only COPY (0.6 GB) never meets; and with 4 MB of WAL buffers (the default for 128 MB
#: of shared buffers) its two connections wait on WAL writes. 8.5 s instead of 7.4–7.6 s on the
#: development machine (bench_postgres.py measures both).
SETTINGS: dict[str, str] = {
    "max_prepared_transactions": str(MAX_PREPARED_TRANSACTIONS),
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "wal_buffers": "64MB",
}


def start(pgdata: str | Path, *, cleanup_mode: str = "delete",
          settings: dict[str, str] | None = None) -> tuple[Any, str]:
    """Start (or reuse) a server whose data folder is ``pgdata``; returns (server, SQLAlchemy URL).

    ``server.cleanup()`` stops it; with ``cleanup_mode="delete"`` it also deletes ``pgdata``.
    ``settings`` (default :data:`SETTINGS`) are set with ``ALTER SYSTEM`` and a restart when the
    running server differs; ``{}`` changes nothing (a new folder keeps PostgreSQL's defaults).
    """
    import pgserver
    from pgserver import _commands

    settings = SETTINGS if settings is None else settings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pgserver warns about XDG_RUNTIME_DIR
        srv = pgserver.get_server(Path(pgdata), cleanup_mode=cleanup_mode)
    wrong = {k: v for k, v in settings.items() if srv.psql(f"SHOW {k};").split()[2] != v}
    if wrong:
        for k, v in wrong.items():  # names and values are ours (SETTINGS) or the caller's code
            srv.psql(f"ALTER SYSTEM SET {k} = '{v}';")
        # a restart reuses the start options (socket folder, log) recorded in postmaster.opts
        _commands.pg_ctl(["-w", "-l", str(srv.log), "restart"], pgdata=srv.pgdata, user=srv.system_user,
                         timeout=30)
        # the handle still names the postmaster that was stopped: without this, cleanup() would not
        # stop the new one, and delete its folder under it (a server left running per start)
        srv.ensure_postgres_running()
    return srv, srv.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)


def database_url(url: str, name: str) -> str:
    """``url`` (a server URL, query string kept) pointing at database ``name`` of the same server."""
    base, _, query = url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
