"""From the numbers of a status upload to the percentages the cloud shows.

The percentages are defined once, in ``agent.protocol.StatusReport`` (the device
uses them too, to decide whether its status moved). CPU use needs two uploads —
the device reports cumulative CPU seconds — so a session keeps the previous one
(``UtilisationMeter``). Every number was checked at the protocol boundary
(``StatusReport.read``), and every percentage is within 0 to 100.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgefleet.agent.protocol import StatusReport


@dataclass(frozen=True)
class Utilisation:
    cpu_percent: float | None = None
    memory_used_percent: float | None = None
    disk_used_percent: float | None = None


class UtilisationMeter:
    """One device's utilisation, upload after upload."""

    __slots__ = ("_cpu_percent", "_previous")

    def __init__(self) -> None:
        self._previous: StatusReport | None = None
        self._cpu_percent: float | None = None

    def read(self, report: StatusReport) -> Utilisation:
        if self._previous is not None:
            cpu = report.cpu_percent_since(self._previous)
            self._cpu_percent = cpu if cpu is not None else self._cpu_percent
        if report.cpu_times is not None:
            self._previous = report
        return Utilisation(
            self._cpu_percent, report.memory_used_percent(), report.disk_used_percent()
        )
