"""The store's tables, declared once with SQLAlchemy Core: the single source of column names.

Design notes (measured, see docs/design.md):

* No FOREIGN KEY constraints: on DuckDB they block later ALTER/DROP and Alembic table rebuilds.
  Referential integrity is guaranteed by construction and checked by ``trackstore check``.
* No PRIMARY KEY on the big ``positions``/``links``/``frames``/``metadata`` tables: it halves
  DuckDB's bulk-insert speed and grows the file ~70 %. Uniqueness comes from construction
  (ids are dense per session, assigned by the store).
* ``positions.origin`` is an ENUM, not a string: comparisons with string literals work as before.
* ``links`` carries its geometry (dx, dy, dz, step_length, frame_gap, time_gap), its source frame and the
  track it steps along, so kinematic queries are plain aggregates over one table instead of
  window functions or joins with ``positions``.
"""

from __future__ import annotations

import sqlalchemy as sa

from .model import ORIGINS

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

#: ``positions.origin`` is an ENUM on both engines (one byte per row on DuckDB): a VARCHAR column
#: cost 0.5 s of a 9.5 M-position insert for a value that is nearly always the same (migration 0004).
#: The labels are :data:`trackstore.model.ORIGINS`; 'interpolated' appears only in views.
ORIGIN_TYPE = sa.Enum(*ORIGINS, name="position_origin", metadata=metadata)

session_id_seq = sa.Sequence("session_id_seq", metadata=metadata)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("session_id", sa.Integer, primary_key=True, autoincrement=False,
              comment="dense id of the session in this store"),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("source_format", sa.String, nullable=False, comment="registry name of the format read"),
    sa.Column("format_version", sa.String),
    sa.Column("source_path", sa.String),
    sa.Column("content_hash", sa.String, nullable=False, unique=True,
              comment="sha256 of the source bytes: the same content is ingested once"),
    sa.Column("imported_at", sa.DateTime(timezone=False), nullable=False),
    sa.Column("space_unit", sa.String, comment="unit of x, y, z as stored"),
    sa.Column("time_unit", sa.String, comment="unit of frames.time"),
    sa.Column("physical_unit", sa.String, comment="unit of pixel_size_*"),
    sa.Column("pixel_size_x", sa.Float(53)),
    sa.Column("pixel_size_y", sa.Float(53)),
    sa.Column("pixel_size_z", sa.Float(53)),
    sa.Column("frame_interval", sa.Float(53), comment="time between frames, in time_unit"),
    sa.Column("width", sa.Integer),
    sa.Column("height", sa.Integer),
    sa.Column("depth", sa.Integer),
    sa.Column("n_frames", sa.Integer, nullable=False),
    sa.Column("first_frame", sa.Integer),
    sa.Column("last_frame", sa.Integer),
    sa.Column("n_positions", sa.BigInteger, nullable=False),
    sa.Column("n_tracks", sa.Integer, nullable=False),
    sa.Column("n_links", sa.BigInteger, nullable=False),
)

frames = sa.Table(
    "frames",
    metadata,
    sa.Column("session_id", sa.Integer, nullable=False),
    sa.Column("frame", sa.Integer, nullable=False),
    sa.Column("time", sa.Float(53), comment="in the session's time_unit"),
)

positions = sa.Table(
    "positions",
    metadata,
    sa.Column("session_id", sa.Integer, nullable=False),
    sa.Column("position_id", sa.BigInteger, nullable=False, comment="dense per session"),
    sa.Column("frame", sa.Integer, nullable=False),
    sa.Column("x", sa.Float(53)),
    sa.Column("y", sa.Float(53)),
    sa.Column("z", sa.Float(53), comment="NULL in 2D"),
    sa.Column("track_id", sa.Integer, comment="NULL for a lone spot"),
    sa.Column("origin", ORIGIN_TYPE, nullable=False, server_default=ORIGINS[0],
              comment="observed | gap_closed (filled by the source tool) | validated (by a person)"),
    sa.Column("native_id", sa.BigInteger, comment="the source file's own id (spot ID, label, node id)"),
    sa.Column("quality", sa.Float(53), comment="detection score (TrackMate QUALITY, idtracker.ai id_probability)"),
    sa.Column("radius", sa.Float(53)),
)

