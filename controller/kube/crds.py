"""The Device and DeviceGroup CustomResourceDefinitions, defined once.

The field formats are the REST API's (``controller.api.schemas``), so a device
the API accepts is a Device the cluster accepts and the other way round. The YAML
in ``charts/edgefleet/crds/`` is written from here (``make manifests``); a test
checks the files are up to date.

    python -m edgefleet.controller.kube.crds charts/edgefleet/crds
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from edgefleet.controller.api.schemas import (
    DESCRIPTION_MAX,
    DEVICE_TYPE_PATTERN,
    HARDWARE_KEY_MAX,
    ID_PATTERN,
    IMEI_PATTERN,
    MAC_PATTERN,
    NAME_MAX,
    VERSION_MAX,
)
from edgefleet.controller.kube.resources import DEVICE_GROUPS, DEVICES, GROUP, VERSION
from edgefleet.controller.store.selectors import SELECTOR_MAX

# A Device's name also names its Secret (<name>-credentials) and is used as a
# label value, so it is held to a DNS label: 63 characters.
RESOURCE_NAME_MAX = 63
RESOURCE_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def _text(max_length: int, min_length: int = 0, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "maxLength": max_length, **extra}
    if min_length:
        schema["minLength"] = min_length
    return schema


def _instant() -> dict[str, Any]:
    return {"type": "string", "format": "date-time"}


CONDITIONS = {
    "type": "array",
    "description": "Synced: the operator mirrored the resource into the database.",
    "items": {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string"},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "lastTransitionTime": _instant(),
        },
    },
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}

METADATA = {
    "type": "object",
    "properties": {
        "name": {
            "type": "string",
            "maxLength": RESOURCE_NAME_MAX,
            "pattern": RESOURCE_NAME_PATTERN,
        }
    },
}

CONFIG: dict[str, Any] = {
    "type": "object",
    "x-kubernetes-preserve-unknown-fields": True,
    "description": "The desired configuration (any JSON object, at most 32 KiB): a "
    "Device's own goes on top of its groups' (merged in group name order).",
}

DEVICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "required": ["hardware"],
            "properties": {
                "displayName": _text(NAME_MAX, 1, description="Shown in the REST API."),
                "type": _text(64, pattern=DEVICE_TYPE_PATTERN, default="generic"),
                "description": _text(DESCRIPTION_MAX),
                "hardware": {
                    "type": "object",
                    "required": ["sn", "model"],
                    "properties": {
                        "sn": _text(HARDWARE_KEY_MAX, 1),
                        "model": _text(HARDWARE_KEY_MAX, 1),
                        "ethMac": {"type": "string", "pattern": MAC_PATTERN},
                        "wifiMac": {"type": "string", "pattern": MAC_PATTERN},
                        "imei": {"type": "string", "pattern": IMEI_PATTERN},
                    },
                },
                "software": {
                    "type": "object",
                    "properties": {
                        "baseVersion": _text(VERSION_MAX, 1),
                        "businessVersion": _text(VERSION_MAX, 1),
                    },
                },
                "groups": {
                    "type": "array",
                    "description": "Names of DeviceGroups in this namespace.",
                    "items": _text(RESOURCE_NAME_MAX, 1, pattern=RESOURCE_NAME_PATTERN),
                    "x-kubernetes-list-type": "set",
                },
                "disabled": {"type": "boolean", "default": False},
                "config": CONFIG,
            },
        },
        "status": {
            "type": "object",
            "properties": {
                "deviceId": {"type": "string", "pattern": ID_PATTERN},
                "credentialsSecret": {"type": "string"},
                "state": {"type": "string", "enum": ["online", "unknown", "offline"]},
                "lastSeen": _instant(),
                "connectedSince": _instant(),
                "sessionPod": {"type": "string"},
                "metrics": {
                    "type": "object",
                    "properties": {
                        "cpuPercent": {"type": "number", "nullable": True},
                        "memoryUsedPercent": {"type": "number", "nullable": True},
                        "diskUsedPercent": {"type": "number", "nullable": True},
                        "updatedAt": _instant(),
                    },
                },
                "configVersion": {
                    "type": "integer",
                    "description": "The configuration version the device last reported.",
                },
                "configInSync": {
                    "type": "boolean",
                    "nullable": True,
                    "description": "Whether the device runs its desired configuration; "
                    "null: it cannot take one (a version-1 device).",
                },
                "businessVersion": _text(
                    VERSION_MAX,
                    1,
                    description="The business software version the device runs, as it "
                    "answered its last update (spec.software is what its owner declared).",
                ),
                "businessUpdatedAt": _instant(),
                "conditions": CONDITIONS,
            },
        },
    },
}

GROUP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "properties": {
                "displayName": _text(NAME_MAX, 1),
                "description": _text(DESCRIPTION_MAX),
                "selector": _text(
                    SELECTOR_MAX,
                    description="A label selector (kubectl -l syntax, e.g. "
                    "'site=chengdu,tier in (edge,core)'): the Devices whose labels match "
                    "are members too, besides those naming the group in spec.groups.",
                ),
                "config": CONFIG,
            },
        },
        "status": {
            "type": "object",
            "properties": {
                "groupId": {"type": "string", "pattern": ID_PATTERN},
                "deviceCount": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Devices that name this group or match its selector "
                    "(written by the operator).",
                },
                "conditions": CONDITIONS,
            },
        },
    },
}


def _column(name: str, type_: str, path: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "jsonPath": path, **extra}


def _definition(
    kind: str,
    plural: str,
    short_names: list[str],
    schema: dict[str, Any],
    columns: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "edgefleet"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": ["edgefleet"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


# Short names of our own: the plural ``devices`` is shared with other projects' Device
# kinds (KubeEdge's devices.devices.kubeedge.io), so ``kubectl get devices`` may pick
# theirs; ``kubectl get efdev`` or ``devices.edgefleet.io`` always means ours.
DEVICE_SHORT_NAMES = ["efdev"]
GROUP_SHORT_NAMES = ["efgroup"]


def definitions() -> dict[str, dict[str, Any]]:
    """File name -> CustomResourceDefinition."""
    age = _column("Age", "date", ".metadata.creationTimestamp")
    synced = _column(
        "Synced",
        "string",
        '.status.conditions[?(@.type=="Synced")].status',
        description="The operator mirrored the resource into the database.",
    )
    device = _definition(
        "Device",
        DEVICES,
        DEVICE_SHORT_NAMES,
        DEVICE_SCHEMA,
        [
            _column("State", "string", ".status.state"),
            _column("Type", "string", ".spec.type"),
            _column("Device ID", "string", ".status.deviceId"),
            _column("CPU%", "number", ".status.metrics.cpuPercent"),
            _column("Memory%", "number", ".status.metrics.memoryUsedPercent"),
            _column("Last Seen", "date", ".status.lastSeen"),
            synced,
            age,
        ],
    )
    group = _definition(
        "DeviceGroup",
        DEVICE_GROUPS,
        GROUP_SHORT_NAMES,
        GROUP_SCHEMA,
        [
            _column("Display Name", "string", ".spec.displayName"),
            _column("Group ID", "string", ".status.groupId"),
            _column("Devices", "integer", ".status.deviceCount"),
            synced,
            age,
        ],
    )
    return {"devices.yaml": device, "devicegroups.yaml": group}


HEADER = "# Generated by `python -m edgefleet.controller.kube.crds` from controller/kube/crds.py.\n"


def render(definition: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(definition, sort_keys=False, width=100)


def write(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, definition in definitions().items():
        (directory / name).write_text(render(definition))


if __name__ == "__main__":
    write(Path(sys.argv[1]))
