"""A metrics exporter fed by the session events of two devices with awkward names."""

from __future__ import annotations

from edgefleet.southbound.events import (
    DeviceIdentity,
    LoggedIn,
    SessionEvents,
    StateChanged,
    StatusReceived,
)
from edgefleet.southbound.live import LiveStatusBook
from edgefleet.southbound.metrics import SouthboundMetrics
from edgefleet.southbound.utilisation import Utilisation


def exporter(per_device: bool) -> SouthboundMetrics:
    """An exporter fed by the session events of two devices with awkward names."""
    events = SessionEvents()
    book = LiveStatusBook()
    book.subscribe(events)
    metrics = SouthboundMetrics(book, per_device)
    metrics.subscribe(events)
    awkward = DeviceIdentity(1, 'gate "north"\nline 2', "fleet", "cam\\era", None, 1)
    plain = DeviceIdentity(2, "plain", "", "gateway", None, 1)
    events.publish(LoggedIn(awkward, "10.0.0.1:5000", False, frozenset(), 100.0))
    events.publish(LoggedIn(plain, "10.0.0.2:5000", False, frozenset(), 200.0))
    events.publish(StateChanged(2, "unknown", 1, 200.0))
    events.publish(StatusReceived(2, {}, Utilisation(memory_used_percent=61.5), 200.0))
    return metrics


async def scrape(metrics: SouthboundMetrics) -> str:
    """The whole exposition text, as a scrape reads it."""
    return b"".join([chunk async for chunk in metrics.exposition()]).decode()