tracks = sa.Table(
    "tracks",
    metadata,
    sa.Column("session_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("track_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String),
    sa.Column("identity", sa.BigInteger, comment="idtracker.ai animal number (1-based)"),
    sa.Column("lineage_id", sa.Integer, comment="connected family of tracks"),
    sa.Column("visible", sa.Boolean, nullable=False, comment="e.g. TrackMate FilteredTracks"),
    sa.Column("native_id", sa.BigInteger),
)

links = sa.Table(
    "links",
    metadata,
    sa.Column("session_id", sa.Integer, nullable=False),
    sa.Column("link_id", sa.BigInteger, nullable=False),
    sa.Column("source_id", sa.BigInteger, nullable=False),
    sa.Column("target_id", sa.BigInteger, nullable=False),
    sa.Column("frame_gap", sa.Integer, nullable=False, comment="target.frame - source.frame; > 1 is a gap"),
    sa.Column("time_gap", sa.Float(53)),
    sa.Column("dx", sa.Float(53)),
    sa.Column("dy", sa.Float(53)),
    sa.Column("dz", sa.Float(53)),
    sa.Column("track_id", sa.Integer, comment="the track both ends belong to; NULL between tracks (division, merge)"),
    sa.Column("frame", sa.Integer, comment="frame of the source position"),
    sa.Column("step_length", sa.Float(53), comment="sqrt(dx^2 + dy^2 + dz^2), dz counted as 0 in 2D"),
)

# Metadata is stored as one row per key (a *block*: scope, key, and the type its values share) and
# one row per value. Repeating scope, key and type on every value cost DuckDB ~0.1 µs per string
# per row (615 k values of an OrganoidTracker file: 0.35 s to write, 0.13 s normalized; 2 M
# TrackMate feature values: ~0.7 s), migration 0006. The ``metadata`` view joins them back.

metadata_blocks = sa.Table(
    "metadata_blocks",
    metadata,
    sa.Column("session_id", sa.Integer, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False, comment="the block's place among the session's keys"),
    sa.Column("scope", sa.String, nullable=False, comment="session, frame, position, link, track, lineage, tag"),
    sa.Column("key", sa.String, nullable=False),
    sa.Column("vtype", sa.String, comment="the type of every value of the block; NULL when they differ"),
)

metadata_values = sa.Table(
    "metadata_values",
    metadata,
    sa.Column("session_id", sa.Integer, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False, comment="metadata_blocks.seq of its key"),
    sa.Column("owner_id", sa.BigInteger, comment="id of the entity in its scope; NULL for session/tag"),
    sa.Column("vtype", sa.String, comment="this value's type when the block's vtype is NULL"),
    sa.Column("v_int", sa.BigInteger),
    sa.Column("v_float", sa.Float(53)),
    sa.Column("v_bool", sa.Boolean),
    sa.Column("v_str", sa.String),
    sa.Column("v_json", sa.String),
)

#: The ``metadata`` VIEW (``views/metadata.sql``): one row per value with its scope, key and type.
#: Declared for building queries and for the Parquet lake's layout; Alembic does not create it.
metadata_table = sa.Table(
    "metadata",
    sa.MetaData(),
    sa.Column("session_id", sa.Integer, nullable=False),
    sa.Column("scope", sa.String, nullable=False, comment="session, frame, position, link, track, lineage, tag"),
    sa.Column("owner_id", sa.BigInteger, comment="id of the entity in its scope; NULL for session/tag"),
    sa.Column("key", sa.String, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False, comment="order of keys as they came in"),
    sa.Column("vtype", sa.String, nullable=False, comment="null bool int float str json np:<dtype>"),
    sa.Column("v_int", sa.BigInteger),
    sa.Column("v_float", sa.Float(53)),
    sa.Column("v_bool", sa.Boolean),
    sa.Column("v_str", sa.String),
    sa.Column("v_json", sa.String),
)

DATA_TABLES = ("frames", "positions", "tracks", "links", "metadata")
