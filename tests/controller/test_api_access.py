"""Authorisation in one place: every route declares a permission, every role gets
exactly what it holds, and a caller limited to some groups never sees another
group's device — walked over every operation of the OpenAPI document."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgefleet.agent import protocol
from edgefleet.controller.access.permissions import AUTHENTICATED, BUILTIN_BY_CODE, PERMISSIONS
from edgefleet.controller.store import Attempt, Store
from edgefleet.controller.store.blobs import LocalFileStore
from tests.api_client import ApiClient, running_api
from tests.conftest import API_TOKEN
from tests.controller.access_world import World, operations

DEVICE_PERMISSIONS = {p for p in PERMISSIONS if p not in ("users:admin", "audit:read")}
# Operations a group-limited caller reaches without naming a device or a group in
# the path, and the test below that shows what they let through.
WITHOUT_PATH_IDS = {
    "register_device": "test_registering_and_creating_groups_need_the_permission_everywhere",
    "create_group": "test_registering_and_creating_groups_need_the_permission_everywhere",
    "list_devices": "test_lists_and_counts_hold_only_the_callers_devices",
    "import_devices": "tests/controller/test_api_bulk.py",
    "export_devices": "tests/controller/test_api_bulk.py",
    "list_groups": "test_lists_and_counts_hold_only_the_callers_devices",
    "fleet_stats": "test_lists_and_counts_hold_only_the_callers_devices",
    "event_stream": "tests/controller/test_api_stream.py",
    "list_records": "test_records_and_their_files_of_other_groups_stay_hidden",
    "record_stats": "test_records_and_their_files_of_other_groups_stay_hidden",
    "ingest_log": "test_records_and_their_files_of_other_groups_stay_hidden",
    "get_record": "test_records_and_their_files_of_other_groups_stay_hidden",
    "download_file": "test_records_and_their_files_of_other_groups_stay_hidden",
    # The caller's own images, classified: no device's data in them.
    "check_cache": "tests/controller/test_analysis.py",
    "classify": "tests/controller/test_analysis.py",
    "classify_stats": "tests/controller/test_analysis.py",
    # Software artifacts belong to the installation, not to a group: no device's data.
    "upload_artifact": "tests/controller/test_api_artifacts.py",
    "list_artifacts": "tests/controller/test_api_artifacts.py",
    "get_artifact": "tests/controller/test_api_artifacts.py",
    "delete_artifact": "tests/controller/test_api_artifacts.py",
    # A job lists its devices: a group-limited caller targets, sees and changes only
    # the jobs whose devices are all its own.
    "create_job": "tests/southbound/test_jobs.py",
    "list_jobs": "tests/southbound/test_jobs.py",
    "get_job": "tests/southbound/test_jobs.py",
    "list_job_devices": "tests/southbound/test_jobs.py",
    "pause_job": "tests/southbound/test_jobs.py",
    "resume_job": "tests/southbound/test_jobs.py",
    "cancel_job": "tests/southbound/test_jobs.py",
}


def test_every_operation_declares_a_known_permission_in_the_document() -> None:
    for operation in operations():
        if operation.path.startswith("/api/v1/auth/") and operation.method == "POST":
            assert operation.permission is None, operation  # sign-in and friends are public
        elif operation.path in ("/api/v1/health", "/api/v1/ready"):
            assert operation.permission is None
        else:
            assert operation.permission in {*PERMISSIONS, AUTHENTICATED}, operation


def test_the_document_explains_each_permission() -> None:
    from edgefleet.controller.api.app import openapi_document

    operation = openapi_document()["paths"]["/api/v1/devices/{device_id}"]["get"]
    assert operation["x-permission"] == "devices:read"
    assert "`devices:read`" in operation["description"]
    assert "403" in operation["responses"]


async def test_without_the_permission_every_route_answers_403_naming_it(api: ApiClient) -> None:
    world = await World.build(api)
    nobody = await api.user("nobody", [])
    checked = 0
    for operation in operations():
        if operation.permission in (None, AUTHENTICATED):
            continue
        answer = await world.call(operation, nobody)
        message = answer.failure(403, "AUTH_ERROR")
        assert operation.permission in message, (operation, message)
        checked += 1
    assert checked > 30


@pytest.mark.parametrize("role", ["viewer", "operator"])
async def test_each_built_in_role_gets_exactly_its_permissions(api: ApiClient, role: str) -> None:
    world = await World.build(api)
    caller = await api.user(f"a-{role}", [{"role": role}])
    held = set(BUILTIN_BY_CODE[role].permissions)
    for operation in operations():
        if (
            operation.permission in (None, AUTHENTICATED)
            or operation.operation_id == "event_stream"
        ):
            continue
        answer = await world.call(operation, caller)
        if operation.permission in held:
            assert answer.status != 403, (operation, answer.body)
        else:
            answer.failure(403, "AUTH_ERROR")


async def test_no_route_leaks_a_device_or_group_outside_the_callers_groups(
    api: ApiClient,
) -> None:
    """A caller holding every device permission on group A only: each operation
    naming group B, or device b, answers 404 as if they did not exist, and B and b
    come out unchanged."""
    world = await World.build(api)
    bindings = [{"role": "operator", "group_id": world.group_a}]
    limited = await api.user("limited", bindings)
    before = [
        (await api.get(f"/api/v1/devices/{world.device_b}")).data,
        (await api.get(f"/api/v1/groups/{world.group_b}")).data,
    ]
    covered = set()
    for operation in operations():
        if operation.permission not in DEVICE_PERMISSIONS:
            continue
        names = {part[1:-1] for part in operation.path.split("/") if part.startswith("{")}
        # A record's id, a file's digest, an artifact's or a job's id: no device or
        # group in the path.
        if not names or names <= {"id", "sha256", "artifact_id", "job_id"}:
            assert operation.operation_id in WITHOUT_PATH_IDS, (
                f"{operation}: say which test shows it leaks nothing"
            )
            continue
        outside = [
            {"device_id": world.device_b, "group_id": world.group_b, "command_id": world.command_b}
        ]
        if names == {"group_id", "device_id"}:
            outside += [
                {"group_id": world.group_a, "device_id": world.device_b},
                {"group_id": world.group_b, "device_id": world.device_a},
            ]
        for ids in outside:
            answer = await world.call(
                operation, limited, **{k: v for k, v in ids.items() if k in names}
            )
            assert answer.status == 404, (operation, ids, answer.body)
            assert answer.body["type"] in ("DEVICEOP_ERROR", "GROUPOP_ERROR", "COMMAND_ERROR"), (
                answer.body
            )
        covered.add(operation.operation_id)
    must = {"get_device", "list_device_events", "device_status", "send_device_command"}
    must |= {"send_group_command", "list_group_devices", "list_device_groups"}
    must |= {"get_command", "cancel_command", "list_device_commands", "put_device_config"}
    must |= {"put_group_config", "get_device_config"}
    assert must <= covered
    after = [
        (await api.get(f"/api/v1/devices/{world.device_b}")).data,
        (await api.get(f"/api/v1/groups/{world.group_b}")).data,
    ]
    assert after == before
    assert (await api.get(f"/api/v1/commands/{world.command_b}")).data["state"] == "queued"
    groups_of_b = await api.get(f"/api/v1/devices/{world.device_b}/groups")
    assert [g["group_id"] for g in groups_of_b.data["items"]] == [world.group_b]


async def test_lists_and_counts_hold_only_the_callers_devices(api: ApiClient) -> None:
    world = await World.build(api)
    limited = await api.user("limited", [{"role": "viewer", "group_id": world.group_a}])
    devices = (await limited.get("/api/v1/devices")).data
    assert [d["device_id"] for d in devices["items"]] == [world.device_a]
    assert devices["total"] == 1
    other_group = await limited.get("/api/v1/devices", params={"group": world.group_b})
    assert other_group.data["total"] == 0
    groups = (await limited.get("/api/v1/groups")).data
    assert [g["group_id"] for g in groups["items"]] == [world.group_a]
    stats = (await limited.get("/api/v1/stats")).data
    assert stats["devices"] == 1 and stats["by_state"]["offline"] == 1
    assert (await api.get("/api/v1/stats")).data["devices"] == 2


async def test_an_event_filter_matching_nothing_is_an_empty_page_for_a_limited_user(
    api: ApiClient,
) -> None:
    """The console asks a device's log for the last hour's status uploads: none yet
    is an empty page, as for an administrator; a device outside is still 404."""
    world = await World.build(api)
    limited = await api.user("limited", [{"role": "viewer", "group_id": world.group_a}])
    params = {"event": "status_uploaded"}
    mine = await limited.get(f"/api/v1/devices/{world.device_a}/events", params=params)
    assert (mine.data["items"], mine.data["total"]) == ([], 0)
    other = await limited.get(f"/api/v1/devices/{world.device_b}/events", params=params)
    other.failure(404, "DEVICEOP_ERROR")


async def test_a_device_in_two_groups_shows_only_the_callers_group(api: ApiClient) -> None:
    world = await World.build(api)
    await api.put(f"/api/v1/groups/{world.group_b}/devices/{world.device_a}")
    limited = await api.user("limited", [{"role": "operator", "group_id": world.group_a}])
    path = f"/api/v1/devices/{world.device_a}/groups"
    assert [g["group_id"] for g in (await limited.get(path)).data["items"]] == [world.group_a]
    # Replacing its groups touches only those the caller sees: B stays.
    await limited.put(path, {"group_ids": []})
    assert [g["group_id"] for g in (await api.get(path)).data["items"]] == [world.group_b]
    # ... and the device, now outside A, is outside the caller's reach.
    (await limited.get(f"/api/v1/devices/{world.device_a}")).failure(404, "DEVICEOP_ERROR")


async def test_registering_and_creating_groups_need_the_permission_everywhere(
    api: ApiClient,
) -> None:
    world = await World.build(api)
    limited = await api.user("limited", [{"role": "operator", "group_id": world.group_a}])
    registered = await limited.post(
        "/api/v1/devices", {"name": "x", "hardware_sn": "S", "hardware_model": "M"}
    )
    assert "devices:write on all devices" in registered.failure(403, "AUTH_ERROR")
    created = await limited.post("/api/v1/groups", {"name": "mine"})
    assert "groups:write on all devices" in created.failure(403, "AUTH_ERROR")
    assert (await api.get("/api/v1/devices")).data["total"] == 2


async def test_group_commands_reach_only_the_devices_the_caller_may_command(
    api: ApiClient,
) -> None:
    world = await World.build(api)
    await api.put(f"/api/v1/groups/{world.group_a}/devices/{world.device_b}")
    # Reads everywhere; commands on A only. Group B is visible, but not commandable.
    caller = await api.user(
        "mixed", [{"role": "viewer"}, {"role": "operator", "group_id": world.group_a}]
    )
    results = (
        await caller.post(f"/api/v1/groups/{world.group_a}/commands", {"order": "restart"})
    ).data["results"]
    assert sorted(r["device_id"] for r in results) == sorted([world.device_a, world.device_b])
    other = await caller.post(f"/api/v1/groups/{world.group_b}/commands", {"order": "restart"})
    other.failure(404, "GROUPOP_ERROR")
    assert (await caller.get(f"/api/v1/groups/{world.group_b}")).status == 200


async def test_installation_wide_permissions_do_not_come_from_a_group_binding(
    api: ApiClient,
) -> None:
    world = await World.build(api)
    scoped_admin = await api.user("scoped-admin", [{"role": "admin", "group_id": world.group_a}])
    (await scoped_admin.get("/api/v1/users")).failure(403, "AUTH_ERROR")
    (await scoped_admin.get("/api/v1/audit")).failure(403, "AUTH_ERROR")
    assert (await scoped_admin.get(f"/api/v1/devices/{world.device_a}")).status == 200


async def test_records_and_their_files_of_other_groups_stay_hidden(
    api: ApiClient, store: Store, tmp_path: Path
) -> None:
    """A caller reading the records of group A sees neither device b's records, nor
    a file only device b sent, nor b's upload attempts; counts are A's alone."""
    world = await World.build(api)
    files = LocalFileStore(tmp_path / "files")
    image = b"an image only device b sent"
    digest = hashlib.sha256(image).hexdigest()

    async def body() -> AsyncIterator[bytes]:
        yield image

    await files.put(digest, body(), "image/jpeg", len(image))
    await store.records.add_file(digest, len(image), "image/jpeg")
    attempt = Attempt(None, "10.0.0.1", "", "ws")
    for device, name, names in ((world.device_a, "a-1", []), (world.device_b, "b-1", [digest])):
        raw = {"record_id": name, "kind": "alert", "at": "2025-12-01T09:47:24Z",
               "payload": {}, "files": names}  # fmt: skip
        await store.records.ingest(int(device), [protocol.read_record(raw)], 0, attempt)
    async with running_api(store, API_TOKEN, file_store=files) as admin:
        limited = await admin.user("reader", [{"role": "viewer", "group_id": world.group_a}])
        listed = (await limited.get("/api/v1/records")).data
        assert [r["record_id"] for r in listed["items"]] == ["a-1"]
        everything = (await admin.get("/api/v1/records")).data["items"]
        b_record = next(r for r in everything if r["record_id"] == "b-1")
        hidden = await limited.get(f"/api/v1/records/{b_record['id']}")
        assert hidden.status == 404
        assert (await limited.get(f"/api/v1/files/{digest}")).status == 404
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        async with admin.session.get(
            f"{admin.base_url}/api/v1/files/{digest}", headers=headers
        ) as r:
            assert (r.status, await r.read()) == (200, image)
        assert (await limited.get("/api/v1/records/stats")).data["records"] == 1
        attempts = (await limited.get("/api/v1/ingest-log")).data["items"]
        assert {a["device_id"] for a in attempts} == {world.device_a}
