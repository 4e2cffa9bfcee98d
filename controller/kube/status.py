"""The ``status`` of the Device and DeviceGroup resources, defined once.

Two kinds of writer share a Device's status, each with its own fields, and both
write JSON merge-patches, so neither overwrites the other's:

- the operator (``controller.kube.operator``): ``deviceId``, ``credentialsSecret``
  and the ``Synced`` condition — ``reconciled``; for a DeviceGroup ``groupId``
  and ``deviceCount`` (``controller.kube.group_counts``);
- the session side — the southbound's status writer, and the controller's resync
  and lost-instance release for what a southbound could not write: ``state``,
  ``lastSeen``, ``connectedSince``, ``sessionPod``, the ``metrics`` summary, the
  configuration it reported and the business software version an update installed
  — ``online``, ``changed_state``, ``offline``, ``metrics_summary``,
  ``config_sync``, ``software_installed``.

An offline status never names a session: ``offline`` always clears
``connectedSince`` and ``sessionPod``, whoever writes it.

Only the standard library is imported: the southbound imports this module (one
of the two of the controller it uses besides the store, with ``budget``), and it
must stay light.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

STATE = "state"
LAST_SEEN = "lastSeen"
CONNECTED_SINCE = "connectedSince"
SESSION_POD = "sessionPod"
METRICS = "metrics"
DEVICE_ID = "deviceId"
GROUP_ID = "groupId"
DEVICE_COUNT = "deviceCount"
CREDENTIALS_SECRET = "credentialsSecret"
CONDITIONS = "conditions"
CONFIG_VERSION = "configVersion"
CONFIG_IN_SYNC = "configInSync"
BUSINESS_VERSION = "businessVersion"
BUSINESS_UPDATED_AT = "businessUpdatedAt"

CLAIMS_SESSION = ("online", "unknown")
"""States that say some southbound holds the device's session."""


class ResourceGone(Exception):
    """The resource whose status was to be written does not exist (404)."""


class StatusApi(Protocol):
    """Where status patches go: ``KubeClient`` in production, anything in tests.
    Raises ``ResourceGone`` for a resource that does not exist."""

    async def patch_status(
        self, plural: str, name: str, status: dict[str, Any], namespace: str | None = None
    ) -> None: ...


def instant(at: float) -> str:
    """A Unix time as the resources show times (RFC 3339, seconds, UTC)."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the session side ----------------------------------------------------------------


def online(pod: str, connected_at: float) -> dict[str, Any]:
    """A session just began at ``pod``."""
    since = instant(connected_at)
    return {STATE: "online", CONNECTED_SINCE: since, LAST_SEEN: since, SESSION_POD: pod}


def changed_state(state: str, last_seen: float) -> dict[str, Any]:
    """A held session went ``unknown`` or back ``online``."""
    return {STATE: state, LAST_SEEN: instant(last_seen)}


def offline(last_seen: float | None = None) -> dict[str, Any]:
    """No session anywhere: the session fields are cleared, not left naming a pod."""
    status: dict[str, Any] = {STATE: "offline", CONNECTED_SINCE: None, SESSION_POD: None}
    if last_seen is not None:
        status[LAST_SEEN] = instant(last_seen)
    return status


def metrics_summary(
    cpu_percent: float | None,
    memory_used_percent: float | None,
    disk_used_percent: float | None,
    at: float,
) -> dict[str, Any]:
    """The value of ``metrics`` (written at most once a metrics interval per device)."""
    return {
        "cpuPercent": cpu_percent,
        "memoryUsedPercent": memory_used_percent,
        "diskUsedPercent": disk_used_percent,
        "updatedAt": instant(at),
    }


def config_sync(version: int | None, in_sync: bool | None) -> dict[str, Any]:
    """The configuration fields of a Device's status, from its last report."""
    return {CONFIG_VERSION: version, CONFIG_IN_SYNC: in_sync}


def software_installed(version: str, at: float) -> dict[str, Any]:
    """The business software version a device answered an ``update`` with, and when:
    what runs now, while ``spec.software`` stays what its owner declared."""
    return {BUSINESS_VERSION: version, BUSINESS_UPDATED_AT: instant(at)}


def claims_session(status: dict[str, Any]) -> bool:
    """The status says some southbound holds the device's session: its state is
    online or unknown, or (a status no writer should leave) it names a session."""
    return status.get(STATE) in CLAIMS_SESSION or bool(
        status.get(SESSION_POD) or status.get(CONNECTED_SINCE)
    )


def device_id(status: dict[str, Any]) -> int | None:
    value = str(status.get(DEVICE_ID) or "")
    return int(value) if value.isdigit() else None


# --- the operator's side ---------------------------------------------------------------


def reconciled(
    current: dict[str, Any], wanted: dict[str, Any], problem: str | None, now: float
) -> dict[str, Any]:
    """The operator's status patch: the ``wanted`` fields that differ from
    ``current``, and the ``Synced`` condition — true, or false with ``problem`` —
    when it changed (its transition time is then ``now``)."""
    patch = {key: value for key, value in wanted.items() if current.get(key) != value}
    condition = {
        "type": "Synced",
        "status": "True" if problem is None else "False",
        "reason": "Reconciled" if problem is None else "Error",
        "message": problem or "",
    }
    conditions = [c for c in current.get(CONDITIONS) or [] if isinstance(c, dict)]
    old = next((c for c in conditions if c.get("type") == "Synced"), None)
    if old is not None and all(old.get(k) == v for k, v in condition.items()):
        return patch
    condition["lastTransitionTime"] = instant(now)
    others = [c for c in conditions if c.get("type") != "Synced"]
    patch[CONDITIONS] = [*others, condition]
    return patch
