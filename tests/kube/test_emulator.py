"""The emulator answers as the API server does where kopf's behaviour depends on it."""

from __future__ import annotations

import aiohttp

from tests.kube.conftest import NAMESPACE, device_body
from tests.kube.emulator import StampingEmulator


async def test_a_failed_json_patch_test_is_422_as_from_the_api_server(
    cluster: StampingEmulator,
) -> None:
    """kopf removes finalizers with a JSON patch that first tests resourceVersion;
    on 422 it waits for the next event, on a 5xx it would resend the stale patch."""
    url = f"{cluster.url}/apis/edgefleet.io/v1alpha1/namespaces/{NAMESPACE}/devices"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=device_body("cam-1")) as created:
            assert created.status == 201
        stale = [{"op": "test", "path": "/metadata/resourceVersion", "value": "stale"},
                 {"op": "replace", "path": "/spec/type", "value": "other"}]  # fmt: skip
        headers = {"Content-Type": "application/json-patch+json"}
        async with session.patch(f"{url}/cam-1", json=stale, headers=headers) as refused:
            assert refused.status == 422
            assert (await refused.json())["reason"] == "Invalid"
