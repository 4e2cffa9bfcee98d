"""The verified-credential cache: a keyed digest of the last password that passed
bcrypt, so a version-1 device's next login costs one HMAC instead of a bcrypt.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as table:
        table.add_column(sa.Column("verified_digest", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as table:
        table.drop_column("verified_digest")
