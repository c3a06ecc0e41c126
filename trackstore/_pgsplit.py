"""Large PostgreSQL ingests on two connections, committed together with two-phase commit.

One PostgreSQL backend parses a binary COPY at about 1 M rows/s on this machine, so a session's
positions and its links (as many rows again, and wider) take twice as long as a positions-only
COPY on one connection. When the server allows prepared transactions
(``max_prepared_transactions > 0``), a large session's links are copied on a second connection,
a *helper* transaction, while the main transaction copies everything else:

1. the main transaction learns its own xid (``pg_current_xact_id()``) and opens the helper;
2. the helper copies the links, then ``PREPARE TRANSACTION 'trackstore:<main xid>:<nonce>'``;
3. the main transaction commits (it holds the ``sessions`` row: it is the decision);
4. the helper is ``COMMIT PREPARED`` (or ``ROLLBACK PREPARED`` if the main one did not commit).

If the process dies between 3 and 4, the helper stays prepared. :func:`recover` (run by the next
writer of the store, and by ``trackstore upgrade``) asks the server whether the main xid committed
(``pg_xact_status``) and finishes the helper the same way, so a kill at any point leaves either
the whole session or none of it. In the milliseconds between 3 and 4 a reader can see the new
session without its links; no later moment can.

Without prepared transactions (the server's default), or for small sessions, everything goes
through the one connection as before. Any failure of the helper (no free prepared-transaction
slot; the tables are being created by this very transaction, in a new store) is not an error: it
is rolled back and the main transaction copies the links itself.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import sqlalchemy as sa

_log = logging.getLogger(__name__)

GID_PREFIX = "trackstore:"

#: Sessions with fewer links are written on one connection (a second one costs a few ms).
MIN_LINKS = int(os.environ.get("TRACKSTORE_PG_SPLIT_MIN_LINKS", "500000"))

#: Helper transactions this process has committed (benchmarks and tests read it).
committed_helpers = 0


def available(conn: sa.Connection) -> bool:
    """True when this server lets a transaction be prepared (``max_prepared_transactions > 0``)."""
    if os.environ.get("TRACKSTORE_PG_SPLIT", "1") == "0":
        return False
    if conn.dialect.server_version_info < (13,):  # pg_current_xact_id / pg_xact_status came in 13
        return False
    return int(conn.exec_driver_sql("SHOW max_prepared_transactions").scalar()) > 0


class Parts:
    """Work items handed out to whichever connection asks first (the main one and its helper).

    ``take(log)`` iterates over the items not yet taken by anyone, appending each to ``log``
    before yielding it, so that the items of a helper that failed can be done again.
    """

    def __init__(self, items: Iterable[Any]):
        self._items = iter(items)
        self._lock = threading.Lock()

    def take(self, log: list) -> Iterator[Any]:
        while True:
            with self._lock:
                item = next(self._items, _END)
                if item is _END:
                    return
                log.append(item)
            yield item


_END = object()


class Helper:
    """A second connection running ``work(psycopg_connection)`` on a thread, then PREPAREd.

    Args:
        conn: The main transaction's connection (its engine opens the helper; its xid names it).
        work: What the helper writes; called on the helper thread.
    """

    def __init__(self, conn: sa.Connection, work: Callable[[Any], None]):
        xid = conn.exec_driver_sql("SELECT pg_current_xact_id()::text").scalar()
        self.gid = f"{GID_PREFIX}{xid}:{uuid.uuid4().hex[:12]}"
        self._dbapi = conn.engine.raw_connection()
        self.pg = self._dbapi.driver_connection
        self.error: BaseException | None = None
        self.prepared = False
        self._thread = threading.Thread(target=self._run, args=(work,), name="trackstore-helper", daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[Any], None]) -> None:
        try:
            work(self.pg)
            self.pg.execute(f"PREPARE TRANSACTION '{self.gid}'")  # gid: our own digits and hex
            self.prepared = True
        except BaseException as e:  # reported by wait(); the main transaction then does the work
            self.error = e

    def wait(self) -> bool:
        """Wait for the helper; True when its work is prepared, False when it failed (rolled back)."""
        self._thread.join()
        if not self.prepared:
            _log.info("helper transaction failed, the main one copies the links itself: %r", self.error)
            try:
                self.pg.rollback()
            except Exception:
                pass
        return self.prepared

    def finish(self, committed: bool) -> None:
        """After the main transaction ended: commit the helper with it, or roll it back."""
        try:
            if self._thread.is_alive():  # the main transaction failed while the helper was copying
                getattr(self.pg, "cancel_safe", self.pg.cancel)()
                self._thread.join()
            if self.prepared:
                self.pg.rollback()  # ends the implicit transaction psycopg has open, if any
                self.pg.autocommit = True
                _finish_prepared(self.pg, self.gid, committed)
                if committed:
                    global committed_helpers
                    committed_helpers += 1
            else:
                self.pg.rollback()
        finally:
            self._dbapi.close()


def _finish_prepared(pg, gid: str, commit: bool) -> None:
    import psycopg

    try:
        pg.execute(f"{'COMMIT' if commit else 'ROLLBACK'} PREPARED '{gid}'")
    except psycopg.errors.UndefinedObject:
        pass  # another writer's recover() finished it already


def recover(engine: sa.Engine) -> dict[str, str]:
    """Finish helper transactions left prepared by a process that died; returns {gid: action}.

    A helper is committed when its main transaction committed, rolled back when that one aborted,
    and left alone while it is still running (another process is writing right now).
    """
    import psycopg

    done: dict[str, str] = {}
    dbapi = engine.raw_connection()
    try:
        pg = dbapi.driver_connection
        if pg.info.server_version < 130000:  # no helpers there (see available)
            return done
        pg.autocommit = True
        rows = pg.execute(
            "SELECT gid, pg_xact_status(split_part(gid, ':', 2)::xid8) FROM pg_prepared_xacts "
            "WHERE starts_with(gid, %s) AND database = current_database()", (GID_PREFIX,)).fetchall()
        for gid, status in rows:
            if status in ("committed", "aborted"):
                try:
                    _finish_prepared(pg, gid, status == "committed")
                except psycopg.Error:  # e.g. prepared by another role: its owner's next write finishes it
                    continue
                done[gid] = "committed" if status == "committed" else "rolled back"
    finally:
        dbapi.close()
    return done
