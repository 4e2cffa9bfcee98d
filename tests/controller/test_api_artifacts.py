"""Software artifacts on the northbound: upload (raw and multipart), list, get,
delete, in the file store and the audit log; on SQLite and MariaDB."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from edgefleet.agent import protocol
from edgefleet.controller.retention import Retention
from edgefleet.controller.store import Attempt, Store
from edgefleet.controller.store.blobs import LocalFileStore
from tests.api_client import ApiClient, running_api
from tests.conftest import API_TOKEN

ARTIFACTS = "/api/v1/artifacts"
PACKAGE = b"detector 2.1.0 " * 5000
DIGEST = hashlib.sha256(PACKAGE).hexdigest()
RAW = {"Content-Type": "application/octet-stream"}
LIMIT = 256 * 1024


@pytest.fixture
async def file_store(tmp_path: Path) -> LocalFileStore:
    return LocalFileStore(tmp_path / "files")


@pytest.fixture
async def artifacts_api(store: Store, file_store: LocalFileStore) -> AsyncIterator[ApiClient]:
    async with running_api(
        store, API_TOKEN, file_store=file_store, max_artifact_bytes=LIMIT
    ) as client:
        yield client


async def upload(
    api: ApiClient, name: str, version: str, body: bytes = PACKAGE, **params: str
) -> dict:
    return await api.upload_artifact(name, version, body, **params)


async def test_an_uploaded_artifact_is_stored_by_digest_listed_read_and_deleted(
    artifacts_api: ApiClient, file_store: LocalFileStore
) -> None:
    made = await upload(artifacts_api, "detector", "2.1.0", types="camera,gateway")
    assert (made["name"], made["version"], made["size"]) == ("detector", "2.1.0", len(PACKAGE))
    assert made["sha256"] == DIGEST and made["types"] == ["camera", "gateway"]
    assert file_store.path(DIGEST).read_bytes() == PACKAGE
    older = await upload(artifacts_api, "detector", "2.0.0", b"older build")
    await upload(artifacts_api, "uploader", "1.0", b"another program")

    listed = (await artifacts_api.get(ARTIFACTS, params={"per_page": 2})).data
    assert listed["total"] == 3 and [a["name"] for a in listed["items"]] == ["uploader", "detector"]
    versions = (await artifacts_api.get(ARTIFACTS, params={"name": "detector"})).data
    assert [a["version"] for a in versions["items"]] == ["2.0.0", "2.1.0"]  # newest first
    one = await artifacts_api.get(f"{ARTIFACTS}/{made['artifact_id']}")
    assert one.data == made

    deleted = await artifacts_api.delete(f"{ARTIFACTS}/{made['artifact_id']}")
    assert deleted.data == {"deleted": True}
    assert not file_store.path(DIGEST).exists()
    (await artifacts_api.get(f"{ARTIFACTS}/{made['artifact_id']}")).failure(404, "ARTIFACT_ERROR")
    again = await artifacts_api.delete(f"{ARTIFACTS}/{made['artifact_id']}")
    again.failure(404, "ARTIFACT_ERROR")
    assert file_store.path(older["sha256"]).exists()

    audit = (
        await artifacts_api.get(
            "/api/v1/audit", params={"target": "artifact:" + made["artifact_id"]}
        )
    ).data
    assert [(e["action"], e["result"]) for e in audit["items"]] == [
        ("delete_artifact", "failure"),  # the second time: not found
        ("delete_artifact", "success"),
        ("upload_artifact", "success"),
    ]
    assert audit["items"][2]["fields"] == ["name", "types", "version"]


async def test_a_multipart_upload_streams_its_file_field(
    artifacts_api: ApiClient, file_store: LocalFileStore
) -> None:
    form = aiohttp.FormData()
    form.add_field("file", PACKAGE, filename="detector.tar", content_type="application/x-tar")
    answer = await artifacts_api.post(
        ARTIFACTS, params={"name": "detector", "version": "3"}, data=form
    )
    assert answer.status == 201, answer.body
    assert answer.data["sha256"] == DIGEST and answer.data["content_type"] == "application/x-tar"
    assert file_store.path(DIGEST).read_bytes() == PACKAGE
    empty = aiohttp.FormData(default_to_multipart=True)
    empty.add_field("note", "no file here")
    refused = await artifacts_api.post(
        ARTIFACTS, params={"name": "detector", "version": "4"}, data=empty
    )
    assert "'file' required" in refused.failure(400, "GENERAL_ERROR")


async def test_bad_uploads_are_refused_naming_the_problem_and_keep_nothing(
    artifacts_api: ApiClient, file_store: LocalFileStore
) -> None:
    no_version = await artifacts_api.post(
        ARTIFACTS, params={"name": "detector"}, data=PACKAGE, headers=RAW
    )
    assert "'version'" in no_version.failure(400, "GENERAL_ERROR")
    bad_types = await artifacts_api.post(
        ARTIFACTS, params={"name": "d", "version": "1", "types": "Camera"}, data=b"x", headers=RAW
    )
    assert "'types'" in bad_types.failure(400, "GENERAL_ERROR")
    as_json = await artifacts_api.post(f"{ARTIFACTS}?name=d&version=1", {"not": "a package"})
    assert "Content-Type" in as_json.failure(400, "GENERAL_ERROR")
    too_big = await artifacts_api.post(
        ARTIFACTS, params={"name": "big", "version": "1"}, data=b"x" * (LIMIT + 1), headers=RAW
    )
    assert f"over {LIMIT} bytes" in too_big.failure(413, "GENERAL_ERROR")
    assert [p for p in file_store.root.rglob("*") if p.is_file()] == []
    assert (await artifacts_api.get(ARTIFACTS)).data["total"] == 0

    await upload(artifacts_api, "detector", "1")
    twice = await artifacts_api.post(
        ARTIFACTS, params={"name": "detector", "version": "1"}, data=b"other", headers=RAW
    )
    assert "already exists" in twice.failure(409, "ARTIFACT_ERROR")


async def test_a_file_still_named_elsewhere_outlives_the_deleted_artifact(
    artifacts_api: ApiClient, store: Store, file_store: LocalFileStore
) -> None:
    """The same bytes as another artifact, or as a device's upload that a record
    names: deleting the artifact leaves the file; the last one to go takes it."""
    first = await upload(artifacts_api, "detector", "1")
    second = await upload(artifacts_api, "detector-copy", "1")
    await artifacts_api.delete(f"{ARTIFACTS}/{first['artifact_id']}")
    assert file_store.path(DIGEST).exists()

    device = await artifacts_api.register()
    raw = {"record_id": "r-1", "kind": "bundle", "at": "2026-01-01T00:00:00Z",
           "payload": {}, "files": [DIGEST]}  # fmt: skip
    attempt = Attempt(int(device["device_id"]), "10.0.0.1", "", "ws")
    await store.records.ingest(int(device["device_id"]), [protocol.read_record(raw)], 0, attempt)
    await artifacts_api.delete(f"{ARTIFACTS}/{second['artifact_id']}")
    assert file_store.path(DIGEST).read_bytes() == PACKAGE
    assert await store.records.file(DIGEST) is not None


async def test_retention_never_takes_the_file_of_an_artifact(
    artifacts_api: ApiClient, store: Store, file_store: LocalFileStore
) -> None:
    await upload(artifacts_api, "detector", "1")
    # A negative retention: the cut-off is tomorrow, so everything counts as old.
    retention = Retention(store, file_store, days=-1, interval=3600)
    assert await retention.run_once() == (0, 0)
    assert file_store.path(DIGEST).exists()


async def test_reading_needs_devices_read_and_writing_artifacts_write_everywhere(
    artifacts_api: ApiClient,
) -> None:
    made = await upload(artifacts_api, "detector", "1")
    viewer = await artifacts_api.user("vera", [{"role": "viewer"}])
    assert (await viewer.get(ARTIFACTS)).data["total"] == 1
    assert (await viewer.get(f"{ARTIFACTS}/{made['artifact_id']}")).status == 200
    refused = await viewer.post(ARTIFACTS, params={"name": "x", "version": "1"}, data=b"x",
                                headers=RAW)  # fmt: skip
    assert "artifacts:write" in refused.failure(403, "AUTH_ERROR")
    group = await artifacts_api.create_group("line-4")
    limited = await artifacts_api.user("lim", [{"role": "operator", "group_id": group["group_id"]}])
    on_group = await limited.delete(f"{ARTIFACTS}/{made['artifact_id']}")
    assert "artifacts:write" in on_group.failure(403, "AUTH_ERROR")
    operator = await artifacts_api.user("olga", [{"role": "operator"}])
    assert (await operator.delete(f"{ARTIFACTS}/{made['artifact_id']}")).status == 200
