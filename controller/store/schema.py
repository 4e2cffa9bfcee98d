"""The SQL schema, defined once: these tables back the queries and the migrations.

Times are naive UTC with microseconds. MySQL's DATETIME keeps no fractions unless
asked to, and events written in the same second must still sort, hence ``Timestamp``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.dialects import mysql

from edgefleet.controller.store.selectors import LABEL_KEY_MAX, LABEL_VALUE_MAX, SELECTOR_MAX

Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid).
AutoId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

devices = Table(
    "devices",
    metadata,
    Column("device_id", BigInteger, primary_key=True, autoincrement=False),
    Column("name", String(128), nullable=False),
    Column("type", String(64), nullable=False),
    Column("description", String(1024), nullable=False, default=""),
    Column("hardware_sn", String(128), nullable=False),
    Column("hardware_model", String(128), nullable=False),
    Column("eth_mac", String(17)),
    Column("wifi_mac", String(17)),
    Column("lte_imei", String(15)),
    Column("base_version", String(64)),
    Column("base_updated_at", Timestamp),
    Column("base_state", String(32)),
    Column("business_version", String(64)),
    Column("business_updated_at", Timestamp),
    Column("business_state", String(32)),
    Column("secret", String(60), nullable=False),
    # Bumped on every password change, so session tokens issued before it stop working.
    Column("credential_version", Integer, nullable=False, default=1),
    # HMAC-SHA256 (hex) of the last password that passed bcrypt, keyed with a pepper
    # that is not in the database (southbound/credentials.py).
    Column("verified_digest", String(64)),
    Column("state", String(16), nullable=False, default="offline"),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("k8s_namespace", String(253)),
    Column("k8s_name", String(253)),
    # The labels as the API shows them; ``device_labels`` holds the same pairs for
    # the selector queries. Both are written in one transaction.
    Column("labels", JSON),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    UniqueConstraint("hardware_sn", "hardware_model"),
    UniqueConstraint("k8s_namespace", "k8s_name"),
    # Filtered list pages are ordered by id: these let the index deliver that order.
    Index(None, "state", "device_id"),
    Index(None, "type", "device_id"),
)

device_groups = Table(
    "device_groups",
    metadata,
    Column("group_id", BigInteger, primary_key=True, autoincrement=False),
    Column("name", String(128), nullable=False, unique=True),
    Column("description", String(1024), nullable=False, default=""),
    Column("k8s_namespace", String(253)),
    Column("k8s_name", String(253)),
    # A label selector (Kubernetes syntax, canonical form): the devices it matches
    # are members too, kept in ``device_group_members`` with ``matched`` set.
    Column("selector", String(SELECTOR_MAX)),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    UniqueConstraint("k8s_namespace", "k8s_name"),
)

device_group_members = Table(
    "device_group_members",
    metadata,
    Column(
        "device_id",
        BigInteger,
        ForeignKey("devices.device_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "group_id",
        BigInteger,
        ForeignKey("device_groups.group_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("created_at", Timestamp, nullable=False),
    # Why the device is a member: put there by hand (``static``), matched by the
    # group's selector (``matched``), or both. A row with neither is deleted, so
    # every query that asks "is it a member" reads the row alone.
    Column("static", Boolean, nullable=False, default=True, server_default=true()),
    Column("matched", Boolean, nullable=False, default=False, server_default=false()),
    Index(None, "group_id", "device_id"),
)

# Label keys and values are case-sensitive ASCII: MySQL's default collation would
# take "Site" and "site" for one key.
LabelKey = String(LABEL_KEY_MAX).with_variant(
    mysql.VARCHAR(LABEL_KEY_MAX, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
)
LabelValue = String(LABEL_VALUE_MAX).with_variant(
    mysql.VARCHAR(LABEL_VALUE_MAX, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
)

# One row per label of a device: what selectors are evaluated against, in SQL.
device_labels = Table(
    "device_labels",
    metadata,
    Column(
        "device_id",
        BigInteger,
        ForeignKey("devices.device_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("key", LabelKey, primary_key=True),
    Column("value", LabelValue, nullable=False),
    Index(None, "key", "value"),
)

# No foreign key to devices: a device's history, ending with "deleted", outlives it.
device_events = Table(
    "device_events",
    metadata,
    Column("event_id", AutoId, primary_key=True, autoincrement=True),
    Column("device_id", BigInteger, nullable=False),
    Column("at", Timestamp, nullable=False),
    Column("event", String(32), nullable=False),
    Column("detail", JSON, nullable=False),
    Index(None, "device_id", "at"),
    Index(None, "event", "at"),
)

southbound_instances = Table(
    "southbound_instances",
    metadata,
    Column("instance", String(253), primary_key=True),
    Column("seen_at", Timestamp, nullable=False),
)

device_sessions = Table(
    "device_sessions",
    metadata,
    Column(
        "device_id",
        BigInteger,
        ForeignKey("devices.device_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("instance", String(253), nullable=False),
    Column("address", String(255), nullable=False),
    Column("connected_at", Timestamp, nullable=False),
    Index(None, "instance"),
)

# --- data from devices (records, files, the ingest log, analysis) ---------------------

# Content-addressed: one row per distinct file, whoever sent it and however often.
# ``refs`` counts the records that name it; at 0 ``released_at`` starts the clock of
# its garbage collection (a file never named by any record counts from creation).
files = Table(
    "files",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("content_type", String(255), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("refs", Integer, nullable=False, default=0),
    Column("released_at", Timestamp),
    Index(None, "refs", "released_at"),
)

# A device's record ids are compared byte for byte: MySQL's default collation would
# take "R-1" and "r-1" (or "a" and "a ") for one id.
RecordId = String(128).with_variant(
    mysql.VARCHAR(128, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
)

# No foreign key to devices: a device's data outlives it, until retention.
records = Table(
    "records",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("device_id", BigInteger, nullable=False),
    Column("record_id", RecordId, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("at", Timestamp, nullable=False),
    Column("received_at", Timestamp, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("size", Integer, nullable=False),
    Column("status", String(16), nullable=False, default="received"),
    UniqueConstraint("device_id", "record_id"),
    # Newest first by id (snowflakes grow with time), filtered by device, kind or status.
    Index(None, "device_id", "id"),
    Index(None, "kind", "id"),
    Index(None, "status", "kind", "id"),
    Index(None, "received_at"),
)

record_files = Table(
    "record_files",
    metadata,
    Column(
        "record_id",
        BigInteger,
        ForeignKey("records.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("sha256", String(64), primary_key=True),
    Column("position", Integer, nullable=False),
    Index(None, "sha256"),
)

ingest_log = Table(
    "ingest_log",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("device_id", BigInteger),
    Column("at", Timestamp, nullable=False),
    Column("source_ip", String(64), nullable=False),
    Column("user_agent", String(255), nullable=False),
    Column("transport", String(8), nullable=False),
    Column("accepted", Integer, nullable=False),
    Column("duplicates", Integer, nullable=False),
    Column("rejected", Integer, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("message", String(255), nullable=False),
    Index(None, "at"),
    Index(None, "device_id", "at"),
    Index(None, "status", "at"),
)

# The analysis work queue: records of the analysed kinds in status ``received`` are
# the queue (restart-safe: it is the database); this holds their attempts.
analysis_jobs = Table(
    "analysis_jobs",
    metadata,
    Column(
        "record_id",
        BigInteger,
        ForeignKey("records.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("attempts", Integer, nullable=False),
    Column("next_at", Timestamp, nullable=False),
    Column("error", String(512), nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

# Results by image digest: the same image never goes to the model twice. Only
# successes are kept.
classifications = Table(
    "classifications",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("category", String(64), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("model", String(128), nullable=False),
    Column("analysed_at", Timestamp, nullable=False),
)

classify_requests = Table(
    "classify_requests",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("at", Timestamp, nullable=False),
    Column("caller", String(128), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("cached", Boolean, nullable=False),
    Column("category", String(64), nullable=False),
    Index(None, "at"),
)

# --- software updates (FLEET.md "Software updates") -------------------------------------

# A package devices install: its bytes are a file of the store (``files``), named by
# digest. ``types`` lists the device types it is for (empty: every type). The file
# stays while an artifact names it, whatever retention does to records.
artifacts = Table(
    "artifacts",
    metadata,
    Column("artifact_id", BigInteger, primary_key=True, autoincrement=False),
    Column("name", String(128), nullable=False),
    Column("version", String(64), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("content_type", String(255), nullable=False),
    Column("types", JSON, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint("name", "version"),
    Index(None, "sha256"),
)

# --- people and services (controller/access) -------------------------------------------

users = Table(
    "users",
    metadata,
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("username", String(64), nullable=False, unique=True),
    Column("email", String(254)),
    # A bcrypt hash; null for a service account, which has API keys and cannot sign in.
    Column("password", String(60)),
    Column("is_active", Boolean, nullable=False, default=True),
    Column("is_superuser", Boolean, nullable=False, default=False),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("last_login_at", Timestamp),
)

roles = Table(
    "roles",
    metadata,
    Column("role_id", BigInteger, primary_key=True, autoincrement=False),
    Column("code", String(64), nullable=False, unique=True),
    Column("name", String(128), nullable=False),
    Column("description", String(1024), nullable=False, default=""),
    Column("permissions", JSON, nullable=False),
    Column("builtin", Boolean, nullable=False, default=False),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)


def _bindings(name: str, owner: str, owner_table: str) -> Table:
    """Roles given to a user or an API key. A binding without a group holds
    everywhere; with one, on that group's devices only. A role still bound cannot
    be deleted (no cascade); a deleted group takes its bindings with it, which only
    ever narrows what someone may do."""
    return Table(
        name,
        metadata,
        Column("binding_id", AutoId, primary_key=True, autoincrement=True),
        Column(
            owner,
            BigInteger,
            ForeignKey(f"{owner_table}.{owner}", ondelete="CASCADE"),
            nullable=False,
        ),
        Column("role_id", BigInteger, ForeignKey("roles.role_id"), nullable=False),
        Column("group_id", BigInteger, ForeignKey("device_groups.group_id", ondelete="CASCADE")),
        Index(None, owner),
        Index(None, "role_id"),
        Index(None, "group_id"),
    )


user_roles = _bindings("user_roles", "user_id", "users")

# Keys are shown once; the database keeps a SHA-256 digest and the short prefix
# that finds the row without scanning.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", BigInteger, primary_key=True, autoincrement=False),
    Column("user_id", BigInteger, ForeignKey("users.user_id", ondelete="CASCADE"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("prefix", String(16), nullable=False, unique=True),
    Column("digest", String(64), nullable=False),
    Column("created_by", BigInteger),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp),
    Column("last_used_at", Timestamp),
    Column("revoked_at", Timestamp),
    Index(None, "user_id"),
)

api_key_roles = _bindings("api_key_roles", "key_id", "api_keys")

# One row per refresh token ever issued: a used (rotated) one presented again
# betrays a stolen copy, and revokes its whole family (every token descended from
# the same sign-in).
refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_id", AutoId, primary_key=True, autoincrement=True),
    Column("user_id", BigInteger, ForeignKey("users.user_id", ondelete="CASCADE"), nullable=False),
    Column("family", String(32), nullable=False),
    Column("digest", String(64), nullable=False, unique=True),
    Column("issued_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Column("used_at", Timestamp),
    Column("revoked_at", Timestamp),
    Index(None, "family"),
    Index(None, "user_id"),
)

# Append-only: nothing in the API changes or deletes a row.
audit_log = Table(
    "audit_log",
    metadata,
    Column("audit_id", AutoId, primary_key=True, autoincrement=True),
    Column("at", Timestamp, nullable=False),
    Column("actor_type", String(16), nullable=False),
    Column("actor_id", BigInteger),
    Column("actor_name", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target_type", String(32), nullable=False),
    Column("target_id", String(64)),
    Column("result", String(16), nullable=False),
    Column("error_type", String(32)),
    Column("http_status", Integer, nullable=False),
    Column("source_address", String(64), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("fields", JSON, nullable=False),
    Index(None, "at"),
    Index(None, "actor_name", "at"),
    Index(None, "action", "at"),
    Index(None, "target_type", "target_id", "at"),
)

# Desired configuration (FLEET.md, "Desired configuration"). ``version`` counts the
# device's own document (what ``If-Match`` compares); ``effective_version`` counts
# every change of what the device should run — its own document or one of its
# groups' — and is the version ``config_update`` carries. ``reported*`` is the
# device's last ``config_report`` as it sent it; ``supported`` is whether it listed
# the ``config`` extension at its last login (null: not logged in since).
device_configs = Table(
    "device_configs",
    metadata,
    Column(
        "device_id",
        BigInteger,
        ForeignKey("devices.device_id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("desired", JSON, nullable=False),
    Column("version", Integer, nullable=False, default=0),
    Column("effective_version", Integer, nullable=False, default=0),
    Column("updated_at", Timestamp),
    Column("reported", JSON),
    Column("reported_version", Integer),
    Column("report_status", String(16)),
    Column("report_message", String(1024)),
    Column("reported_at", Timestamp),
    Column("supported", Boolean),
)

group_configs = Table(
    "group_configs",
    metadata,
    Column(
        "group_id",
        BigInteger,
        ForeignKey("device_groups.group_id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("config", JSON, nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

# Every command sent to a device, queued or not (FLEET.md, "Commands that wait for
# the device"). No foreign key: a device's command history is kept like its log.
# ``state``: queued, sent, succeeded, failed, timed_out, expired, canceled. A queued
# command is claimed for delivery by moving it to ``sent`` in one conditional
# UPDATE, so it is handed to a device at most once; ``deadline`` is when a sent
# command whose deliverer vanished counts as timed out.
commands = Table(
    "commands",
    metadata,
    Column("command_id", BigInteger, primary_key=True, autoincrement=False),
    Column("device_id", BigInteger, nullable=False),
    Column("order", String(64), nullable=False),
    Column("params", JSON, nullable=False),
    Column("timeout", Float, nullable=False),
    Column("queued", Boolean, nullable=False),
    Column("state", String(16), nullable=False),
    Column("actor", String(128), nullable=False),
    # The southbound instance that claimed a queued command: if it restarts before
    # the result, the command ends there (``timed_out``), never sent again.
    Column("deliverer", String(128)),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp),
    Column("sent_at", Timestamp),
    Column("deadline", Timestamp),
    Column("finished_at", Timestamp),
    Column("result_status", String(16)),
    Column("result_message", String(1024)),
    Column("result_data", JSON),
    Index(None, "device_id", "command_id"),
    Index(None, "device_id", "state", "command_id"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("job_id", BigInteger, primary_key=True, autoincrement=False),
    Column("name", String(128), nullable=False),
    Column("target", JSON, nullable=False),
    Column("action", JSON, nullable=False),
    Column("rollout", JSON, nullable=False),
    Column("abort", JSON, nullable=False),
    Column("device_timeout", Float, nullable=False),
    Column("retries", Integer, nullable=False),
    Column("deadline", Timestamp),
    # running, paused, finished, aborted, canceled
    Column("state", String(16), nullable=False),
    Column("reason", String(1024)),
    # The admission budget (a token bucket): ``credit`` devices may be admitted as of
    # ``credit_at``; it fills at ``rate`` devices per (scaled) minute.
    Column("rate", Float, nullable=False),
    Column("credit", Float, nullable=False),
    Column("credit_at", Timestamp, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("finished_at", Timestamp),
    Index(None, "state"),
)

job_executions = Table(
    "job_executions",
    metadata,
    Column("job_id", BigInteger, primary_key=True, autoincrement=False),
    Column("device_id", BigInteger, primary_key=True, autoincrement=False),
    # pending, queued, in_progress, succeeded, failed, timed_out, skipped, canceled
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("command_id", BigInteger),
    # A configuration job's execution: the configuration version it wrote (the
    # device succeeds by reporting it) and when the device was first seen online to
    # take it (its timeout counts from then).
    Column("config_version", Integer),
    Column("started_at", Timestamp),
    Column("queued_at", Timestamp),
    Column("finished_at", Timestamp),
    Column("result_status", String(16)),
    Column("result_message", String(1024)),
    Index(None, "job_id", "state", "device_id"),
)
