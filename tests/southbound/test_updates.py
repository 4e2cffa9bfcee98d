"""The cloud side of software updates (docs/protocol.md section 9) over real sockets:
artifacts downloaded on the device port with a device's credentials (single
``Range`` requests, 206 and 416), only artifacts, from a folder or an S3 object
store; the ``update`` order sent only to devices that listed the extension; on
SQLite and MariaDB."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection

from edgefleet.agent import protocol
from tests.conftest import eventually, s3_store
from tests.southbound.conftest import FAST, Fleet, recv_json, running_fleet

PACKAGE = bytes(range(256)) * 400  # 100 KiB
SIZE = len(PACKAGE)
DIGEST = hashlib.sha256(PACKAGE).hexdigest()


def basic(device: dict[str, Any], password: str | None = None) -> dict[str, str]:
    secret = f"{device['device_id']}:{password or device['password']}".encode()
    return {"Authorization": "Basic " + base64.b64encode(secret).decode()}


async def upload(fleet: Fleet, version: str, body: bytes = PACKAGE, **params: str) -> dict:
    return await fleet.api.upload_artifact("detector", version, body, **params)


async def fetch(fleet: Fleet, headers: dict[str, str], digest: str = DIGEST) -> tuple:
    async with fleet.api.session.get(f"{fleet.http_url}/files/{digest}", headers=headers) as r:
        return r.status, await r.read(), r.headers


@pytest.mark.parametrize(
    ("wanted", "status", "part", "content_range"),
    [
        (None, 200, slice(None), None),
        ("bytes=10-19", 206, slice(10, 20), f"bytes 10-19/{SIZE}"),
        (
            f"bytes={SIZE - 100}-",
            206,
            slice(SIZE - 100, None),
            f"bytes {SIZE - 100}-{SIZE - 1}/{SIZE}",
        ),
        ("bytes=-5", 206, slice(SIZE - 5, None), f"bytes {SIZE - 5}-{SIZE - 1}/{SIZE}"),
        (f"bytes=100-{SIZE * 2}", 206, slice(100, None), f"bytes 100-{SIZE - 1}/{SIZE}"),
        (f"bytes={SIZE}-", 416, slice(0, 0), f"bytes */{SIZE}"),
        ("bytes=20-10", 416, slice(0, 0), f"bytes */{SIZE}"),
        ("bytes=0-1,5-6", 416, slice(0, 0), f"bytes */{SIZE}"),
        ("items=0-1", 416, slice(0, 0), f"bytes */{SIZE}"),
    ],
)
async def test_a_device_downloads_an_artifact_whole_or_one_range(
    fleet: Fleet, wanted: str | None, status: int, part: slice, content_range: str | None
) -> None:
    await upload(fleet, "1.0")
    device = await fleet.register()
    headers = {**basic(device), **({"Range": wanted} if wanted else {})}
    got, body, answer = await fetch(fleet, headers)
    assert got == status
    if status != 416:
        assert body == PACKAGE[part]
        assert answer["ETag"] == f'"{DIGEST}"' and answer["Accept-Ranges"] == "bytes"
    assert answer.get("Content-Range") == content_range


async def test_downloads_need_device_credentials_and_reach_only_artifacts(fleet: Fleet) -> None:
    await upload(fleet, "1.0")
    device = await fleet.register()
    assert (await fetch(fleet, {}))[0] == 401
    assert (await fetch(fleet, basic(device, "not the password")))[0] == 401
    # Another device's upload is in the same store, and no artifact names it.
    other = await fleet.register()
    image = b"\xff\xd8 somebody's photo"
    image_digest = hashlib.sha256(image).hexdigest()
    url = f"{fleet.http_url}/files/{image_digest}"
    async with fleet.api.session.put(url, data=image, headers=basic(other)) as r:
        assert r.status == 201
    async with fleet.api.session.head(url, headers=basic(device)) as r:
        assert r.status == 200  # "the cloud has it" is no secret: the device named it
    status, body, _ = await fetch(fleet, basic(device), image_digest)
    assert (status, body) == (404, b"no artifact has this digest\n")
    ws, answer = await fleet.login(
        device, device_id=device["device_id"], password=device["password"], extensions=["token"]
    )
    bearer = {"Authorization": f"Bearer {answer['data']['token']}", "Range": "bytes=0-3"}
    assert (await fetch(fleet, bearer))[:2] == (206, PACKAGE[:4])
    await ws.close()


async def test_artifacts_stream_from_an_s3_object_store(store: Any, moto_url: str) -> None:
    bucket = await s3_store(moto_url, f"updates-{uuid.uuid4().hex[:12]}")
    try:
        async with running_fleet(store, FAST, files=bucket) as fleet:
            made = await upload(fleet, "1.0")
            s3 = await bucket._s3()
            head = await s3.head_object(Bucket=bucket.bucket, Key=bucket.key(made["sha256"]))
            assert head["ContentLength"] == SIZE
            device = await fleet.register()
            ranged = {**basic(device), "Range": f"bytes={SIZE - 1000}-"}
            assert (await fetch(fleet, ranged))[:2] == (206, PACKAGE[-1000:])
            assert (await fetch(fleet, basic(device)))[:2] == (200, PACKAGE)
    finally:
        await bucket.close()


async def update(fleet: Fleet, device: dict[str, Any], **params: Any) -> Any:
    return await fleet.api.post(
        f"/api/v1/devices/{device['device_id']}/commands",
        {"order": "update", "params": params, "timeout": 2},
    )


async def logged_in(fleet: Fleet, device: dict[str, Any], *extensions: str) -> ClientConnection:
    ws, _ = await fleet.login(
        device,
        device_id=device["device_id"],
        password=device["password"],
        **({"extensions": list(extensions)} if extensions else {}),
    )
    return ws


async def test_a_version_1_device_is_never_sent_an_update(fleet: Fleet) -> None:
    artifact = await upload(fleet, "1.0")
    device = await fleet.register()
    ws = await logged_in(fleet, device)
    answer = await update(fleet, device, artifact_id=artifact["artifact_id"])
    assert answer.failure(409, "DEVICE_UNSUPPORTED") == "Device does not support updates!"
    data_only = await fleet.register()
    ws2 = await logged_in(fleet, data_only, "request_id", "data")
    refused = await update(fleet, data_only, artifact_id=artifact["artifact_id"])
    refused.failure(409, "DEVICE_UNSUPPORTED")
    await ws.close()
    await ws2.close()


async def test_the_update_order_carries_the_artifact_and_its_answer_sets_the_version(
    fleet: Fleet,
) -> None:
    artifact = await upload(fleet, "2.1.0")
    device = await fleet.register()
    ws = await logged_in(fleet, device, "request_id", "update")
    sending = fleet.api.post(
        f"/api/v1/devices/{device['device_id']}/commands",
        {"order": "update", "params": {"artifact_id": artifact["artifact_id"]}, "timeout": 5},
    )
    answer_task = asyncio.ensure_future(sending)
    order = await recv_json(ws)
    assert order["Headers"]["isInner"] is True and order["Headers"]["order_type"] == "update"
    assert order["data"]["artifact"] == {
        "name": "detector",
        "version": "2.1.0",
        "sha256": DIGEST,
        "size": SIZE,
        "url": f"/files/{DIGEST}",
    }
    request_id = order["Headers"]["request_id"]
    await ws.send(
        protocol.command_result("success", "update installed", {"version": "2.1.0"}, request_id)
    )
    answer = await answer_task
    assert answer.data["status"] == "success" and answer.data["data"] == {"version": "2.1.0"}
    await fleet.settled()
    row = (await fleet.api.get(f"/api/v1/devices/{device['device_id']}")).data
    assert row["business_version"] == "2.1.0" and row["business_updated_at"] is not None
    await ws.close()


async def test_bad_update_requests_are_refused_naming_the_problem(fleet: Fleet) -> None:
    device = await fleet.register(type="camera")
    no_artifact = await update(fleet, device)
    assert "params.artifact_id" in no_artifact.failure(400, "GENERAL_ERROR")
    extra = await update(fleet, device, artifact_id="1", url="/elsewhere")
    assert "only artifact_id" in extra.failure(400, "GENERAL_ERROR")
    unknown = await update(fleet, device, artifact_id="12345")
    assert unknown.failure(404, "ARTIFACT_ERROR") == "artifact 12345 not found"
    for_gateways = await upload(fleet, "1.0", types="gateway")
    misfit = await update(fleet, device, artifact_id=for_gateways["artifact_id"])
    message = misfit.failure(409, "DEVICE_UNSUPPORTED")
    expected = f"artifact {for_gateways['artifact_id']} is for device types gateway, not camera"
    assert message == expected
    group = await fleet.api.create_group("line-4")
    await fleet.api.put(f"/api/v1/groups/{group['group_id']}/devices/{device['device_id']}")
    results = await fleet.api.post(
        f"/api/v1/groups/{group['group_id']}/commands",
        {"order": "update", "params": {"artifact_id": for_gateways["artifact_id"]}},
    )
    assert [r["message"] for r in results.data["results"]] == [expected]


async def counted(fleet: Fleet, family: str) -> dict[str, float]:
    """One scrape of the southbound's metrics port: ``family``'s counts by label value."""
    async with fleet.api.session.get(fleet.metrics_url) as response:
        text = await response.text()
    return {
        ",".join(sample.labels.values()): sample.value
        for parsed in text_string_to_metric_families(text)
        if parsed.name == family
        for sample in parsed.samples
        if sample.name.endswith("_total")
    }


async def test_downloads_and_installs_are_counted_on_the_metrics_port(fleet: Fleet) -> None:
    """Whole, resumed, broken and refused downloads, the bytes they moved, and the
    installs' results, as an operator's Prometheus scrapes them."""
    big = bytes(range(256)) * 32768  # 8 MiB: more than the sockets buffer
    artifact = await upload(fleet, "3.0", big)
    digest = artifact["sha256"]
    device = await fleet.register()
    assert (await fetch(fleet, basic(device), digest))[0] == 200
    tail = {**basic(device), "Range": f"bytes={len(big) - 1000}-"}
    assert (await fetch(fleet, tail, digest))[0] == 206
    beyond = {**basic(device), "Range": f"bytes={len(big)}-"}
    assert (await fetch(fleet, beyond, digest))[0] == 416
    url = f"{fleet.http_url}/files/{digest}"
    async with fleet.api.session.get(url, headers=basic(device)) as cut:
        await cut.content.readexactly(65536)
        cut.close()  # the link breaks in the middle

    async def broken_counted() -> dict[str, float] | None:
        ended = await counted(fleet, "edgefleet_artifact_downloads_ended")
        return ended if ended["broken"] == 1 else None

    ended = await eventually(broken_counted)
    assert ended == {"completed": 2, "broken": 1, "refused": 1}
    started = await counted(fleet, "edgefleet_artifact_downloads_started")
    assert started == {"whole": 2, "resumed": 2}
    [moved] = (await counted(fleet, "edgefleet_artifact_download_bytes")).values()
    assert len(big) + 1000 + 65536 <= moved < 2 * len(big) + 1000

    ws = await logged_in(fleet, device, "request_id", "update")
    for outcome, data in (("success", {"version": "3.0"}), ("fail", None)):
        sending = asyncio.ensure_future(update(fleet, device, artifact_id=artifact["artifact_id"]))
        order = await recv_json(ws)
        request_id = order["Headers"]["request_id"]
        await ws.send(protocol.command_result(outcome, outcome, data, request_id))
        await sending
    installs = await counted(fleet, "edgefleet_update_installs")
    assert installs == {"succeeded": 1, "failed": 1, "timed_out": 0}
    await ws.close()
