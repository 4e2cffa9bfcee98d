"""The JSON Schemas in docs/schemas: made from agent/protocol.py, and true to it.

Three ways the published contract could drift from the code, each a test: the
checked-in schemas are not what the declarations make now; a frame the code
builds does not match its schema; an example in docs/protocol.md does not.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from edgefleet.agent import protocol, status
from scripts.protocol_schemas import SCHEMAS, schemas

DOC = SCHEMAS.parent / "protocol.md"
DEVICE_ID = "1790001234567890"


def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_the_checked_in_schemas_are_the_ones_the_declarations_make() -> None:
    """Out of date? ``make schemas`` writes them again."""
    made = schemas()
    checked_in = {path.name: path.read_text() for path in SCHEMAS.glob("*.json")}
    assert checked_in == made
    assert set(made) == {f"{name}.json" for name in protocol.WIRE_FRAMES}


def built_frames() -> list[tuple[str, str]]:
    """(schema, frame) for every frame the code builds, in each of its forms."""
    full_status = protocol.StatusReport(
        cpu_times=(4112.78, 923.85, 179258.0, 120.6),
        total_memory_mb=1673,
        free_memory_mb=91,
        buff_cache_mb=258,
        root_total_size_mb=39942,
        root_used_size_mb=10509,
        root_used_percent=27.6,
    )
    return [
        ("login", protocol.Login(device_id=DEVICE_ID, password="pw").encode()),
        ("login", protocol.Login(device_sn="SN1", device_model="M1", password="pw").encode()),
        ("login", protocol.Login(device_id=DEVICE_ID, token="t.o.k").encode()),
        ("login_success", protocol.login_success(DEVICE_ID)),
        (
            "login_success",
            protocol.login_success(
                DEVICE_ID,
                token="t",
                token_expires_at="2026-12-06T10:00:00Z",
                heartbeat_interval=5.0,
                status_interval=15.0,
            ),
        ),
        *(("login_failure", protocol.login_failure(message)) for message in login_messages()),
        ("ping", protocol.ping()),
        ("pong", protocol.pong()),
        ("status_upload", protocol.status_upload(DEVICE_ID, full_status.payload())),
        ("status_upload", protocol.status_upload(DEVICE_ID, status.collect())),  # the agent's
        (
            "status_upload",
            protocol.status_upload(DEVICE_ID, {**status.collect(), "extra": {"t": 41.5}}),
        ),
        ("status_response", protocol.status_response()),
        ("order", protocol.order(DEVICE_ID, "restart")),
        ("order", protocol.order(DEVICE_ID, "upload_log", {"remote_dir": "/logs"}, "r-1")),
        ("order", protocol.order(DEVICE_ID, "set_exposure", {"value": 3}, "r-2")),
        ("order", protocol.order(DEVICE_ID, "reboot_camera")),
        ("order", protocol.order(DEVICE_ID, "update", {"artifact": ARTIFACT}, "u-9")),
        (
            "command_result",
            protocol.command_result("success", "update installed", {"version": "2.1.0"}, "u-9"),
        ),
        ("command_result", protocol.command_result("success", protocol.MSG_ORDER_DONE)),
        ("command_result", protocol.command_result("success", protocol.RESTART_WAIT_MESSAGE)),
        (
            "command_result",
            protocol.command_result("fail", protocol.UNKNOWN_ORDER_MESSAGE, None, "r-2"),
        ),
        ("command_result", protocol.command_result("success", protocol.MSG_ORDER_DONE, [1, "x"])),
        ("restart_confirm", protocol.restart_confirm()),
        (
            "login",
            protocol.Login(
                device_id=DEVICE_ID, password="pw", extensions=frozenset({"data", "token"})
            ).encode(),
        ),
        ("upload_data", protocol.upload_data([RECORD.wire()], "r-17")),
        ("upload_data", protocol.upload_data([{**RECORD.wire(), "files": []}])),
        (
            "upload_data_result",
            protocol.upload_data_result(
                protocol.data_answer(["a"], ["b"], [("c", "kind must be …")], ["d" * 64]), "r-17"
            ),
        ),
        (
            "upload_data_result",
            protocol.upload_data_result(protocol.data_answer(), None, protocol.DATA_BUSY_MESSAGE),
        ),
        ("config_update", protocol.config_update(7, {"exposure": 30}, "c-3")),
        ("config_report", protocol.config_report(7, {"exposure": 30}, None, "c-3")),
        ("config_report", protocol.config_report(6, {"exposure": 20}, "exposure out of range")),
        ("config_report", protocol.config_report(None, {})),
    ]


ARTIFACT = protocol.UpdateArtifact(
    name="detector", version="2.1.0", sha256="a" * 64, size=18874368, url="/files/" + "a" * 64
)
RECORD = protocol.Record(
    "det-1", "alert", datetime(2025, 12, 1, 9, 47, 24), {"vehicle": "truck"}, ("a" * 64,)
)


def login_messages() -> list[str]:
    """The ``MSG_*`` constants a login failure carries (all but the command ones)."""
    command_messages = {protocol.MSG_ORDER_DONE, protocol.MSG_UPLOAD_FAILED}
    return [
        value
        for name, value in vars(protocol).items()
        if name.startswith("MSG_") and value not in command_messages
    ]


@pytest.mark.parametrize(("name", "frame"), built_frames())
def test_every_frame_the_code_builds_matches_its_schema(name: str, frame: str) -> None:
    errors = [e.message for e in validator(name).iter_errors(json.loads(frame))]
    assert errors == []


def test_every_frame_is_built_by_the_code() -> None:
    assert {name for name, _ in built_frames()} == set(protocol.WIRE_FRAMES)


@pytest.mark.parametrize(
    ("name", "frame"),
    [
        ("ping", {"type": "ping_pong", "Headers": {}, "data": "pong"}),
        ("login", {"device_id": DEVICE_ID}),
        ("login_failure", {"status": "fail", "message": "no such message"}),
        (
            "status_upload",
            {"type": "upload_status_info", "Headers": {}, "data": {"device_id": "1"}},
        ),
        (
            "command_result",
            {
                "type": "upload_instruction_result",
                "status": "done",
                "Headers": {"message": ""},
                "data": {},
            },
        ),
    ],
)
def test_the_schemas_refuse_what_the_protocol_does_not_say(name: str, frame: Any) -> None:
    assert not validator(name).is_valid(frame)


def doc_examples() -> list[tuple[str, str]]:
    """Every ```json <frame> block of docs/protocol.md."""
    text = DOC.read_text()
    return [(m[1], m[2]) for m in re.finditer(r"^ *```json (\w+)\n(.*?)^ *```$", text, re.M | re.S)]


@pytest.mark.parametrize(("name", "example"), doc_examples())
def test_every_example_in_the_protocol_document_matches_its_schema(name: str, example: str) -> None:
    errors = [e.message for e in validator(name).iter_errors(json.loads(example))]
    assert errors == []


def test_the_protocol_document_shows_every_frame_timing_and_message() -> None:
    text = DOC.read_text()
    assert {name for name, _ in doc_examples()} == set(protocol.WIRE_FRAMES)
    for name in protocol.WIRE_FRAMES:
        assert f"(schemas/{name}.json)" in text, name
    messages = [
        *login_messages(),
        protocol.MSG_ORDER_DONE,
        protocol.MSG_UPLOAD_FAILED,
        protocol.RESTART_WAIT_MESSAGE,
        protocol.UNKNOWN_ORDER_MESSAGE,
        protocol.DEFAULT_REMOTE_DIR,
        protocol.DATA_BUSY_MESSAGE,
        *protocol.CommandRefused.MESSAGES.values(),
    ]
    for message in messages:
        assert f"`{message}`" in text, message
    timings = {
        "LOGIN_TIMEOUT": "s", "HEARTBEAT_INTERVAL": "s", "ANSWER_TIMEOUT": "s",
        "STATUS_INTERVAL": "s", "HEARTBEAT_TOLERANCE": "s",
        "HEARTBEAT_TOLERANCE_AFTER_FAILURE": "s", "MAX_FAILURES": "", "RECONNECT_DELAY": "s",
        "COMMAND_TIMEOUT": "s", "RESTART_WAIT": "s", "MAX_FRAMES_PER_SECOND": "",
        "MAX_FRAME_BYTES": "",
    }  # fmt: skip
    for name, unit in timings.items():
        value = f"{getattr(protocol, name):g} {unit}".strip()
        assert f"| `{name}` | {value} |" in text, name
