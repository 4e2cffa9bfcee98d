"""The store: one schema and one set of queries over SQLite or MySQL/MariaDB."""

from __future__ import annotations

import asyncio
import logging

from edgefleet.controller.settings import DatabaseSettings
from edgefleet.controller.store.analysis import AnalysisStore
from edgefleet.controller.store.api_keys import ApiKeyStore
from edgefleet.controller.store.artifacts import ArtifactConflict, ArtifactNotFound, ArtifactStore
from edgefleet.controller.store.audit import AuditEntry, AuditFilter, AuditStore
from edgefleet.controller.store.commands import CommandStore
from edgefleet.controller.store.configs import ConfigStore
from edgefleet.controller.store.database import Database, create_engine, create_reader
from edgefleet.controller.store.devices import DeviceFilter, DeviceStore
from edgefleet.controller.store.errors import (
    ApiKeyNotFound,
    CommandNotFound,
    CommandNotQueued,
    Conflict,
    DatabaseUnavailable,
    DeviceConflict,
    DeviceNotFound,
    DocumentTooBig,
    DynamicMembership,
    GroupConflict,
    GroupNotFound,
    KubernetesUnavailable,
    LastAdmin,
    MembershipNotFound,
    NotFound,
    RoleConflict,
    RoleNotFound,
    StoreError,
    UserConflict,
    UserNotFound,
    VersionMismatch,
)
from edgefleet.controller.store.events import EventFilter, EventStore
from edgefleet.controller.store.groups import GroupStore
from edgefleet.controller.store.jobs import JobNotFound, JobStateConflict, JobStore
from edgefleet.controller.store.migrate import is_current, upgrade
from edgefleet.controller.store.records import (
    Attempt,
    FileNotFound,
    LogFilter,
    RecordFilter,
    RecordNotFound,
    RecordStore,
)
from edgefleet.controller.store.refresh_tokens import RefreshTokenStore
from edgefleet.controller.store.roles import Binding, HeldRole, RoleStore
from edgefleet.controller.store.scope import Scope
from edgefleet.controller.store.sessions import SessionStore
from edgefleet.controller.store.stats import StatsStore
from edgefleet.controller.store.users import UserStore

log = logging.getLogger("edgefleet.store")

DEFAULTS = DatabaseSettings()

__all__ = [
    "ApiKeyNotFound",
    "ArtifactConflict",
    "ArtifactNotFound",
    "Attempt",
    "AuditEntry",
    "AuditFilter",
    "Binding",
    "CommandNotFound",
    "CommandNotQueued",
    "Conflict",
    "DatabaseUnavailable",
    "DeviceConflict",
    "DeviceFilter",
    "DeviceNotFound",
    "DocumentTooBig",
    "DynamicMembership",
    "EventFilter",
    "FileNotFound",
    "GroupConflict",
    "GroupNotFound",
    "HeldRole",
    "JobNotFound",
    "JobStateConflict",
    "KubernetesUnavailable",
    "LastAdmin",
    "LogFilter",
    "MembershipNotFound",
    "NotFound",
    "RecordFilter",
    "RecordNotFound",
    "RoleConflict",
    "RoleNotFound",
    "Scope",
    "Store",
    "StoreError",
    "UserConflict",
    "UserNotFound",
    "VersionMismatch",
]


class Store:
    """Everything the services read and write, grouped by table."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.devices = DeviceStore(db)
        self.groups = GroupStore(db)
        self.events = EventStore(db)
        self.stats = StatsStore(db)
        self.sessions = SessionStore(db)
        self.records = RecordStore(db)
        self.analysis = AnalysisStore(db)
        self.users = UserStore(db)
        self.roles = RoleStore(db)
        self.api_keys = ApiKeyStore(db)
        self.refresh_tokens = RefreshTokenStore(db)
        self.audit = AuditStore(db)
        self.configs = ConfigStore(db, self.groups)
        self.commands = CommandStore(db)
        self.artifacts = ArtifactStore(db)
        self.jobs = JobStore(db)

    @classmethod
    def from_url(
        cls,
        url: str,
        timeout: float = DEFAULTS.timeout,
        pool_size: int = DEFAULTS.pool_size,
    ) -> Store:
        return cls(Database(
            create_engine(url, timeout, pool_size), timeout,
            reader=create_reader(url, timeout, pool_size),
        ))  # fmt: skip

    async def migrate(self) -> None:
        await upgrade(self.db.engine)

    async def wait_for_schema(self, interval: float = 2.0) -> None:
        """Wait until another process (the controller) has migrated the database:
        on Kubernetes both start at once, and a crash would cost a restart backoff."""
        while not await is_current(self.db.engine):
            log.warning("database schema not at the newest revision yet; waiting")
            await asyncio.sleep(interval)

    async def close(self) -> None:
        await self.db.close()
