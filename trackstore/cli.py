"""The ``trackstore`` command line: parse, one library call, render.

This is the only module that prints or sets exit codes. A TrackstoreError prints
``Error: <message>`` (and ``Hint: ...``) on stderr and exits 1; usage errors exit 2.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from . import __version__, formats
from .errors import TrackstoreError, TrackstoreWarning

app = typer.Typer(
    name="trackstore",
    help=(
        "One store for every tracking experiment.\n\n"
        "Ingest idtracker.ai sessions and cell-tracking files (OrganoidTracker, TrackMate, CTC, GEFF, "
        "Paraview CSV) into one DuckDB file, query across all of them with SQL, and export any "
        "session back to any format.\n\n"
        "The store is ./trackstore.duckdb unless --db or $TRACKSTORE_DB names another "
        "(a file path, or a SQLAlchemy URL such as postgresql+psycopg://host/db)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

DbOption = Annotated[
    str | None,
    typer.Option("--db", envvar="TRACKSTORE_DB", show_envvar=True,
                 help="Store: a DuckDB file path or a SQLAlchemy URL. [default: ./trackstore.duckdb]"),
]


def _err(msg: str) -> None:
    typer.echo(msg, err=True)


def handle_errors(fn):
    """Turn TrackstoreError into one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TrackstoreWarning)  # reported by the commands themselves
            try:
                return fn(*args, **kwargs)
            except TrackstoreError as e:
                _err(f"Error: {e}")
                if e.hint:
                    _err(f"Hint: {e.hint}")
                raise typer.Exit(1) from None
            except KeyboardInterrupt:
                _err("Interrupted: the session being written was rolled back; earlier ones are kept.")
                raise typer.Exit(130) from None

    return wrapper


