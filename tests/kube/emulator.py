"""kmock as the Kubernetes API for edgefleet: the emulator the tests and the
operator benchmark share, the resources it must know, a kubeconfig pointing at it."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import jsonpatch
import kmock
import yaml

from edgefleet.controller.kube.resources import DEVICE_GROUPS, DEVICES, GROUP, VERSION

DEVICE = kmock.resource(GROUP, VERSION, DEVICES)
DEVICE_GROUP = kmock.resource(GROUP, VERSION, DEVICE_GROUPS)
SECRET = kmock.resource("", "v1", "secrets")


@attrs.define
class StampingEmulator(kmock.KubernetesEmulator):
    """kmock plus what an API server stamps on every write: ``uid`` (owner
    references need it), ``resourceVersion`` and ``creationTimestamp``; and a
    create answered ``201 Created``, as the API server does (kubernetes_asyncio
    reads the created object only from a 201); and a JSON-patch whose ``test`` fails
    answered ``422``, as the API server does. kopf tests ``resourceVersion`` when it
    removes a finalizer: given kmock's 500 instead, it retried the same stale patch
    until it gave up, and a Device or DeviceGroup whose status another writer had
    just patched (the group counts) was never deleted.

    kmock matches each request against every request it has seen, which makes a
    thousand writes take a minute; served requests move to ``served`` instead,
    which is what the tests count, and the time each arrived (``time.monotonic()``)
    to ``arrivals``, index for index.
    """

    served: list[kmock.Request] = attrs.field(factory=list, init=False)
    arrivals: list[float] = attrs.field(factory=list, init=False)
    _versions: Any = attrs.field(factory=lambda: itertools.count(1), init=False)

    async def _handle(self, request: kmock.Request) -> Any:
        arrived = time.monotonic()
        if request.resource is not None and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            meta["resourceVersion"] = str(next(self._versions))
            if request.action == kmock.action.CREATE:
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", datetime.now(UTC).isoformat())
        try:
            response = await super()._handle(request)
        except jsonpatch.JsonPatchTestFailed as exc:
            raise kmock.KubernetesError(status=422, reason="Invalid", message=str(exc)) from exc
        finally:
            self._requests.remove(request)
            self.served.append(request)
            self.arrivals.append(arrived)
        if request.action == kmock.action.CREATE and response.status == 200:
            response.set_status(201)
        return response


def declare_resources(emulator: kmock.KubernetesEmulator) -> None:
    """Our resources, and the built-in ones kopf and we touch (kopf waits forever
    without ``v1/namespaces``)."""
    for resource, kind in ((DEVICE, "Device"), (DEVICE_GROUP, "DeviceGroup")):
        emulator.resources[resource] = kmock.ResourceInfo(
            kind=kind,
            namespaced=True,
            verbs={"list", "watch", "get", "create", "patch", "delete"},
            subresources={"status"},
        )
    emulator.resources["v1/secrets"] = kmock.ResourceInfo(
        kind="Secret", namespaced=True, verbs={"get", "list", "watch", "create", "patch", "delete"}
    )
    emulator.resources["v1/events"] = kmock.ResourceInfo(
        kind="Event", namespaced=True, verbs={"create"}
    )
    emulator.resources["v1/namespaces"] = kmock.ResourceInfo(
        kind="Namespace", namespaced=False, verbs={"list", "watch"}
    )


def write_kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": server}}],
                "users": [{"name": "test", "user": {"token": "test-token"}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "test"}}],
                "current-context": "kmock",
            }
        )
    )
    return path


def busiest_second(emulator: StampingEmulator, which: Callable[[kmock.Request], bool]) -> int:
    """The most requests ``which`` picks that arrived within any one second (a
    sliding window over the request log's own clock, not the writers')."""
    times = sorted(t for t, r in zip(emulator.arrivals, emulator.served, strict=True) if which(r))
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def is_status_patch(request: kmock.Request) -> bool:
    return request.method == "PATCH" and request.subresource == "status"
