"""Store each link's length, so speed per animal is an aggregate of stored columns.

Computing sqrt(dx^2 + dy^2) per row in the query cost 0.17 s on 17 M links; reading a stored
length 0.095 s (benchmarks/bench_idtrackerai.py measures the whole query against a numpy loop).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("links", sa.Column("step_length", sa.Float(53),
                                     comment="sqrt(dx^2 + dy^2 + dz^2), dz counted as 0 in 2D"))
    op.execute("UPDATE links SET step_length = sqrt(dx * dx + dy * dy + COALESCE(dz * dz, 0))")


def downgrade() -> None:
    op.drop_column("links", "step_length")
