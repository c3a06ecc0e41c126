"""Split ``metadata`` into ``metadata_blocks`` (one row per key) and ``metadata_values`` (one row per value).

Every value repeated its block's scope, key and type as strings, and DuckDB spends ~0.1 µs per
string per row writing them: 0.35 s of a 615 k-value OrganoidTracker ingest, ~0.7 s of a 2 M-value
TrackMate one. Normalized, the same values cost 0.13 s. A view named ``metadata``
(``trackstore/views/metadata.sql``) gives queries the old shape, so none of them changes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_VALUES = ("v_int", "v_float", "v_bool", "v_str", "v_json")


def _value_columns():
    return [sa.Column("v_int", sa.BigInteger), sa.Column("v_float", sa.Float(53)), sa.Column("v_bool", sa.Boolean),
            sa.Column("v_str", sa.String), sa.Column("v_json", sa.String)]


def upgrade() -> None:
    op.create_table(
        "metadata_blocks",
        sa.Column("session_id", sa.Integer, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False, comment="the block's place among the session's keys"),
        sa.Column("scope", sa.String, nullable=False, comment="session, frame, position, link, track, lineage, tag"),
        sa.Column("key", sa.String, nullable=False),
        sa.Column("vtype", sa.String, comment="the type of every value of the block; NULL when they differ"),
    )
    op.create_table(
        "metadata_values",
        sa.Column("session_id", sa.Integer, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False, comment="metadata_blocks.seq of its key"),
        sa.Column("owner_id", sa.BigInteger, comment="id of the entity in its scope; NULL for session/tag"),
        sa.Column("vtype", sa.String, comment="this value's type when the block's vtype is NULL"),
        *_value_columns(),
    )
    # a block is one (session_id, seq): scope and key are the same on all its rows
    op.execute("INSERT INTO metadata_blocks (session_id, seq, scope, key, vtype) "
               "SELECT session_id, seq, min(scope), min(key), "
               "CASE WHEN min(vtype) = max(vtype) THEN min(vtype) END FROM metadata GROUP BY session_id, seq")
    vals = ", ".join(f"m.{c}" for c in _VALUES)
    op.execute(f"INSERT INTO metadata_values (session_id, seq, owner_id, vtype, {', '.join(_VALUES)}) "
               f"SELECT m.session_id, m.seq, m.owner_id, CASE WHEN b.vtype IS NULL THEN m.vtype END, {vals} "
               "FROM metadata AS m JOIN metadata_blocks AS b ON b.session_id = m.session_id AND b.seq = m.seq")
    op.drop_table("metadata")


def downgrade() -> None:
    op.create_table(
        "metadata",
        sa.Column("session_id", sa.Integer, nullable=False),
        sa.Column("scope", sa.String, nullable=False, comment="session, frame, position, link, track, lineage, tag"),
        sa.Column("owner_id", sa.BigInteger, comment="id of the entity in its scope; NULL for session/tag"),
        sa.Column("key", sa.String, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False, comment="order of keys as they came in"),
        sa.Column("vtype", sa.String, nullable=False, comment="null bool int float str json np:<dtype>"),
        *_value_columns(),
    )
    vals = ", ".join(f"v.{c}" for c in _VALUES)
    op.execute(f"INSERT INTO metadata (session_id, scope, owner_id, key, seq, vtype, {', '.join(_VALUES)}) "
               f"SELECT v.session_id, b.scope, v.owner_id, b.key, v.seq, COALESCE(v.vtype, b.vtype), {vals} "
               "FROM metadata_values AS v JOIN metadata_blocks AS b ON b.session_id = v.session_id AND b.seq = v.seq")
    op.drop_table("metadata_values")
    op.drop_table("metadata_blocks")
