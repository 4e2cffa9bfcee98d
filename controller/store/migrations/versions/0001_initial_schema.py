"""Initial schema: devices, groups, memberships, events, sessions.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the column types as they were at this revision.
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("device_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("description", sa.String(1024), nullable=False),
        sa.Column("hardware_sn", sa.String(128), nullable=False),
        sa.Column("hardware_model", sa.String(128), nullable=False),
        sa.Column("eth_mac", sa.String(17)),
        sa.Column("wifi_mac", sa.String(17)),
        sa.Column("lte_imei", sa.String(15)),
        sa.Column("base_version", sa.String(64)),
        sa.Column("base_updated_at", Timestamp),
        sa.Column("base_state", sa.String(32)),
        sa.Column("business_version", sa.String(64)),
        sa.Column("business_updated_at", Timestamp),
        sa.Column("business_state", sa.String(32)),
        sa.Column("secret", sa.String(60), nullable=False),
        sa.Column("credential_version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("k8s_namespace", sa.String(253)),
        sa.Column("k8s_name", sa.String(253)),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("device_id", name="pk_devices"),
        sa.UniqueConstraint(
            "hardware_sn", "hardware_model", name="uq_devices_hardware_sn_hardware_model"
        ),
        sa.UniqueConstraint("k8s_namespace", "k8s_name", name="uq_devices_k8s_namespace_k8s_name"),
    )
    op.create_index("ix_devices_state_device_id", "devices", ["state", "device_id"])
    op.create_index("ix_devices_type_device_id", "devices", ["type", "device_id"])

    op.create_table(
        "device_groups",
        sa.Column("group_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.String(1024), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("group_id", name="pk_device_groups"),
        sa.UniqueConstraint("name", name="uq_device_groups_name"),
    )

    op.create_table(
        "device_group_members",
        sa.Column("device_id", sa.BigInteger(), nullable=False),
        sa.Column("group_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.device_id"],
            name="fk_device_group_members_device_id_devices",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["device_groups.group_id"],
            name="fk_device_group_members_group_id_device_groups",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", "group_id", name="pk_device_group_members"),
    )
    op.create_index(
        "ix_device_group_members_group_id_device_id",
        "device_group_members",
        ["group_id", "device_id"],
    )

    op.create_table(
        "device_events",
        sa.Column("event_id", AutoId, autoincrement=True, nullable=False),
        sa.Column("device_id", sa.BigInteger(), nullable=False),
        sa.Column("at", Timestamp, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_device_events"),
    )
    op.create_index("ix_device_events_device_id_at", "device_events", ["device_id", "at"])
    op.create_index("ix_device_events_event_at", "device_events", ["event", "at"])

    op.create_table(
        "device_sessions",
        sa.Column("device_id", sa.BigInteger(), nullable=False),
        sa.Column("instance", sa.String(253), nullable=False),
        sa.Column("address", sa.String(255), nullable=False),
        sa.Column("connected_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.device_id"],
            name="fk_device_sessions_device_id_devices",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", name="pk_device_sessions"),
    )
    op.create_index("ix_device_sessions_instance", "device_sessions", ["instance"])


def downgrade() -> None:
    op.drop_table("device_sessions")
    op.drop_table("device_events")
    op.drop_table("device_group_members")
    op.drop_table("device_groups")
    op.drop_table("devices")
