"""Labels on devices, selectors on groups, and why each membership exists.

``device_labels`` keeps each label as a row, so a selector is a join on an index
rather than a scan of every device's JSON. A membership row now says whether it
was put there by hand (``static``), by the group's selector (``matched``), or
both; the rows that exist today were all put there by hand.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

LabelKey = sa.String(317).with_variant(
    mysql.VARCHAR(317, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
)
LabelValue = sa.String(63).with_variant(
    mysql.VARCHAR(63, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
)


def upgrade() -> None:
    with op.batch_alter_table("devices") as table:
        table.add_column(sa.Column("labels", sa.JSON(), nullable=True))
    op.execute(sa.text("UPDATE devices SET labels = '{}' WHERE labels IS NULL"))
    with op.batch_alter_table("device_groups") as table:
        table.add_column(sa.Column("selector", sa.String(1024), nullable=True))
    with op.batch_alter_table("device_group_members") as table:
        table.add_column(
            sa.Column("static", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        table.add_column(
            sa.Column("matched", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "device_labels",
        sa.Column("device_id", sa.BigInteger(), nullable=False),
        sa.Column("key", LabelKey, nullable=False),
        sa.Column("value", LabelValue, nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.device_id"],
            name="fk_device_labels_device_id_devices",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", "key", name="pk_device_labels"),
    )
    op.create_index("ix_device_labels_key_value", "device_labels", ["key", "value"])


def downgrade() -> None:
    op.drop_index("ix_device_labels_key_value", table_name="device_labels")
    op.drop_table("device_labels")
    with op.batch_alter_table("device_group_members") as table:
        table.drop_column("matched")
        table.drop_column("static")
    with op.batch_alter_table("device_groups") as table:
        table.drop_column("selector")
    with op.batch_alter_table("devices") as table:
        table.drop_column("labels")
