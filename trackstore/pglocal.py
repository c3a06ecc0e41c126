"""A private PostgreSQL 16 server in a folder, for tests, benchmarks and trying the server backend.

It uses the ``pgserver`` package (the ``postgres`` extra): initdb and start in about a second, no
root, no system service, listening on a Unix socket only. The server is configured as trackstore
wants a shared server to be (see the README): prepared transactions on, so that large ingests copy
their links on a second connection (:mod:`trackstore._pgsplit`).

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


def start(pgdata: str | Path, *, cleanup_mode: str = "delete") -> tuple[Any, str]:
    """Start (or reuse) a server whose data folder is ``pgdata``; returns (server, SQLAlchemy URL).

    ``server.cleanup()`` stops it; with ``cleanup_mode="delete"`` it also deletes ``pgdata``.
    """
    import pgserver
    from pgserver import _commands

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pgserver warns about XDG_RUNTIME_DIR
        srv = pgserver.get_server(Path(pgdata), cleanup_mode=cleanup_mode)
    if srv.psql("SHOW max_prepared_transactions;").split()[2] != str(MAX_PREPARED_TRANSACTIONS):
        srv.psql(f"ALTER SYSTEM SET max_prepared_transactions = {MAX_PREPARED_TRANSACTIONS};")
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
