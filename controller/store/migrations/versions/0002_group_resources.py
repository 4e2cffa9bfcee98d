"""Groups remember the DeviceGroup resource they mirror (Kubernetes mode).

A group's display name may be any text, a resource name may not, so the two are
kept apart, as they already are for devices.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("device_groups") as batch:
        batch.add_column(sa.Column("k8s_namespace", sa.String(253), nullable=True))
        batch.add_column(sa.Column("k8s_name", sa.String(253), nullable=True))
        batch.create_unique_constraint(
            "uq_device_groups_k8s_namespace_k8s_name", ["k8s_namespace", "k8s_name"]
        )


def downgrade() -> None:
    with op.batch_alter_table("device_groups") as batch:
        batch.drop_constraint("uq_device_groups_k8s_namespace_k8s_name", type_="unique")
        batch.drop_column("k8s_name")
        batch.drop_column("k8s_namespace")
