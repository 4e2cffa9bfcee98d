"""Data from devices: records, content-addressed files, the ingest log, and the
analysis queue and its cache of results by image digest.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
RecordId = sa.String(128).with_variant(
    mysql.VARCHAR(128, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
)


def upgrade() -> None:
    op.create_table(
        "classifications",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("analysed_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_classifications")),
    )
    op.create_table(
        "classify_requests",
        sa.Column("id", AutoId, autoincrement=True, nullable=False),
        sa.Column("at", Timestamp, nullable=False),
        sa.Column("caller", sa.String(length=128), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_classify_requests")),
    )
    op.create_index(op.f("ix_classify_requests_at"), "classify_requests", ["at"], unique=False)
    op.create_table(
        "files",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("refs", sa.Integer(), nullable=False),
        sa.Column("released_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_files")),
    )
    op.create_index(
        op.f("ix_files_refs_released_at"), "files", ["refs", "released_at"], unique=False
    )
    op.create_table(
        "ingest_log",
        sa.Column("id", AutoId, autoincrement=True, nullable=False),
        sa.Column("device_id", sa.BigInteger(), nullable=True),
        sa.Column("at", Timestamp, nullable=False),
        sa.Column("source_ip", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=255), nullable=False),
        sa.Column("transport", sa.String(length=8), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_log")),
    )
    op.create_index(op.f("ix_ingest_log_at"), "ingest_log", ["at"], unique=False)
    op.create_index(
        op.f("ix_ingest_log_device_id_at"), "ingest_log", ["device_id", "at"], unique=False
    )
    op.create_index(op.f("ix_ingest_log_status_at"), "ingest_log", ["status", "at"], unique=False)
    op.create_table(
        "records",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("device_id", sa.BigInteger(), nullable=False),
        sa.Column("record_id", RecordId, nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("at", Timestamp, nullable=False),
        sa.Column("received_at", Timestamp, nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_records")),
        sa.UniqueConstraint("device_id", "record_id", name=op.f("uq_records_device_id_record_id")),
    )
    op.create_index(op.f("ix_records_device_id_id"), "records", ["device_id", "id"], unique=False)
    op.create_index(op.f("ix_records_kind_id"), "records", ["kind", "id"], unique=False)
    op.create_index(op.f("ix_records_received_at"), "records", ["received_at"], unique=False)
    op.create_index(
        op.f("ix_records_status_kind_id"), "records", ["status", "kind", "id"], unique=False
    )
    op.create_table(
        "analysis_jobs",
        sa.Column("record_id", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", Timestamp, nullable=False),
        sa.Column("error", sa.String(length=512), nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["records.id"],
            name=op.f("fk_analysis_jobs_record_id_records"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("record_id", name=op.f("pk_analysis_jobs")),
    )
    op.create_table(
        "record_files",
        sa.Column("record_id", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["records.id"],
            name=op.f("fk_record_files_record_id_records"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("record_id", "sha256", name=op.f("pk_record_files")),
    )
    op.create_index(op.f("ix_record_files_sha256"), "record_files", ["sha256"], unique=False)


def downgrade() -> None:
    op.drop_table("record_files")
    op.drop_table("analysis_jobs")
    op.drop_table("records")
    op.drop_table("ingest_log")
    op.drop_table("files")
    op.drop_table("classify_requests")
    op.drop_table("classifications")