def _parse_pairs(pairs: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in pairs or []:
        if "=" not in p:
            raise typer.BadParameter(f"{what} must look like key=value, got {p!r}")
        k, v = p.split("=", 1)
        if not k:
            raise typer.BadParameter(f"{what} needs a key: {p!r}")
        out[k.strip()] = v
    return out


def _typed_options(pairs: list[str] | None) -> dict[str, Any]:
    """``--option k=v`` values: ints, floats, true/false, none are converted; the rest stay str."""
    out: dict[str, Any] = {}
    for k, v in _parse_pairs(pairs, "--option").items():
        low = v.lower()
        if low in ("true", "false"):
            out[k] = low == "true"
        elif low in ("none", "null"):
            out[k] = None
        else:
            try:
                out[k] = int(v)
            except ValueError:
                try:
                    out[k] = float(v)
                except ValueError:
                    out[k] = v
    return out


def _open(db: str | None, *, read_only: bool = False):
    from .store import Store

    return Store(db, read_only=read_only, on_wait=_err)


# ------------------------------------------------------------------------------ ingest
@app.command()
@handle_errors
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Files, folders (searched recursively) or glob patterns.")],
    db: DbOption = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Format name, or auto to detect each path.")] = "auto",
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t",
                                                  help="key=value stored on every session (repeatable).")] = None,
    replace: Annotated[bool, typer.Option(help="Re-import sessions already stored (same content or path).")] = False,
    keep_going: Annotated[bool, typer.Option(help="Skip bad sessions and go on; exit 1 at the end.")] = False,
    option: Annotated[list[str] | None, typer.Option("--option", "-o",
                                                     help="Reader option key=value (repeatable).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
):
    """Read tracking results into the store, one transaction per session.

    Folders are searched recursively for sessions (idtracker.ai session_* folders, .aut, TrackMate
    .xml, CTC folders, GEFF groups, ...). Content already stored is skipped, so running the same
    command again only adds what is new.

    Example: trackstore ingest experiments/ --tag group=control
    """
    from .ingest import ingest as run_ingest

    tags = _parse_pairs(tag, "--tag")
    opts = _typed_options(option)
    show = not quiet
    bar = _Progress(enabled=show and sys.stderr.isatty())

    def progress(stage, i, total, rep):
        if stage == "found":
            bar.start(total)
        elif stage == "start":
            bar.describe(f"{rep.path}")
        elif stage == "done":
            bar.advance()
            if rep.status == "failed":
                if keep_going:  # otherwise the error itself ends the command, printed once by handle_errors
                    where = "" if rep.error.startswith(f"{rep.path}:") else f"{rep.path}: "
                    bar.print_err(f"failed    {where}{rep.error}")
            elif show:
                bar.print(_ingest_line(rep))
                for w in rep.warnings:
                    bar.print_err(f"  warning: {w}")

    with _open(db) as store:
        try:
            reports = run_ingest(store, paths, fmt=fmt, tags=tags, replace=replace, keep_going=keep_going,
                                 progress=progress, read_options=opts)
        finally:
            bar.stop()
    failed = [r for r in reports if r.status == "failed"]
    if show:
        n = {s: sum(r.status == s for r in reports) for s in ("ingested", "replaced", "skipped", "failed")}
        typer.echo(f"{n['ingested']} ingested, {n['replaced']} replaced, {n['skipped']} skipped (already stored), "
                   f"{n['failed']} failed")
    if failed:
        raise typer.Exit(1)


def _ingest_line(rep) -> str:
    if rep.status == "skipped":
        return f"skipped   #{rep.session_id} {rep.name}: already stored ({rep.path})"
    c = rep.counts
    return (f"{rep.status:9s} #{rep.session_id} {rep.name} [{rep.format}]: {c.get('positions', 0):,} positions, "
            f"{c.get('tracks', 0):,} tracks, {c.get('links', 0):,} links in {rep.seconds:.2f} s")


class _Progress:
    """A rich progress bar on a terminal; plain lines otherwise."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.p = None
        self.task = None

    def start(self, total: int):
        if self.enabled and total > 1:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self.p.start()
            self.task = self.p.add_task("ingesting", total=total)

    def describe(self, text: str):
        if self.p:
            self.p.update(self.task, description=text[-50:])

    def advance(self):
        if self.p:
            self.p.advance(self.task)

    def print(self, text: str):
        if self.p:
            self.p.console.print(text, markup=False, highlight=False, soft_wrap=True, style=None)
        else:
            typer.echo(text)

    def print_err(self, text: str):
        if self.p:
            self.p.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            _err(text)

    def stop(self):
        if self.p:
            self.p.stop()
            self.p = None


# ------------------------------------------------------------------------------ sessions / info
@app.command()
@handle_errors
def sessions(
    db: DbOption = None,
    output: Annotated[str, typer.Option("--output", help="table, csv or json.")] = "table",
):
    """List the stored sessions: id, name, format, counts, units and tags.

    Example: trackstore sessions --output csv
    """
    with _open(db, read_only=True) as store:
        rows = store.list_sessions()
    cols = ["session_id", "name", "source_format", "format_version", "n_frames", "n_tracks", "n_positions",
            "space_unit", "time_unit", "tags"]
    data = [[r[c] if c != "tags" else ",".join(f"{k}={v}" for k, v in r["tags"].items()) for c in cols]
            for r in rows]
    _render(cols, data, output)


@app.command()
@handle_errors
def info(
    session: Annotated[str | None, typer.Argument(help="A session id or name; omit for the whole store.")] = None,
    db: DbOption = None,
):
    """Show what a store (or one session) holds: sizes, schema revision, units, metadata keys.

    Example: trackstore info 3
    """
    from .inspect import session_info, store_info

    with _open(db, read_only=True) as store:
        text = store_info(store) if session is None else session_info(store, session)
    typer.echo(text)


# ------------------------------------------------------------------------------ query
@app.command()
@handle_errors
def query(
    sql: Annotated[str | None, typer.Argument(help="SQL to run (read-only), or omit and use --name.")] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="A named query (see `trackstore queries`).")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="k=v query parameter (repeatable).")] = None,
    output: Annotated[str, typer.Option("--output", help="table, csv, json or parquet.")] = "table",
    out: Annotated[Path | None, typer.Option("--out", help="Write the result to this file (parquet needs it).")]
    = None,
    db: DbOption = None,
):
    """Run SQL or a named query across every session, on a read-only connection.

    Tables: sessions, frames, positions, tracks, links, metadata; views: trajectories_with_gaps,
    trajectories_without_gaps, session_tags, ... (see README). Parameters are bound, never pasted.

    Example: trackstore query --name track_speed_stats --param tag_key=group --param tag_value=control
    """
    from .queries import run_query

    if (sql is None) == (name is None):
        raise typer.BadParameter("give either SQL or --name NAME")
    params = _parse_pairs(param, "--param")
    from .store import Store

    with Store(db, read_only=True, on_wait=_err, user_sql=True) as store:
        result = run_query(store, name if name is not None else sql, params, arrow=output == "parquet")
    if output == "parquet":
        table = result.to_arrow()
        if out is None:
            raise typer.BadParameter("--output parquet needs --out FILE")
        import pyarrow.parquet as pq

        pq.write_table(table, out)
        _err(f"wrote {table.num_rows} rows to {out}")
        return
    cols, rows = result.columns, result.rows
    _render(cols, rows, output, out)


@app.command("queries")
@handle_errors
def list_queries_cmd():
    """List the named queries with their parameters and what they return.

    Example: trackstore queries
    """
    import textwrap

    from .queries import list_queries

    for q in list_queries():
        typer.echo(q.name)
        typer.echo(textwrap.fill(q.description, width=100, initial_indent="    ", subsequent_indent="    "))
        if q.params:
            typer.echo("    params: " + ", ".join(f"{p.name} {p.type}{' (optional)' if p.optional else ''}"
                                               for p in q.params))
        if q.returns:
            typer.echo(f"    returns: {', '.join(q.returns) if not isinstance(q.returns, str) else q.returns}")


def _render(cols: list[str], rows: list, output: str, out: Path | None = None) -> None:
    if output not in ("table", "csv", "json"):
        raise typer.BadParameter(f"--output must be table, csv, json or parquet, not {output!r}")
    if output == "table":
        text = _table_text(cols, rows)
    elif output == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        w.writerows(rows)
        text = buf.getvalue().rstrip("\n")
    else:
        text = json.dumps([dict(zip(cols, map(_jsonable, r))) for r in rows], indent=1, ensure_ascii=False)
    if out is not None:
        Path(out).write_text(text + "\n", encoding="utf-8")
        _err(f"wrote {len(rows)} rows to {out}")
    else:
        typer.echo(text)


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def _fmt_cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _table_text(cols: list[str], rows: list) -> str:
    cells = [[_fmt_cell(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    for r in cells:
        lines.append("  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(r, widths)).rstrip())
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)


def _numeric(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


# ------------------------------------------------------------------------------ export / convert
@app.command()
@handle_errors
def export(
    session: Annotated[list[str] | None, typer.Argument(
        help="Session id(s) or name(s) (see `trackstore sessions`); with --format parquet, omit for all.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Target format (see `trackstore formats`), or parquet "
                                     "for a partitioned dataset of the store's tables.")] = ...,
    out: Annotated[Path, typer.Option("--out", help="Target file or folder.")] = ...,
    db: DbOption = None,
    gaps: Annotated[str, typer.Option(help="with: as stored; without: fill every gap by linear interpolation.")]
    = "with",
    max_gap: Annotated[int | None, typer.Option(help="With --gaps without: fill only gaps of at most N frames.")]
    = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing target.")] = False,
    option: Annotated[list[str] | None, typer.Option("--option", "-o",
                                                     help="Writer option key=value (repeatable).")] = None,
):
    """Write a stored session as files of any supported format, or the store as a Parquet lake.

    --format parquet writes sessions/, positions/session_id=N/, ... readable by DuckDB, Polars,
    Spark and Trino; `trackstore ingest DIR` reads it back.

    Example: trackstore export 3 --format idtrackerai --out restored/session_3
    """
    from .export import export as run_export

    if fmt == "parquet":
        from .transfer import export_lake

        with _open(db, read_only=True) as store:
            files = export_lake(store, out, session or None, overwrite=overwrite)
        typer.echo(f"wrote {len(files)} files to {out}")
        return
    if not session or len(session) != 1:
        raise typer.BadParameter("give exactly one SESSION (several only with --format parquet)")
    if gaps not in ("with", "without"):
        raise typer.BadParameter("--gaps must be with or without")
    with _open(db, read_only=True) as store:
        paths, lost = run_export(store, session[0], fmt, out, overwrite=overwrite, gaps=gaps, max_gap=max_gap,
                                 **_typed_options(option))
    for w in lost:
        _err(f"warning: {w}")
    typer.echo(f"wrote {len(paths)} file{'s' if len(paths) != 1 else ''} to {out}")


@app.command()
@handle_errors
def copy(
    src: Annotated[str, typer.Option("--from", help="Source store (file path or URL).")],
    dst: Annotated[str, typer.Option("--to", help="Destination store (file path or URL).")],
    session: Annotated[list[str] | None, typer.Option("--session", "-s",
                                                      help="Session id or name to copy (repeatable); default all.")]
    = None,
):
    """Copy sessions between stores (DuckDB file <-> PostgreSQL server), losslessly.

    Content already in the destination is skipped, so copying again only adds what is new.

    Example: trackstore copy --from lab.duckdb --to postgresql+psycopg://server/tracks
    """
    from .store import Store
    from .transfer import copy_sessions

    with Store(src, read_only=True, on_wait=_err) as a, Store(dst, on_wait=_err) as b:
        results = copy_sessions(a, b, session or None)
    for sid, new, status in results:
        typer.echo(f"{status:8s} #{sid}" + (f" -> #{new}" if new is not None else " (already there)"))
    typer.echo(f"{sum(s == 'copied' for _, _, s in results)} copied, {sum(s == 'skipped' for _, _, s in results)} "
               "skipped")


@app.command()
@handle_errors
def convert(
    src: Annotated[Path, typer.Argument(help="File or folder to read.")],
    to: Annotated[str, typer.Option("--to", help="Target format.")],
    out: Annotated[Path, typer.Option("--out", help="Target file or folder.")],
    from_format: Annotated[str, typer.Option("--from", help="Source format, or auto.")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing target.")] = False,
    option: Annotated[list[str] | None, typer.Option("--option", "-o",
                                                     help="Writer option key=value (repeatable).")] = None,
):
    """Convert between formats directly (file -> TrackTables -> file), without a store.

    Example: trackstore convert tracks.xml --to ctc --out tracks_ctc/
    """
    from .export import convert as run_convert

    paths, lost = run_convert(src, to, out, from_format=from_format, overwrite=overwrite,
                              **_typed_options(option))
    for w in lost:
        _err(f"warning: {w}")
    typer.echo(f"wrote {len(paths)} file{'s' if len(paths) != 1 else ''} to {out}")


# ------------------------------------------------------------------------------ formats / upgrade
@app.command("formats")
@handle_errors
def formats_cmd():
    """List the supported formats: what can be read and written, and the extra each needs.

    Example: trackstore formats
    """
    rows = [[name, ", ".join(i["suffixes"]), "yes" if i["read"] else "no", "yes" if i["write"] else "no",
             i["extra"] or "", i["description"]] for name, i in formats.list_formats().items()]
    _render(["format", "suffixes", "read", "write", "extra", "description"], rows, "table")


@app.command()
@handle_errors
def upgrade(db: DbOption = None):
    """Migrate a store to this trackstore's schema (creates a new store if there is none).

    Example: trackstore upgrade --db old.duckdb
    """
    with _open(db) as store:
        old, new = store.upgrade()
    if old == new:
        typer.echo(f"the store is up to date (revision {new})")
    else:
        typer.echo(f"upgraded the store from revision {old or 'none (new store)'} to {new}")


def _version_callback(value: bool):
    if value:
        typer.echo(f"trackstore {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True,
                                          help="Print the version and exit.")] = False,
):
    """One store for every tracking experiment."""


if __name__ == "__main__":  # pragma: no cover
    app()
