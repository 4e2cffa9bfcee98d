"""The Device and DeviceGroup custom resources as the code sees them: names, and the
mapping between a resource's spec and a database row, defined once for the operator
(resource → row) and the REST API in Kubernetes mode (request → resource)."""

from __future__ import annotations

import base64
import re
from typing import Any

GROUP = "edgefleet.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
DEVICES = "devices"
DEVICE_GROUPS = "devicegroups"

DEVICE_ID_ANNOTATION = f"{GROUP}/device-id"
"""Set by the REST API on the Devices it creates, so the operator adopts the id the
API already answered with instead of minting a second one."""
SECRET_LABEL = f"{GROUP}/device"
"""On every credentials Secret, naming its Device: the operator watches these."""
SECRET_PASSWORD_KEY = "password"
SECRET_DEVICE_ID_KEY = "deviceId"

_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

# spec path -> database column, for the device fields both sides know.
_HARDWARE = {"sn": "hardware_sn", "model": "hardware_model", "ethMac": "eth_mac",
             "wifiMac": "wifi_mac", "imei": "lte_imei"}  # fmt: skip
_SOFTWARE = {"baseVersion": "base_version", "businessVersion": "business_version"}
_TOP = {"displayName": "name", "type": "type", "description": "description",
        "disabled": "disabled"}  # fmt: skip


def credentials_secret(device_name: str) -> str:
    return f"{device_name}-credentials"


def resource_name(display_name: str, kind: str, snowflake: int) -> str:
    """The resource name for something created over REST: its display name when that
    is already a valid Kubernetes name, else ``<kind>-<id>`` (``device-1790…``)."""
    return display_name if _DNS_NAME.match(display_name) else f"{kind}-{snowflake}"


def device_row(body: dict[str, Any]) -> dict[str, Any]:
    """The database columns a Device resource determines."""
    spec = body.get("spec") or {}
    metadata = body["metadata"]
    hardware, software = spec.get("hardware") or {}, spec.get("software") or {}
    return {
        "name": spec.get("displayName") or metadata["name"],
        "type": spec.get("type") or "generic",
        "description": spec.get("description") or "",
        "disabled": bool(spec.get("disabled", False)),
        **{column: hardware.get(key) for key, column in _HARDWARE.items()},
        **{column: software.get(key) for key, column in _SOFTWARE.items()},
        "labels": dict(metadata.get("labels") or {}),
        "k8s_name": metadata["name"],
        "k8s_namespace": metadata.get("namespace"),
    }


def device_spec(values: dict[str, Any]) -> dict[str, Any]:
    """A (partial) Device spec from database column values, for create and merge-patch.

    ``None`` stays ``None``: in a merge patch it removes the key, which is what a
    REST ``null`` (clear this field) means.
    """
    spec: dict[str, Any] = {}
    for key, column in _TOP.items():
        if column in values:
            spec[key] = values[column]
    for section, mapping in (("hardware", _HARDWARE), ("software", _SOFTWARE)):
        part = {key: values[column] for key, column in mapping.items() if column in values}
        if part:
            spec[section] = part
    return spec


def labels_patch(old: dict[str, Any], new: dict[str, str]) -> dict[str, str | None]:
    """A merge patch of ``metadata.labels`` that leaves exactly ``new``: the labels
    that go are set to null."""
    return {**dict.fromkeys(old.keys() - new.keys()), **new}


def group_row(body: dict[str, Any]) -> dict[str, Any]:
    """The group's columns; ``selector`` as written (the operator checks it)."""
    spec = body.get("spec") or {}
    return {
        "name": spec.get("displayName") or body["metadata"]["name"],
        "description": spec.get("description") or "",
        "selector": spec.get("selector") or None,
    }


def group_spec(values: dict[str, Any]) -> dict[str, Any]:
    keys = {"name": "displayName", "description": "description", "selector": "selector"}
    return {key: values[column] for column, key in keys.items() if column in values}


def encode_secret(data: dict[str, str]) -> dict[str, str]:
    """Secret ``data`` values: base64, which every API server (and kmock) stores as is."""
    return {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}


def owner_reference(body: dict[str, Any]) -> dict[str, Any]:
    """Makes the Secret belong to its Device: deleting the Device deletes it."""
    return {
        "apiVersion": API_VERSION,
        "kind": body.get("kind", "Device"),
        "name": body["metadata"]["name"],
        "uid": body["metadata"].get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }
