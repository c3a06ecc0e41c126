"""Connections, migrations and views: the only place that knows about database engines.

* ``resolve_url`` turns ``--db`` / ``TRACKSTORE_DB`` / the default ``./trackstore.duckdb`` into
  a SQLAlchemy URL (a plain path means a DuckDB file).
* ``make_engine`` opens DuckDB files with a lock wait: DuckDB lets one process write a file at a
  time and fails at once otherwise, so we retry with backoff and tell the user we are waiting.
* ``upgrade`` runs the Alembic migrations from code, then re-applies the views.
* ``check_revision`` refuses to write to a store whose schema is older than this trackstore.
"""

from __future__ import annotations

import functools
import os
import random
import re
import time
from collections.abc import Callable
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.pool import NullPool

from .errors import SchemaVersionError, StoreError, StoreLockedError

DEFAULT_DB = "trackstore.duckdb"
ENV_VAR = "TRACKSTORE_DB"
LOCK_TIMEOUT = float(os.environ.get("TRACKSTORE_LOCK_TIMEOUT", "600"))

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Location of a top-level data folder (``migrations``, ``queries``).

    In a wheel they ship as ``trackstore/_<name>``; in a source checkout they sit next to the
    package, at the repository root.
    """
    shipped = resources.files("trackstore") / f"_{name}"
    if shipped.is_dir():
        return Path(str(shipped))
    here = _PKG.parent / name
    if here.is_dir():
        return here
    raise StoreError(f"trackstore installation is missing its {name}/ folder", hint="reinstall trackstore")


def resolve_url(db: str | os.PathLike | None = None) -> str:
    """The SQLAlchemy URL for ``db`` (a path or URL), ``$TRACKSTORE_DB``, or ``./trackstore.duckdb``."""
    db = os.fspath(db) if db is not None else os.environ.get(ENV_VAR) or DEFAULT_DB
    if "://" in db:
        return db
    return "duckdb:///" + str(Path(db).expanduser().resolve())


def is_duckdb(url: str) -> bool:
    return url.startswith("duckdb:")


def duckdb_path(url: str) -> Path | None:
    """The file behind a DuckDB URL (None for in-memory)."""
    p = url.split(":///", 1)[1] if ":///" in url else ""
    p = p.split("?", 1)[0]
    return Path(p) if p and p != ":memory:" else None


def make_engine(url: str, *, read_only: bool = False, lock_timeout: float | None = None,
                on_wait: Callable[[str], None] | None = None, user_sql: bool = False) -> sa.Engine:
    """An engine whose connections wait (with backoff) for a DuckDB file lock held elsewhere.

    Args:
        url: SQLAlchemy URL.
        read_only: Open DuckDB read-only (user SQL cannot change the store).
        lock_timeout: Seconds to wait for another process's lock before giving up.
        on_wait: Called once with a message when we start waiting.
        user_sql: The connection runs SQL a user typed: on DuckDB, also forbid reading and
            writing files (``COPY … TO``, ``read_csv``), which read-only mode alone allows.
    """
    timeout = LOCK_TIMEOUT if lock_timeout is None else lock_timeout
    if not is_duckdb(url):
        # a server enforces read-only itself: every transaction of this engine is READ ONLY
        args = {"options": "-c default_transaction_read_only=on"} if read_only and url.startswith("postgresql") else {}
        return sa.create_engine(url, poolclass=NullPool, connect_args=args)
    connect_args: dict = {"read_only": True} if read_only else {}
    if user_sql:
        connect_args["config"] = {"enable_external_access": False}
    engine = sa.create_engine(url, poolclass=NullPool, connect_args=connect_args)

    @event.listens_for(engine, "do_connect")
    def _connect_with_lock_wait(dialect, conn_rec, cargs, cparams):
        deadline = time.monotonic() + timeout
        delay, told = 0.05, False
        while True:
            try:
                return dialect.connect(*cargs, **dict(cparams, config=dict(cparams.get("config", {}))))
            except Exception as e:  # duckdb.IOException; the message is the only discriminator
                msg = str(e)
                if "Could not set lock on file" not in msg:
                    raise
                holder = re.search(r"\(PID (\d+)\)", msg)
                who = f"process {holder.group(1)}" if holder else "another process"
                if time.monotonic() >= deadline:
                    raise StoreLockedError(
                        f"the store is in use by {who} (waited {timeout:.0f} s)",
                        path=duckdb_path(url),
                        hint="try again when the other trackstore command has finished, "
                             "or raise TRACKSTORE_LOCK_TIMEOUT",
                    ) from e
                if not told and on_wait is not None:
                    on_wait(f"Waiting for {duckdb_path(url)}: it is in use by {who} ...")
                    told = True
                time.sleep(delay * (0.75 + random.random() / 2))
                delay = min(delay * 2, 1.0)

    return engine


def _alembic_config(connection: sa.Connection, per_migration: bool = False):
    import duckdb_sqlalchemy.alembic_impl  # noqa: F401  (registers the DuckDB Alembic impl)
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(data_dir("migrations")))
    cfg.attributes["connection"] = connection
    cfg.attributes["transaction_per_migration"] = per_migration
    return cfg


_REVISION_LINE = re.compile(r"""^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(?:None|["']([^"'\n]*)["'])\s*$""",
                            re.M)


@functools.cache
def head_revision() -> str:
    """The newest migration this trackstore knows.

    Read from the ``revision`` / ``down_revision`` lines of the migration files: every command
    opening a store asks, and importing Alembic to answer costs ~0.17 s (it is imported only to
    migrate). A history that is not one line of revisions is left to Alembic.
    """
    revs: set[str] = set()
    downs: set[str] = set()
    for f in sorted((data_dir("migrations") / "versions").glob("*.py")):
        found = dict((k, v) for k, v in _REVISION_LINE.findall(f.read_text(encoding="utf-8")))
        if not found.get("revision"):
            return _alembic_head()
        revs.add(found["revision"])
        if found.get("down_revision"):
            downs.add(found["down_revision"])
    heads = revs - downs
    return next(iter(heads)) if len(heads) == 1 and downs <= revs else _alembic_head()


def _alembic_head() -> str:
    from alembic.script import ScriptDirectory

    cfg = _alembic_config(None)  # type: ignore[arg-type]
    return ScriptDirectory.from_config(cfg).get_current_head()


def current_revision(connection: sa.Connection) -> str | None:
    """The store's migration revision (None for an empty database).

    Alembic's version table is read directly (no Alembic import); several rows (branches, which
    this project does not have) are left to Alembic, which explains them.
    """
    if not connection.dialect.has_table(connection, "alembic_version"):
        return None
    rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
    if len(rows) <= 1:
        return rows[0] if rows else None
    import duckdb_sqlalchemy.alembic_impl  # noqa: F401
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()  # pragma: no cover - raises


def upgrade(connection: sa.Connection, revision: str = "head", *, per_migration: bool = False) -> None:
    """Migrate the store to ``revision``, then re-create the views.

    By default everything runs inside the caller's transaction (creating a new store). With
    ``per_migration`` (``trackstore upgrade`` of an existing store) each migration commits on its
    own, so a failure leaves the store at the last revision that completed.
    Views are dropped first (PostgreSQL views pin the columns they read) and re-created only at
    head: the view files describe the newest schema.
    """
    from alembic import command

    if current_revision(connection) is not None:
        drop_views(connection)
    if per_migration and connection.in_transaction():
        connection.commit()
    command.upgrade(_alembic_config(connection, per_migration), revision)
    if current_revision(connection) == head_revision():
        apply_views(connection)
    if per_migration and connection.in_transaction():
        connection.commit()


def downgrade(connection: sa.Connection, revision: str) -> None:
    """Migrate down to ``revision`` (views are dropped first: they read the tables)."""
    from alembic import command

    drop_views(connection)
    command.downgrade(_alembic_config(connection), revision)


def check_revision(connection: sa.Connection, *, for_write: bool) -> str | None:
    """Raise SchemaVersionError if the store is not at this trackstore's head revision.

    Returns the current revision; None means an empty database (a new store).
    """
    rev = current_revision(connection)
    head = head_revision()
    if rev is None or rev == head:
        return rev
    from alembic.script import ScriptDirectory

    known = {s.revision for s in ScriptDirectory.from_config(_alembic_config(connection)).walk_revisions()}
    if rev not in known:
        raise SchemaVersionError(
            f"the store is at schema revision {rev}, newer than this trackstore knows ({head})",
            hint="upgrade trackstore (pip install -U trackstore)",
        )
    if for_write:
        raise SchemaVersionError(
            f"the store is at schema revision {rev}; this trackstore needs {head} to write",
            hint="run `trackstore upgrade` (back up the file first if in doubt)",
        )
    return rev


# ---------------------------------------------------------------------------- views
_DEPENDS = re.compile(r"^--\s*depends:\s*(.*)$", re.MULTILINE)


def view_files(dialect: str) -> dict[str, Path]:
    """``{view_name: sql_file}`` for a dialect: ``name.<dialect>.sql`` wins over ``name.sql``."""
    folder = _PKG / "views"
    out: dict[str, Path] = {}
    for f in sorted(folder.glob("*.sql")):
        parts = f.name[:-4].split(".")
        if len(parts) == 1:
            out.setdefault(parts[0], f)
        elif parts[1] == dialect:
            out[parts[0]] = f
    return out


def _ordered_views(dialect: str) -> list[tuple[str, str]]:
    files = view_files(dialect)
    deps: dict[str, list[str]] = {}
    sql: dict[str, str] = {}
    for name, f in files.items():
        text = f.read_text(encoding="utf-8")
        sql[name] = text
        m = _DEPENDS.search(text)
        deps[name] = [d.strip() for d in m.group(1).split(",")] if m else []
    order: list[str] = []
    seen: set[str] = set()

    def visit(n: str, stack: tuple[str, ...] = ()):
        if n in seen or n not in files:
            return
        if n in stack:
            raise StoreError(f"views depend on each other in a cycle: {' -> '.join(stack + (n,))}")
        for d in deps[n]:
            visit(d, stack + (n,))
        seen.add(n)
        order.append(n)

    for n in files:
        visit(n)
    return [(n, sql[n]) for n in order]


def apply_views(connection: sa.Connection) -> None:
    """(Re-)create every view from its SQL file, dependencies first."""
    for _name, text in _ordered_views(connection.dialect.name):
        connection.exec_driver_sql(text)


def ensure_views(connection: sa.Connection) -> bool:
    """Create the views if the store lacks any this trackstore defines (a newer trackstore may add
    views without a schema change); returns True if it did. Changed view definitions are applied
    by ``trackstore upgrade``."""
    wanted = set(view_files(connection.dialect.name))
    if wanted <= set(sa.inspect(connection).get_view_names()):
        return False
    if connection.dialect.name == "postgresql":  # concurrent writers: one of them re-creates them
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(8061968)")
        if wanted <= set(sa.inspect(connection).get_view_names()):
            return False
    apply_views(connection)
    return True


def drop_views(connection: sa.Connection) -> None:
    """Drop every view trackstore defines (dependents first)."""
    cascade = " CASCADE" if connection.dialect.name == "postgresql" else ""
    existing = set(sa.inspect(connection).get_view_names())  # "metadata" was a table before 0006
    for name, _ in reversed(_ordered_views(connection.dialect.name)):
        if name in existing:
            connection.exec_driver_sql(f'DROP VIEW IF EXISTS "{name}"{cascade}')


@contextmanager
def wrap_db_errors(what: str):
    """Re-raise driver errors as StoreError (the only place raw DB errors are caught)."""
    try:
        yield
    except (SchemaVersionError, StoreLockedError):
        raise
    except sa.exc.DBAPIError as e:
        raise StoreError(f"{what} failed: {e.orig}") from e
    except Exception as e:
        if type(e).__module__.startswith(("duckdb", "_duckdb")):
            raise StoreError(f"{what} failed: {e}") from e
        raise
