"""Records, files and the ingest log on the northbound, and retention; on SQLite
and MariaDB."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from edgefleet.agent import protocol
from edgefleet.controller.retention import Retention
from edgefleet.controller.store import Attempt, Store
from edgefleet.controller.store.blobs import LocalFileStore
from edgefleet.controller.store.database import utcnow
from edgefleet.controller.store.schema import files as files_table
from edgefleet.controller.store.schema import records as records_table
from tests.api_client import ApiClient, running_api
from tests.conftest import API_TOKEN

IMAGE = bytes(range(256)) * 10
DIGEST = hashlib.sha256(IMAGE).hexdigest()
WS = Attempt(None, "10.0.0.7", "", "ws")


def record(record_id: str, kind: str = "alert", files: tuple[str, ...] = ()) -> protocol.Record:
    raw = {"record_id": record_id, "kind": kind, "at": "2025-12-01T09:47:24Z",
           "payload": {"n": 1}, "files": list(files)}  # fmt: skip
    return protocol.read_record(raw)


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
async def file_store(tmp_path: Path) -> LocalFileStore:
    return LocalFileStore(tmp_path / "files")


@pytest.fixture
async def data_api(store: Store, file_store: LocalFileStore) -> AsyncIterator[ApiClient]:
    async with running_api(store, API_TOKEN, file_store=file_store) as client:
        yield client


async def upload_image(store: Store, file_store: LocalFileStore) -> None:
    await file_store.put(DIGEST, chunks(IMAGE), "image/jpeg", len(IMAGE))
    await store.records.add_file(DIGEST, len(IMAGE), "image/jpeg")


async def seed(store: Store, file_store: LocalFileStore) -> tuple[dict, dict]:
    camera = await store.devices.create(device_row(1, "SN1"))
    sensor = await store.devices.create(device_row(2, "SN2"))
    await store.records.ingest(1, [record("a-1", files=(DIGEST,)), record("a-2")], 0, WS)
    await upload_image(store, file_store)
    await store.records.ingest(1, [record("a-2"), record("a-3", files=(DIGEST,))], 2, WS)
    await store.records.ingest(2, [record("c-1", kind="count")], 0, WS)
    return camera, sensor


def device_row(device_id: int, sn: str) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "name": f"dev-{device_id}",
        "type": "camera",
        "hardware_sn": sn,
        "hardware_model": "M",
        "secret": "x" * 60,
    }


async def test_records_newest_first_filtered_and_one_with_its_files(
    data_api: ApiClient, store: Store, file_store: LocalFileStore
) -> None:
    await seed(store, file_store)
    everything = (await data_api.get("/api/v1/records")).data
    # Newest first: a-1 and a-2 came in one batch, in that order.
    assert [r["record_id"] for r in everything["items"]] == ["c-1", "a-3", "a-2", "a-1"]
    assert everything["total"] == 4
    alerts = await data_api.get("/api/v1/records", params={"device_id": "1", "kind": "alert"})
    assert {r["record_id"] for r in alerts.data["items"]} == {"a-1", "a-2", "a-3"}
    counts = await data_api.get("/api/v1/records", params={"kind": "count", "status": "received"})
    assert [r["record_id"] for r in counts.data["items"]] == ["c-1"]
    group = await data_api.create_group("line-4")
    await data_api.put(f"/api/v1/groups/{group['group_id']}/devices/2")
    in_group = await data_api.get("/api/v1/records", params={"group_id": group["group_id"]})
    assert [r["record_id"] for r in in_group.data["items"]] == ["c-1"]
    future = await data_api.get("/api/v1/records", params={"since": "2099-01-01T00:00:00Z"})
    assert future.data["total"] == 0

    first = next(r for r in everything["items"] if r["record_id"] == "a-1")
    assert first["files"] == [DIGEST] and first["device_id"] == "1"
    assert first["at"] == "2025-12-01T09:47:24.000000Z"
    detail = (await data_api.get(f"/api/v1/records/{first['id']}")).data
    assert detail["files"] == [
        {
            "sha256": DIGEST,
            "present": True,
            "size": len(IMAGE),
            "content_type": "image/jpeg",
            "url": f"/api/v1/files/{DIGEST}",
            "classification": None,
        }
    ]
    assert detail["analysis"] is None and detail["payload"] == {"n": 1}
    missing = await data_api.get("/api/v1/records/1234")
    missing.failure(404, "RECORD_ERROR")


async def test_stats_count_by_kind_status_and_day_and_what_deduplication_saved(
    data_api: ApiClient, store: Store, file_store: LocalFileStore
) -> None:
    await seed(store, file_store)
    stats = (await data_api.get("/api/v1/records/stats")).data
    assert stats["records"] == 4
    assert stats["by_kind"] == {"alert": 3, "count": 1}
    assert stats["by_status"] == {"received": 4}
    assert list(stats["by_day"].values()) == [4]
    [(hour, count)] = stats["by_hour"].items()
    assert count == 4 and hour.startswith(next(iter(stats["by_day"])) + "T") and len(hour) == 13
    assert stats["devices"] == 2
    assert stats["duplicates_avoided"] == 1  # a-2, sent twice
    assert (stats["files"], stats["file_bytes"]) == (1, len(IMAGE))
    assert stats["bytes_not_resent"] == len(IMAGE)  # two records, one upload
    assert stats["bytes"] == 4 * len(b'{"n":1}')


async def test_a_file_downloads_with_its_type_etag_and_ranges(
    data_api: ApiClient, store: Store, file_store: LocalFileStore
) -> None:
    await upload_image(store, file_store)
    url = f"{data_api.base_url}/api/v1/files/{DIGEST}"
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    async with data_api.session.get(url, headers=auth) as r:
        assert r.status == 200 and await r.read() == IMAGE
        assert r.headers["Content-Type"] == "image/jpeg"
        assert r.headers["ETag"] == f'"{DIGEST}"'
    async with data_api.session.get(url, headers={**auth, "Range": "bytes=10-19"}) as r:
        assert r.status == 206 and await r.read() == IMAGE[10:20]
        assert r.headers["Content-Range"] == f"bytes 10-19/{len(IMAGE)}"
    async with data_api.session.get(url, headers={**auth, "Range": "bytes=-5"}) as r:
        assert r.status == 206 and await r.read() == IMAGE[-5:]
    async with data_api.session.get(url, headers={**auth, "Range": "bytes=99999-"}) as r:
        assert r.status == 416
    async with data_api.session.get(url, headers={**auth, "If-None-Match": f'"{DIGEST}"'}) as r:
        assert r.status == 304
    async with data_api.session.get(url) as r:
        assert r.status == 401
    (await data_api.get(f"/api/v1/files/{'0' * 64}")).failure(404, "RECORD_ERROR")
    (await data_api.get("/api/v1/files/nope")).failure(400, "GENERAL_ERROR")


async def test_the_ingest_log_lists_every_attempt(
    data_api: ApiClient, store: Store, file_store: LocalFileStore
) -> None:
    await seed(store, file_store)
    await store.records.log_attempt(
        Attempt(None, "10.0.0.9", "curl/8", "http"), "refused", "password Not Correct"
    )
    log = (await data_api.get("/api/v1/ingest-log")).data
    assert log["total"] == 4
    assert log["items"][0]["status"] == "refused" and log["items"][0]["device_id"] is None
    of_one = (await data_api.get("/api/v1/ingest-log", params={"device_id": "1"})).data
    assert [(i["accepted"], i["duplicates"], i["rejected"]) for i in of_one["items"]] == [
        (1, 1, 2),
        (2, 0, 0),
    ]
    refused = (await data_api.get("/api/v1/ingest-log", params={"status": "refused"})).data
    assert refused["total"] == 1 and refused["items"][0]["user_agent"] == "curl/8"


async def test_retention_deletes_old_records_then_their_unreferenced_files(
    store: Store, file_store: LocalFileStore
) -> None:
    await seed(store, file_store)
    long_ago = utcnow() - timedelta(days=100)
    async with store.db.begin() as connection:
        await connection.execute(
            update(records_table)
            .where(records_table.c.record_id.in_(["a-1", "a-2"]))
            .values(received_at=long_ago)
        )
    retention = Retention(store, file_store, days=90, interval=3600)
    assert await retention.run_once() == (2, 0)  # a-3 still names the image
    async with store.db.begin() as connection:
        await connection.execute(update(records_table).values(received_at=long_ago))
    assert await retention.run_once() == (2, 0)  # released now: kept for the retention time
    async with store.db.begin() as connection:
        await connection.execute(update(files_table).values(released_at=long_ago))
    assert await retention.run_once() == (0, 1)
    assert await store.records.file(DIGEST) is None
    assert not file_store.path(DIGEST).exists()
