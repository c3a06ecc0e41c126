"""Give ``positions.origin`` the default ``'observed'``.

PostgreSQL parses an ENUM value in a binary COPY with a catalog lookup per row: for the 9.5 M
positions of the idtracker.ai benchmark that cost the server about 1 CPU-second, for a column that
is nearly always 'observed'. With a default, a session whose positions are all observed leaves the
column out of its COPY. DuckDB ignores it (its inserts name every column).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    cast = "::position_origin" if op.get_bind().dialect.name == "postgresql" else ""
    op.execute(f"ALTER TABLE positions ALTER COLUMN origin SET DEFAULT 'observed'{cast}")


def downgrade() -> None:
    op.execute("ALTER TABLE positions ALTER COLUMN origin DROP DEFAULT")
