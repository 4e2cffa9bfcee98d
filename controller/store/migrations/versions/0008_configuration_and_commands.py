"""Desired configuration (a document per device and per group, and what each device
last reported) and the command history, where queued commands wait for their device.

Revision ID: 0008
Revises: 0006 (re-chained onto 0007 when merged beside the labels migration)
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "device_configs",
        sa.Column("device_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("desired", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("effective_version", sa.Integer(), nullable=False),
        sa.Column("updated_at", Timestamp, nullable=True),
        sa.Column("reported", sa.JSON(), nullable=True),
        sa.Column("reported_version", sa.Integer(), nullable=True),
        sa.Column("report_status", sa.String(length=16), nullable=True),
        sa.Column("report_message", sa.String(length=1024), nullable=True),
        sa.Column("reported_at", Timestamp, nullable=True),
        sa.Column("supported", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.device_id"],
            name=op.f("fk_device_configs_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_device_configs")),
    )
    op.create_table(
        "group_configs",
        sa.Column("group_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["device_groups.group_id"],
            name=op.f("fk_group_configs_group_id_device_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", name=op.f("pk_group_configs")),
    )
    op.create_table(
        "commands",
        sa.Column("command_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("device_id", sa.BigInteger(), nullable=False),
        sa.Column("order", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("timeout", sa.Float(), nullable=False),
        sa.Column("queued", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("deliverer", sa.String(length=128), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=True),
        sa.Column("sent_at", Timestamp, nullable=True),
        sa.Column("deadline", Timestamp, nullable=True),
        sa.Column("finished_at", Timestamp, nullable=True),
        sa.Column("result_status", sa.String(length=16), nullable=True),
        sa.Column("result_message", sa.String(length=1024), nullable=True),
        sa.Column("result_data", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("command_id", name=op.f("pk_commands")),
    )
    op.create_index(
        op.f("ix_commands_device_id_command_id"), "commands", ["device_id", "command_id"]
    )
    op.create_index(
        op.f("ix_commands_device_id_state_command_id"),
        "commands",
        ["device_id", "state", "command_id"],
    )


def downgrade() -> None:
    op.drop_table("commands")
    op.drop_table("group_configs")
    op.drop_table("device_configs")
