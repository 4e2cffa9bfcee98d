"""Versions of desired configuration documents, at the store: the one place that
assigns them."""

from __future__ import annotations

import pytest

from edgefleet.controller.store import Store
from edgefleet.controller.store.errors import VersionMismatch
from tests.controller.store.test_sessions import make_devices


async def test_a_write_whose_document_is_already_in_force_takes_no_version_whatever_if_match(
    store: Store,
) -> None:
    """In Kubernetes mode the service writes the resource, and the operator may
    apply it before the service's own write lands: that write, conditional on the
    version read before, must find its document in force and succeed without a
    version, not fail against the version the operator took."""
    [device_id] = await make_devices(store, 1)
    first = await store.configs.set_device(device_id, lambda _: {"fps": 5}, None)
    assert first.changed and first.row["version"] == 1
    echo = await store.configs.set_device(device_id, lambda _: {"fps": 15}, 1)  # the operator
    assert echo.changed and echo.row["version"] == 2

    late = await store.configs.set_device(device_id, lambda _: {"fps": 15}, 1)
    assert not late.changed and late.row["version"] == 2
    with pytest.raises(VersionMismatch):  # a stale version that would change it
        await store.configs.set_device(device_id, lambda _: {"fps": 30}, 1)
    assert (await store.configs.device(device_id))["desired"] == {"fps": 15}
