"""The store: one schema and one set of queries over SQLite or MySQL/MariaDB."""

from __future__ import annotations

from controller.store.database import Database, create_engine
from controller.store.devices import DeviceFilter, DeviceStore
from controller.store.errors import (
    Conflict,
    DatabaseUnavailable,
    DeviceConflict,
    DeviceNotFound,
    GroupConflict,
    GroupNotFound,
    KubernetesUnavailable,
    MembershipNotFound,
    NotFound,
    StoreError,
)
from controller.store.events import EventFilter, EventStore
from controller.store.groups import GroupStore
from controller.store.migrate import upgrade
from controller.store.sessions import SessionStore
from controller.store.stats import StatsStore

__all__ = [
    "Conflict",
    "DatabaseUnavailable",
    "DeviceConflict",
    "DeviceFilter",
    "DeviceNotFound",
    "EventFilter",
    "GroupConflict",
    "GroupNotFound",
    "KubernetesUnavailable",
    "MembershipNotFound",
    "NotFound",
    "Store",
    "StoreError",
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

    @classmethod
    def from_url(cls, url: str, timeout: float = 5.0, pool_size: int = 10) -> Store:
        return cls(Database(create_engine(url, timeout, pool_size), timeout))

    async def migrate(self) -> None:
        await upgrade(self.db.engine)

    async def close(self) -> None:
        await self.db.close()
