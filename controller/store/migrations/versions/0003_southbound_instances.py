"""Southbound instances beat, so that the sessions of one that died are released.

A Kubernetes pod that dies comes back under another name: the sessions of the old
name were never released, and its devices stayed online.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "southbound_instances",
        sa.Column("instance", sa.String(253), nullable=False),
        sa.Column("seen_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("instance", name="pk_southbound_instances"),
    )


def downgrade() -> None:
    op.drop_table("southbound_instances")
