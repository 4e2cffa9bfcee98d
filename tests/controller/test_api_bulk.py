"""Bulk import and export of devices over real HTTP, on SQLite and MariaDB."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import bcrypt

from edgefleet.controller.store import Store
from tests.api_client import ApiClient
from tests.controller.test_api_devices import stored_secret
from tests.controller.test_api_labels import limited_to_one_of_two

IMPORT = "/api/v1/devices/import"
EXPORT = "/api/v1/devices/export"
CSV_HEADERS = {"Content-Type": "text/csv"}
JSONL_HEADERS = {"Content-Type": "application/x-ndjson"}


async def post_file(api: ApiClient, text: str, headers: dict[str, str]) -> Any:
    return await api.request("POST", IMPORT, data=text.encode(), headers=headers)


async def export(api: ApiClient, **params: str) -> tuple[str, str]:
    """The body and the media type of an export."""
    url = f"{api.base_url}{EXPORT}"
    headers = {"Authorization": f"Bearer {api.token}"}
    async with api.session.get(url, params=params, headers=headers) as response:
        assert response.status == 200, await response.text()
        return await response.text(), response.content_type


async def test_an_import_registers_the_good_rows_and_explains_the_bad(
    api: ApiClient, store: Store
) -> None:
    taken = await api.register(hardware_sn="SN-TAKEN", hardware_model="M1")
    group = await api.create_group("chengdu", selector="site=chengdu")
    text = (
        "name,type,hardware_sn,hardware_model,labels,disabled,password\n"
        'cam-1,camera,SN-1,M1,"site=chengdu,tier=edge",false,\n'
        "cam-2,camera,SN-2,M1,,true,correct horse battery\n"
        "cam-3,camera,SN-3,M1,bad label=x,,\n"
        "cam-4,Big Cam,SN-4,M1,,,\n"
        "cam-5,camera,SN-TAKEN,M1,,,\n"
        "cam-6,camera,SN-1,M1,,,\n"
        ",camera,SN-7,M1,,,\n"
        "cam-8,camera,SN-8,M1,,maybe,\n"
    )
    answer = await post_file(api, text, CSV_HEADERS)
    assert answer.status == 200, answer.body
    data = answer.data
    assert (data["rows"], data["registered"], data["failed"]) == (8, 2, 6)
    results = {r["row"]: r for r in data["results"]}
    assert [r["status"] for r in data["results"]] == ["registered"] * 2 + ["failed"] * 6
    assert "label key 'bad label'" in results[3]["message"]
    assert results[4]["message"].startswith("row 4 field 'type'")
    assert "already exists" in results[5]["message"]
    assert results[6]["message"] == "the same hardware_sn and hardware_model as row 1"
    assert results[7]["message"].startswith("row 7 field 'name'")
    assert results[8]["message"] == "row 8: disabled must be true or false, not 'maybe'"
    assert all(
        r["device_id"] is None and r["password"] is None
        for r in results.values()
        if r["status"] == "failed"
    )

    first = (await api.get(f"/api/v1/devices/{results[1]['device_id']}")).data
    assert first["labels"] == {"site": "chengdu", "tier": "edge"} and first["disabled"] is False
    second = (await api.get(f"/api/v1/devices/{results[2]['device_id']}")).data
    assert second["disabled"] is True
    assert results[2]["password"] == "correct horse battery"
    for row in (1, 2):  # the password in the answer is the one that works
        secret = await stored_secret(store, results[row]["device_id"])
        assert bcrypt.checkpw(results[row]["password"].encode(), secret.encode())
    # The imported device joined the dynamic group its labels match.
    members = await api.get(f"/api/v1/groups/{group['group_id']}/devices")
    assert [d["device_id"] for d in members.data["items"]] == [results[1]["device_id"]]
    assert (await api.get("/api/v1/devices")).data["total"] == 3
    audit = await api.get("/api/v1/audit", params={"action": "import_devices"})
    assert sorted(e["target_id"] for e in audit.data["items"]) == sorted(
        [results[1]["device_id"], results[2]["device_id"]]
    )
    assert taken["device_id"] not in {r["device_id"] for r in data["results"]}


async def test_json_lines_import_row_by_row(api: ApiClient) -> None:
    lines = [
        json.dumps({"name": "a", "hardware_sn": "J1", "hardware_model": "M", "labels": {"x": "1"}}),
        "",
        "{not json",
        json.dumps(["a list"]),
        json.dumps({"name": "b", "hardware_sn": "J2", "hardware_model": "M", "colour": "red"}),
    ]
    body = "\n".join(lines).encode() + b'\n{"name": "\xff"}\n'
    answer = await api.request("POST", IMPORT, data=body, headers=JSONL_HEADERS)
    results = answer.data["results"]
    assert [r["status"] for r in results] == ["registered"] + ["failed"] * 4
    assert results[1]["message"].startswith("row 2: invalid JSON")
    assert results[2]["message"] == "row 3: must be a JSON object"
    assert results[3]["message"] == "row 4 field 'colour': unknown field"
    assert results[4]["message"] == "row 5: not UTF-8 text (byte 10)"
    device = await api.get(f"/api/v1/devices/{results[0]['device_id']}")
    assert device.data["labels"] == {"x": "1"}


async def test_a_file_that_is_not_a_device_list_is_refused_whole(api: ApiClient) -> None:
    unknown = await post_file(api, "name,hardware_sn,hardware_model,colour\n", CSV_HEADERS)
    assert unknown.failure(400, "GENERAL_ERROR") == "body: unknown CSV column 'colour'"
    missing = await post_file(api, "name,hardware_sn\nx,y\n", CSV_HEADERS)
    assert "no column 'hardware_model'" in missing.failure(400, "GENERAL_ERROR")
    wrong = await post_file(api, "name\n", {"Content-Type": "text/plain"})
    assert "Content-Type must be text/csv" in wrong.failure(400, "GENERAL_ERROR")
    binary = await api.request("POST", IMPORT, data=b"name\n\xff\xfe", headers=CSV_HEADERS)
    assert "not UTF-8" in binary.failure(400, "GENERAL_ERROR")
    assert (await api.get("/api/v1/devices")).data["total"] == 0


async def test_an_export_streams_every_matching_device_without_secrets(api: ApiClient) -> None:
    """More devices than one page of the export, so it spans several reads."""
    rows = ["name,hardware_sn,hardware_model,labels"]
    rows += [f"cam-{i},SN-{i:05},M,tier={'edge' if i % 3 else 'core'}" for i in range(2100)]
    imported = await post_file(api, "\n".join(rows), CSV_HEADERS)
    assert imported.data["registered"] == 2100

    body, media = await export(api)
    assert media == "text/csv"
    exported = list(csv.DictReader(io.StringIO(body)))
    assert len(exported) == 2100
    assert len({row["device_id"] for row in exported}) == 2100
    assert "secret" not in exported[0] and "password" not in exported[0]
    assert exported[0]["labels"] == "tier=core" and exported[0]["disabled"] == "false"

    body, media = await export(api, format="jsonl", selector="tier=core")
    assert media == "application/x-ndjson"
    lines = [json.loads(line) for line in body.splitlines()]
    assert len(lines) == 700
    assert all(line["labels"] == {"tier": "core"} for line in lines)
    assert not any("secret" in line or "password" in line for line in lines)

    # The export imports as it is: every row now finds its hardware taken.
    body, _ = await export(api, selector="tier=core")
    again = await post_file(api, body, CSV_HEADERS)
    assert again.data["failed"] == 700
    assert "already exists" in again.data["results"][0]["message"]


async def test_bulk_follows_the_callers_groups(api: ApiClient) -> None:
    limited, mine = await limited_to_one_of_two(api, "operator")
    body, _ = await export(limited, format="jsonl", selector="site=chengdu")
    assert [json.loads(line)["device_id"] for line in body.splitlines()] == [mine]
    refused = await post_file(limited, "name,hardware_sn,hardware_model\nx,S9,M\n", CSV_HEADERS)
    assert "devices:write on all devices" in refused.failure(403, "AUTH_ERROR")
    audit = await api.get("/api/v1/audit", params={"action": "import_devices"})
    assert [e["result"] for e in audit.data["items"]] == ["failure"]
    assert (await api.get("/api/v1/devices")).data["total"] == 2
