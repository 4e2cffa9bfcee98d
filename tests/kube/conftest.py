"""The Kubernetes API emulated by kmock over real HTTP, and the operator or the
status writer running against it in this event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edgefleet.controller.device_link import NoDeviceLink
from edgefleet.controller.ids import SnowflakeGenerator
from edgefleet.controller.kube.client import KubeClient
from edgefleet.controller.kube.group_counts import GroupCounts
from edgefleet.controller.kube.mirror import KubeMirror
from edgefleet.controller.kube.operator import Reconciler, running_operator
from edgefleet.controller.kube.resources import API_VERSION
from edgefleet.controller.store import Store
from tests.api_client import ApiClient, running_api
from tests.kube.emulator import (  # noqa: F401 — re-exported for the tests here
    DEVICE,
    DEVICE_GROUP,
    SECRET,
    StampingEmulator,
    declare_resources,
    write_kubeconfig,
)

NAMESPACE = "fleet"


@pytest.fixture
def kmock_options(kmock_options: dict[str, Any]) -> dict[str, Any]:
    return {**kmock_options, "cls": StampingEmulator}


@pytest.fixture
def cluster(kmock: StampingEmulator) -> StampingEmulator:
    """kmock knowing our resources, and the built-in ones kopf and we touch."""
    declare_resources(kmock)
    return kmock


@pytest.fixture
def kubeconfig(cluster: StampingEmulator, tmp_path: Path) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", str(cluster.url))


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
    counts = GroupCounts(sqlite_store, kube, pause=0.05)
    reconciler = Reconciler(
        sqlite_store, kube, NoDeviceLink(), ids, 4, missing_group_retry=0.2, counts=counts
    )
    counting = asyncio.create_task(counts.run())
    try:
        async with running_operator(reconciler, NAMESPACE):
            yield reconciler
    finally:
        counting.cancel()
        await asyncio.gather(counting, return_exceptions=True)


@pytest.fixture
async def api(
    kube: KubeClient, operator: Reconciler, sqlite_store: Store
) -> AsyncIterator[ApiClient]:
    """The REST API in Kubernetes mode: writes go to the resources first, and the
    operator's group counts hear of the memberships they change (as in serve)."""
    mirror = KubeMirror(kube, sqlite_store, operator.counts)
    async with running_api(sqlite_store, "t", mirror=mirror) as client:
        yield client


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


def requests_to(cluster: StampingEmulator, resource: Any, method: str) -> list[Any]:
    return [r for r in cluster.served if r.resource == resource and r.method == method.upper()]
