"""telemetry and latest: byte-order collation for device ids and keys on PostgreSQL

Device ids and data keys are identifiers, not prose: comparing them byte by byte ("C") instead of
by the database's locale makes every primary-key insert and lookup cheaper (about a quarter of
PostgreSQL's cost of storing a data point) and orders keys the same on PostgreSQL and SQLite.
The indexes are rebuilt: on a large database this takes a while, once.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("telemetry", "latest")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(
                f'ALTER TABLE {table} ALTER COLUMN device_id TYPE varchar(128) COLLATE "C", '
                'ALTER COLUMN key TYPE varchar(255) COLLATE "C"'
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(
                f'ALTER TABLE {table} ALTER COLUMN device_id TYPE varchar(128) COLLATE "default", '
                'ALTER COLUMN key TYPE varchar(255) COLLATE "default"'
            )
