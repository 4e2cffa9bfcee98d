"""A live command's history, written beside its round trip (SQLite and MariaDB):
the row's INSERT overlaps the trip to the device and the result is committed just
after the answer, yet whoever reads the history after the answer reads the result."""

from __future__ import annotations

import asyncio
from typing import Any

from edgefleet.agent import protocol
from edgefleet.controller.store import Store
from tests.southbound.conftest import Fleet, nothing_comes
from tests.southbound.test_server import answer_orders

AUDIT = "/api/v1/audit"
REFUSE_HISTORY = {
    "sqlite": "CREATE TRIGGER refuse_history BEFORE INSERT ON commands "
    "BEGIN SELECT RAISE(ABORT, 'history refused'); END",
    "mysql": "CREATE TRIGGER refuse_history BEFORE INSERT ON commands FOR EACH ROW "
    "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'history refused'",
}


def commands_of(device: dict[str, Any]) -> str:
    return f"/api/v1/devices/{device['device_id']}/commands"


async def audit_of(fleet: Fleet, request_id: str) -> list[dict[str, Any]]:
    items = (await fleet.api.get(AUDIT, params={"per_page": 500})).data["items"]
    return [item for item in items if item["request_id"] == request_id]


async def test_every_answered_command_reads_back_with_its_result(fleet: Fleet) -> None:
    device = await fleet.register()
    ws, _ = await fleet.login(device)
    statuses = ["success", "fail", "success"]

    def reply(frame: dict[str, Any]) -> str:
        n = frame["data"]["params"]["n"]
        return protocol.command_result(statuses[n], f"answer {n}", {"n": n})

    answering = asyncio.create_task(answer_orders(ws, reply))
    states = []
    for n in range(len(statuses)):
        answer = await fleet.api.post(
            commands_of(device), {"order": "snapshot", "params": {"n": n}},
            headers={"X-Request-ID": f"history-{n}"},
        )  # fmt: skip
        assert answer.data["status"] == statuses[n]
        # Read at once: the result's commit follows the answer, never contradicts it.
        command = (await fleet.api.get(f"/api/v1/commands/{answer.data['command_id']}")).data
        assert command["result"] == {"status": statuses[n], "message": f"answer {n}",
                                     "data": {"n": n}}  # fmt: skip
        states.append(command["state"])
        [entry] = await audit_of(fleet, f"history-{n}")
        assert entry["result"] == ("success" if statuses[n] == "success" else "failure")
        assert "history:not_written" not in entry["fields"]
    assert states == ["succeeded", "failed", "succeeded"]
    listed = (await fleet.api.get(commands_of(device))).data["items"]
    assert [c["state"] for c in listed] == ["succeeded", "failed", "succeeded"]
    await ws.close()
    await answering


async def test_a_group_commands_results_read_back_at_once(fleet: Fleet) -> None:
    group = await fleet.api.create_group("gates")
    devices = [await fleet.register() for _ in range(3)]
    for device in devices:
        await fleet.api.put(f"/api/v1/groups/{group['group_id']}/devices/{device['device_id']}")
    sockets = [(await fleet.login(device))[0] for device in devices]
    answering = [
        asyncio.create_task(answer_orders(ws, lambda _: protocol.command_result("success", "ok")))
        for ws in sockets
    ]
    answer = await fleet.api.post(
        f"/api/v1/groups/{group['group_id']}/commands", {"order": "snapshot"}
    )
    for result in answer.data["results"]:
        assert result["status"] == "success"
        command = (await fleet.api.get(f"/api/v1/commands/{result['command_id']}")).data
        assert command["state"] == "succeeded"
    for ws in sockets:
        await ws.close()
    await asyncio.gather(*answering)


async def test_a_command_whose_history_row_is_refused_is_answered_and_audited(
    fleet: Fleet, store: Store
) -> None:
    device = await fleet.register()
    ws, _ = await fleet.login(device)
    seen = []

    def reply(frame: dict[str, Any]) -> str:
        seen.append(frame["Headers"]["order_type"])
        return protocol.command_result("success", "done")

    answering = asyncio.create_task(answer_orders(ws, reply))
    async with store.db.begin() as connection:
        await connection.exec_driver_sql(REFUSE_HISTORY[store.db.engine.dialect.name])
    try:
        answer = await fleet.api.post(
            commands_of(device), {"order": "snapshot"}, headers={"X-Request-ID": "no-history"}
        )
    finally:
        async with store.db.begin() as connection:
            await connection.exec_driver_sql("DROP TRIGGER refuse_history")
    assert answer.status == 200
    assert (answer.data["status"], answer.data["command_id"]) == ("success", None)
    assert seen == ["snapshot"]  # the device had it all the same
    assert (await fleet.api.get(commands_of(device))).data["total"] == 0
    [entry] = await audit_of(fleet, "no-history")
    assert entry["result"] == "success"
    assert sorted(entry["fields"]) == ["history:not_written", "order:snapshot"]
    await ws.close()
    await answering


async def test_nothing_is_sent_to_a_device_out_of_scope_or_unknown(fleet: Fleet) -> None:
    group = await fleet.api.create_group("mine")
    mine, other = await fleet.register(), await fleet.register()
    await fleet.api.put(f"/api/v1/groups/{group['group_id']}/devices/{mine['device_id']}")
    caller = await fleet.api.user("op", [{"role": "operator", "group_id": group["group_id"]}])
    ws, _ = await fleet.login(other)
    outside = await caller.post(commands_of(other), {"order": "snapshot"})
    outside.failure(404, "DEVICEOP_ERROR")
    unknown = await fleet.api.post(commands_of({"device_id": "123456789"}), {"order": "snapshot"})
    unknown.failure(404, "DEVICEOP_ERROR")
    assert await nothing_comes(ws)
    assert (await fleet.api.get(commands_of(other))).data["total"] == 0
    await ws.close()
