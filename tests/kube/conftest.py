"""The Kubernetes API emulated by kmock over real HTTP, and the operator or the
status writer running against it in this event loop."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import kmock
import pytest
import yaml

from controller.device_link import NoDeviceLink
from controller.ids import SnowflakeGenerator
from controller.kube.client import KubeClient
from controller.kube.operator import Reconciler, running_operator
from controller.kube.resources import API_VERSION, DEVICE_GROUPS, DEVICES, GROUP, VERSION
from controller.store import Store

NAMESPACE = "fleet"
DEVICE = kmock.resource(GROUP, VERSION, DEVICES)
DEVICE_GROUP = kmock.resource(GROUP, VERSION, DEVICE_GROUPS)
SECRET = kmock.resource("", "v1", "secrets")


@attrs.define
class StampingEmulator(kmock.KubernetesEmulator):
    """kmock plus what an API server stamps on every write: ``uid`` (owner
    references need it), ``resourceVersion`` and ``creationTimestamp``; and a
    create answered ``201 Created``, as the API server does (kubernetes_asyncio
    reads the created object only from a 201).

    kmock matches each request against every request it has seen, which makes a
    thousand writes take a minute; served requests move to ``served`` instead,
    which is what the tests count.
    """

    served: list[kmock.Request] = attrs.field(factory=list, init=False)
    _versions: Any = attrs.field(factory=lambda: itertools.count(1), init=False)

    async def _handle(self, request: kmock.Request) -> Any:
        if request.resource is not None and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            meta["resourceVersion"] = str(next(self._versions))
            if request.action == kmock.action.CREATE:
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", datetime.now(UTC).isoformat())
        try:
            response = await super()._handle(request)
        finally:
            self._requests.remove(request)
            self.served.append(request)
        if request.action == kmock.action.CREATE and response.status == 200:
            response.set_status(201)
        return response


@pytest.fixture
def kmock_options(kmock_options: dict[str, Any]) -> dict[str, Any]:
    return {**kmock_options, "cls": StampingEmulator}


@pytest.fixture
def cluster(kmock: kmock.KubernetesEmulator) -> kmock.KubernetesEmulator:
    """kmock knowing our resources, and the built-in ones kopf and we touch."""
    for resource, kind in ((DEVICE, "Device"), (DEVICE_GROUP, "DeviceGroup")):
        kmock.resources[resource] = kmock.ResourceInfo(
            kind=kind,
            namespaced=True,
            verbs={"list", "watch", "get", "create", "patch", "delete"},
            subresources={"status"},
        )
    kmock.resources["v1/secrets"] = kmock.ResourceInfo(
        kind="Secret", namespaced=True, verbs={"get", "list", "watch", "create", "patch", "delete"}
    )
    kmock.resources["v1/events"] = kmock.ResourceInfo(
        kind="Event", namespaced=True, verbs={"create"}
    )
    kmock.resources["v1/namespaces"] = kmock.ResourceInfo(
        kind="Namespace", namespaced=False, verbs={"list", "watch"}
    )
    return kmock


@pytest.fixture
def kubeconfig(cluster: kmock.KubernetesEmulator, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": str(cluster.url)}}],
                "users": [{"name": "test", "user": {"token": "test-token"}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "test"}}],
                "current-context": "kmock",
            }
        )
    )
    return path


@pytest.fixture
async def kube(kubeconfig: Path) -> AsyncIterator[KubeClient]:
    client = await KubeClient.connect(str(kubeconfig), NAMESPACE)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def ids() -> SnowflakeGenerator:
    return SnowflakeGenerator(7)


@pytest.fixture
async def operator(
    sqlite_store: Store, kube: KubeClient, ids: SnowflakeGenerator
) -> AsyncIterator[Reconciler]:
    reconciler = Reconciler(
        sqlite_store, kube, NoDeviceLink(), ids, bcrypt_rounds=4, missing_group_retry=0.2
    )
    async with running_operator(reconciler, NAMESPACE):
        yield reconciler


def device_body(name: str, groups: list[str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Device",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "displayName": spec.pop("displayName", f"Camera {name}"),
            "type": "camera",
            "hardware": {"sn": f"SN-{name}", "model": "ModelB"},
            "groups": groups or [],
            **spec,
        },
    }


def group_body(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "DeviceGroup",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }


def requests_to(cluster: kmock.KubernetesEmulator, resource: Any, method: str) -> list[Any]:
    return [
        r
        for r in cluster.served
        if r.resource == resource and r.method == kmock.method(method.upper())
    ]
