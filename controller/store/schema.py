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
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql

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
    Column("state", String(16), nullable=False, default="offline"),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("k8s_namespace", String(253)),
    Column("k8s_name", String(253)),
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
    Index(None, "group_id", "device_id"),
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
