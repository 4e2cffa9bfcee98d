"""Data from devices over real sockets (section 7): batches over the WebSocket,
files and records over HTTP on the device port, the railway server's upload; on
SQLite and MariaDB."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from edgefleet.agent import protocol
from edgefleet.controller.store.schema import ingest_log, records
from tests.conftest import s3_store
from tests.southbound.conftest import FAST, Fleet, ping, recv_json, running_fleet

AT = "2025-12-01T09:47:24Z"
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40


def record(record_id: str, **fields: Any) -> dict[str, Any]:
    return {"record_id": record_id, "kind": "alert", "at": AT, "payload": {"n": 1}, **fields}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def data_device(fleet: Fleet) -> tuple[dict[str, Any], Any, str]:
    """A device that lists ``data``, logged in: (device, socket, its token)."""
    device = await fleet.register()
    ws, answer = await fleet.login(
        device,
        device_id=device["device_id"],
        password=device["password"],
        extensions=["data", "request_id", "token"],
    )
    return device, ws, answer["data"]["token"]


async def stored(fleet: Fleet, device: dict[str, Any]) -> list[str]:
    async with fleet.store.db.read() as connection:
        rows = await connection.execute(
            select(records.c.record_id)
            .where(records.c.device_id == int(device["device_id"]))
            .order_by(records.c.record_id)
        )
        return list(rows.scalars())


async def test_a_batch_stores_good_records_once_and_rejects_the_malformed(fleet: Fleet) -> None:
    device, ws, _ = await data_device(fleet)
    image = sha(JPEG)
    await ws.send(protocol.upload_data([record("r-1", files=[image]), record("r-2")], "b-1"))
    first = await recv_json(ws)
    assert first["type"] == "upload_data_result"
    assert first["Headers"] == {"request_id": "b-1"}
    assert first["status"] == "success"
    assert first["data"] == {
        "accepted": ["r-1", "r-2"],
        "duplicates": [],
        "rejected": [],
        "missing_files": [image],
    }
    batch = [
        record("r-2"),
        record("r-3"),
        record("bad-kind", kind="Not A Kind"),
        record("bad-at", at="yesterday"),
        record("bad-payload", payload=[1, 2]),
        {"kind": "alert"},
    ]
    await ws.send(protocol.upload_data(batch, "b-2"))
    second = (await recv_json(ws))["data"]
    assert second["accepted"] == ["r-3"]
    assert second["duplicates"] == ["r-2"]
    assert [r["record_id"] for r in second["rejected"]] == ["bad-kind", "bad-at", "bad-payload", ""]
    assert "kind" in second["rejected"][0]["message"]
    assert await stored(fleet, device) == ["r-1", "r-2", "r-3"]
    await ws.send(ping())  # the session lives on
    assert (await recv_json(ws))["data"] == "pong"
    await ws.close()


async def test_record_ids_are_compared_exactly_and_odd_records_are_rejected(
    fleet: Fleet,
) -> None:
    """MySQL's default collation would take R-1 for r-1; a year-1 time or a record too
    big for one frame is rejected, never an error the device waits on for ever."""
    device, ws, _ = await data_device(fleet)
    batch = [
        record("r-1"),
        record("R-1"),
        record("r-1 "),
        record("year-1", at="0001-01-01T00:00:00Z"),
        record("too-big", payload={"blob": "x" * (protocol.MAX_RECORD_BYTES + 1)}),
    ]
    async with fleet.api.session.post(
        f"{fleet.http_url}/records", data=json.dumps({"records": batch}), headers=basic(device)
    ) as r:
        answer = await r.json()
    assert answer["accepted"] == ["r-1", "R-1"]
    assert [r["record_id"] for r in answer["rejected"]] == ["r-1 ", "year-1", "too-big"]
    assert await stored(fleet, device) == sorted(["r-1", "R-1"])
    await ws.close()


async def test_a_resend_after_a_dropped_answer_stores_nothing_twice(fleet: Fleet) -> None:
    device, ws, token = await data_device(fleet)
    batch = [record(f"r-{i}") for i in range(20)]
    await ws.send(protocol.upload_data(batch, "b-1"))
    await ws.close()  # the answer is lost with the connection
    ws, _ = await fleet.login(
        device, device_id=device["device_id"], token=token, extensions=["data"]
    )

    async def all_stored() -> bool:
        return len(await stored(fleet, device)) == 20

    from tests.conftest import eventually

    await eventually(all_stored)
    await ws.send(protocol.upload_data(batch, "b-1"))
    answer = (await recv_json(ws))["data"]
    assert answer["accepted"] == [] and len(answer["duplicates"]) == 20
    assert len(await stored(fleet, device)) == 20
    await ws.close()


async def test_a_version_1_device_gets_no_data_frames_and_its_batch_is_ignored(
    fleet: Fleet,
) -> None:
    device = await fleet.register()
    ws, _ = await fleet.login(device)
    await ws.send(protocol.upload_data([record("r-1")]))
    await ws.send(ping())
    assert (await recv_json(ws))["type"] == "ping_pong"  # no upload_data_result before it
    assert await stored(fleet, device) == []
    await ws.close()


async def test_with_the_database_away_a_batch_fails_busy_and_the_session_stays(
    fleet: Fleet,
) -> None:
    _, ws, _ = await data_device(fleet)
    fleet.store.db.outage = "test: database away"
    try:
        await ws.send(protocol.upload_data([record("r-1")], "b-1"))
        answer = await recv_json(ws)
    finally:
        fleet.store.db.outage = None
    assert answer["status"] == "fail"
    assert answer["Headers"] == {"request_id": "b-1", "message": "server busy"}
    await ws.send(protocol.upload_data([record("r-1")], "b-2"))
    assert (await recv_json(ws))["data"]["accepted"] == ["r-1"]
    await ws.close()


def basic(device: dict[str, Any], password: str | None = None) -> dict[str, str]:
    secret = f"{device['device_id']}:{password or device['password']}".encode()
    return {"Authorization": "Basic " + base64.b64encode(secret).decode()}


async def test_files_check_first_then_put_with_token_or_basic(fleet: Fleet) -> None:
    device, ws, token = await data_device(fleet)
    bearer = {"Authorization": f"Bearer {token}"}
    url = f"{fleet.http_url}/files/{sha(JPEG)}"
    session = fleet.api.session
    async with session.head(url, headers=bearer) as r:
        assert r.status == 404
    headers = {**bearer, "Content-Type": "image/jpeg"}
    async with session.put(url, data=JPEG, headers=headers) as r:
        assert r.status == 201
    async with session.head(url, headers=basic(device)) as r:
        assert r.status == 200
    async with session.put(url, data=JPEG, headers=basic(device)) as r:
        assert r.status == 200  # already there
    row = await fleet.store.records.file(sha(JPEG))
    assert row is not None and (row["size"], row["content_type"]) == (len(JPEG), "image/jpeg")
    # A record naming it now finds it: nothing is missing.
    await ws.send(protocol.upload_data([record("r-1", files=[sha(JPEG)])]))
    assert (await recv_json(ws))["data"]["missing_files"] == []
    await ws.close()


async def test_files_refuse_a_wrong_digest_a_too_big_body_and_bad_credentials(
    fleet: Fleet,
) -> None:
    device, ws, token = await data_device(fleet)
    session = fleet.api.session
    bearer = {"Authorization": f"Bearer {token}"}
    other = b"not the bytes the digest names"
    async with session.put(f"{fleet.http_url}/files/{sha(JPEG)}", data=other, headers=bearer) as r:
        assert r.status == 400
    assert await fleet.store.records.file(sha(JPEG)) is None
    big = b"x" * (protocol.MAX_FILE_BYTES + 1)
    async with session.put(f"{fleet.http_url}/files/{sha(big)}", data=big, headers=bearer) as r:
        assert r.status == 413
    assert await fleet.store.records.file(sha(big)) is None

    async def streamed():  # no Content-Length: the limit is enforced while streaming
        for _ in range(11):
            yield b"y" * (1024 * 1024)

    async with session.put(
        f"{fleet.http_url}/files/{'0' * 64}", data=streamed(), headers=bearer
    ) as r:
        assert r.status == 413
    url = f"{fleet.http_url}/files/{sha(JPEG)}"
    for headers in (
        {},
        basic(device, "wrong-password-123"),
        {"Authorization": "Bearer 1.1.1.forged"},
        {"Authorization": f"Bearer {token}x"},
    ):
        async with session.put(url, data=JPEG, headers=headers) as r:
            assert r.status == 401, headers
        async with session.head(url, headers=headers) as r:
            assert r.status == 401, headers
    async with session.head(f"{fleet.http_url}/files/NOTADIGEST", headers=bearer) as r:
        assert r.status == 400
    await fleet.settled()
    async with fleet.store.db.read() as connection:
        refused = await connection.scalar(
            select(func.count()).where(ingest_log.c.status == "refused")
        )
    assert refused >= 4
    await ws.close()


async def test_post_records_is_the_batch_for_devices_without_a_session(fleet: Fleet) -> None:
    device = await fleet.register()
    body = {"records": [record("h-1"), record("h-2"), record("h-bad", payload="x")]}
    async with fleet.api.session.post(
        f"{fleet.http_url}/records",
        data=json.dumps(body),
        headers={**basic(device), "User-Agent": "sensor/2.0"},
    ) as r:
        assert r.status == 200
        answer = await r.json()
    assert answer["accepted"] == ["h-1", "h-2"]
    assert answer["rejected"][0]["record_id"] == "h-bad"
    async with fleet.store.db.read() as connection:
        row = (
            await connection.execute(
                select(ingest_log).where(ingest_log.c.device_id == int(device["device_id"]))
            )
        ).one()
    assert (row.transport, row.accepted, row.rejected, row.user_agent) == (
        "http",
        2,
        1,
        "sensor/2.0",
    )
    assert row.source_ip == "127.0.0.1"


@pytest.mark.parametrize("timestamp", ["2025-12-01T09:47:24Z", 1764582444])
async def test_the_railway_clients_exact_request_and_answer(fleet: Fleet, timestamp: Any) -> None:
    device = await fleet.register()
    body = {
        "timestamp": timestamp,
        "data": {"id": "det-20251201-0001", "vehicle": "truck", "confidence": 0.95},
        "metadata": {"source": "Camera-07", "version": "1.2"},
    }
    url = f"{fleet.http_url}/api/v1/data/upload"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=body, headers=basic(device)) as r:
            assert r.status == 200
            answer = await r.json()
        assert set(answer) == {"success", "message", "data_id", "received_at"}
        assert answer["success"] is True and answer["data_id"] == "det-20251201-0001"
        assert protocol.parse_rfc3339(answer["received_at"]) is not None
        async with session.post(url, json=body, headers=basic(device)) as r:
            again = await r.json()
        assert again["success"] is True and again["message"] == "Data already received"
        async with session.post(url, json={"data": {}}, headers=basic(device)) as r:
            assert r.status == 400
            assert (await r.json())["success"] is False
        async with session.post(url, json=body) as r:
            assert r.status == 401
            assert (await r.json())["success"] is False
    async with fleet.store.db.read() as connection:
        row = (
            await connection.execute(
                select(records).where(records.c.device_id == int(device["device_id"]))
            )
        ).one()
    assert (row.record_id, row.kind) == ("det-20251201-0001", "camera-07")
    assert row.payload == body


async def test_files_go_to_an_s3_object_store_and_download_from_it(
    store: Any, moto_url: str
) -> None:
    """The object-store path end to end: PUT on the device port into moto's S3
    server through aiobotocore, then the northbound download with a Range."""
    bucket = await s3_store(moto_url, f"fleet-{uuid.uuid4().hex[:12]}")
    try:
        async with running_fleet(store, FAST, files=bucket) as fleet:
            _, ws, token = await data_device(fleet)
            url = f"{fleet.http_url}/files/{sha(JPEG)}"
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"}
            async with fleet.api.session.put(url, data=JPEG, headers=headers) as r:
                assert r.status == 201
            async with fleet.api.session.put(url, data=JPEG[:-1], headers=headers) as r:
                assert r.status == 200  # already there: the body is not even read
            s3 = await bucket._s3()
            head = await s3.head_object(Bucket=bucket.bucket, Key=bucket.key(sha(JPEG)))
            assert head["ContentLength"] == len(JPEG)
            async with fleet.api.session.get(
                f"{fleet.api.base_url}/api/v1/files/{sha(JPEG)}",
                headers={"Range": "bytes=4-9", "Authorization": f"Bearer {fleet.api.token}"},
            ) as r:
                assert (r.status, await r.read()) == (206, JPEG[4:10])
                assert r.headers["Content-Type"] == "image/jpeg"
            await ws.close()
    finally:
        await bucket.close()


async def test_concurrent_batches_are_stored_together_each_answered_on_its_own(
    fleet: Fleet,
) -> None:
    """Batches that wait are stored in one transaction; each still gets its own
    answer and ingest-log row, and an id sent in two batches at once is stored once."""
    devices = [await fleet.register() for _ in range(4)]

    async def post(device: dict[str, Any], ids: list[str]) -> dict[str, Any]:
        body = json.dumps({"records": [record(i) for i in ids]})
        url = f"{fleet.http_url}/records"
        async with fleet.api.session.post(url, data=body, headers=basic(device)) as r:
            assert r.status == 200
            return await r.json()

    for device in devices:  # the credentials are checked (and remembered) once
        await post(device, [])
    jobs = [
        post(d, [f"b{n}-{i}" for i in range(20)] + ["shared"]) for d in devices for n in range(5)
    ]
    answers = await asyncio.gather(*jobs)
    for device_index, device in enumerate(devices):
        mine = answers[device_index * 5 : device_index * 5 + 5]
        assert sum(a["accepted"].count("shared") for a in mine) == 1
        assert sum(a["duplicates"].count("shared") for a in mine) == 4
        assert all(len(a["accepted"]) >= 20 for a in mine)
        assert len(await stored(fleet, device)) == 5 * 20 + 1
    async with fleet.store.db.read() as connection:
        rows = await connection.scalar(select(func.count()).where(ingest_log.c.transport == "http"))
    assert rows == 4 + 20
