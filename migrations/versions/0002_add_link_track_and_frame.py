"""Store each link's track and source frame, so steps need no join with positions.

Kinematic queries (speed per animal across sessions) then aggregate links alone: on 100 sessions
that is what makes SQL faster than a numpy loop over the files (benchmarks/bench_idtrackerai.py).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("links", sa.Column("track_id", sa.Integer,
                                     comment="the track both ends belong to; NULL between tracks (division, merge)"))
    op.add_column("links", sa.Column("frame", sa.Integer, comment="frame of the source position"))
    op.execute(
        "UPDATE links SET frame = s.frame, "
        "track_id = CASE WHEN s.track_id = t.track_id THEN s.track_id END "
        "FROM positions AS s, positions AS t "
        "WHERE s.session_id = links.session_id AND s.position_id = links.source_id "
        "AND t.session_id = links.session_id AND t.position_id = links.target_id"
    )


def downgrade() -> None:
    op.drop_column("links", "frame")
    op.drop_column("links", "track_id")
