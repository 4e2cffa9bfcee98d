"""Configuration jobs: the configuration version a job wrote for each device (what
the device must report to succeed), and when the device was first online to take
it (what its timeout counts from).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    with op.batch_alter_table("job_executions") as table:
        table.add_column(sa.Column("config_version", sa.Integer(), nullable=True))
        table.add_column(sa.Column("started_at", Timestamp, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_executions") as table:
        table.drop_column("started_at")
        table.drop_column("config_version")
