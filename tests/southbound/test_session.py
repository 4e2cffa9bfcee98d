"""The protocol rules of PROTOCOL.md, driven through the sans-I/O session with a
fake clock: no sockets, no sleeps, the real timings."""

from __future__ import annotations

import json

import pytest

from edgefleet.agent import protocol
from edgefleet.agent.protocol import CommandRefused, CommandResult
from edgefleet.southbound.session import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_SUPERSEDED,
    CommandFinished,
    ConfigReported,
    DataReceived,
    DeviceSession,
    FrameIgnored,
    HeartbeatAnswered,
    LoggedIn,
    LoginFailed,
    LoginRequested,
    SessionClosed,
    State,
    StateChanged,
    StatusReceived,
    StatusRejected,
    Timings,
)
from edgefleet.southbound.utilisation import Utilisation

DEVICE = "1790001234567890"
PING = json.dumps({"type": "ping_pong", "Headers": {}, "data": "ping"})


def sent(session: DeviceSession) -> list[dict]:
    return [json.loads(frame) for frame in session.data_to_send()]


def online_session(now: float = 0.0) -> DeviceSession:
    session = DeviceSession(Timings(), now)
    session.receive(json.dumps({"device_id": DEVICE, "password": "pw"}), now)
    session.login_accepted(DEVICE, now, frozenset())
    session.data_to_send()
    session.events_received()
    return session


def status(device_id: str = DEVICE) -> str:
    return protocol.status_upload(
        device_id,
        {"CPU_info": {}, "Memory_info": {}, "Disk_info": {}, "dev_state": "online"},
    )


def result(status: str, message: str, request_id: str | None = None) -> str:
    return protocol.command_result(status, message, request_id=request_id)


# --- login ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        {"device_id": DEVICE, "password": "pw"},
        {"device_sn": "SN123", "device_model": "ModelB", "password": "pw"},
        {"device_id": DEVICE, "token": "t"},
    ],
)
def test_a_valid_login_frame_is_handed_over_for_checking(frame: dict) -> None:
    session = DeviceSession(Timings(), 0.0)
    session.receive(json.dumps(frame), 1.0)
    (event,) = session.events_received()
    assert isinstance(event, LoginRequested)
    assert event.login.device_id == frame.get("device_id")
    assert session.state is State.AUTHENTICATING
    assert session.data_to_send() == []
    assert session.next_deadline() is None  # checking takes what it takes


def test_accepted_login_answers_success_and_goes_online() -> None:
    session = DeviceSession(Timings(), 0.0)
    session.receive(json.dumps({"device_id": DEVICE, "password": "pw"}), 0.5)
    session.events_received()
    session.login_accepted(DEVICE, 0.6, frozenset(), token="tok")
    assert sent(session) == [{"status": "success", "data": {"device_id": DEVICE, "token": "tok"}}]
    assert session.events_received() == [LoggedIn(DEVICE)]
    assert session.state is State.ONLINE
    assert session.next_deadline() == pytest.approx(0.6 + 7.5)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("{not json", protocol.MSG_NOT_JSON),
        (b'{"device_id": "1", "password": "pw"}', protocol.MSG_NOT_JSON),
        ('["device_id"]', protocol.MSG_NOT_JSON),
        (json.dumps({"device_id": DEVICE}), protocol.MSG_NO_SECRET),
        (json.dumps({"password": "pw"}), protocol.MSG_NO_IDENTITY),
        (json.dumps({"device_sn": "SN", "password": "pw"}), protocol.MSG_NO_IDENTITY),
        (
            json.dumps({"device_sn": "SN", "device_model": "M", "token": "t"}),
            protocol.MSG_NO_IDENTITY,
        ),
    ],
)
def test_malformed_login_fails_with_its_own_message_and_closes_1008(
    frame: str | bytes, message: str
) -> None:
    session = DeviceSession(Timings(), 0.0)
    session.receive(frame, 0.1)
    assert sent(session) == [{"status": "fail", "message": message}]
    events = session.events_received()
    assert events[0] == LoginFailed(message, None)
    assert events[-1] == SessionClosed("login_failed", CLOSE_POLICY, message)
    assert session.closed and session.close_code == CLOSE_POLICY


@pytest.mark.parametrize(
    "message",
    [
        protocol.MSG_UNKNOWN_DEVICE,
        protocol.MSG_WRONG_PASSWORD,
        protocol.MSG_BAD_TOKEN,
        protocol.MSG_DISABLED,
    ],
)
def test_refused_login_tells_the_device_why_and_closes_1008(message: str) -> None:
    session = DeviceSession(Timings(), 0.0)
    session.receive(json.dumps({"device_id": DEVICE, "password": "pw"}), 0.1)
    (requested,) = session.events_received()
    session.login_refused(message, requested.login)
    assert sent(session) == [{"status": "fail", "message": message}]
    assert session.close_code == CLOSE_POLICY and session.close_reason == message


def test_no_login_frame_within_5_seconds_closes() -> None:
    session = DeviceSession(Timings(), 10.0)
    assert session.next_deadline() == 15.0
    session.tick(14.99)
    assert not session.closed
    session.tick(15.0)
    assert sent(session) == [{"status": "fail", "message": protocol.MSG_LOGIN_TIMEOUT}]
    assert session.events_received()[-1].cause == "login_failed"
    assert session.close_code == CLOSE_POLICY


# --- heartbeat --------------------------------------------------------------------


def test_ping_gets_pong() -> None:
    session = online_session()
    session.receive(PING, 4.0)
    assert sent(session) == [{"type": "ping_pong", "Headers": {}, "data": "pong"}]
    assert session.events_received() == [HeartbeatAnswered()]


def test_silent_device_goes_unknown_then_offline_on_the_protocol_schedule() -> None:
    session = online_session(0.0)
    session.tick(7.49)
    assert session.state is State.ONLINE
    session.tick(7.5)  # 7.5 s of silence with no failures yet
    assert session.state is State.UNKNOWN
    assert session.events_received() == [StateChanged(State.UNKNOWN, 1)]
    assert session.next_deadline() == pytest.approx(13.0)  # then 5.5 s
    session.tick(12.99)
    assert session.failures == 1
    session.tick(13.0)
    assert session.failures == 2 and session.state is State.UNKNOWN
    assert session.events_received() == []  # still unknown: no new transition
    session.tick(18.5)
    assert session.closed
    assert session.events_received() == [
        SessionClosed("heartbeat_timeout", CLOSE_GOING_AWAY, "heartbeat timeout")
    ]


def test_a_late_tick_counts_every_missed_window() -> None:
    session = online_session(0.0)
    session.tick(30.0)  # the adapter was slow: 7.5, 13 and 18.5 all passed
    assert session.closed
    assert session.events_received()[-1].cause == "heartbeat_timeout"


def test_any_frame_brings_an_unknown_device_back_online_and_resets_failures() -> None:
    session = online_session(0.0)
    session.tick(13.0)
    assert session.failures == 2
    session.events_received()
    session.receive("garbage", 14.0)  # even a frame to ignore is a sign of life
    assert session.state is State.ONLINE and session.failures == 0
    assert StateChanged(State.ONLINE) in session.events_received()
    assert session.next_deadline() == pytest.approx(14.0 + 7.5)


def test_status_upload_replaces_a_heartbeat() -> None:
    session = online_session(0.0)
    session.receive(status(), 7.0)
    session.tick(14.4)
    assert session.state is State.ONLINE


# --- status -----------------------------------------------------------------------


def test_status_upload_is_answered_and_reported() -> None:
    session = online_session()
    session.receive(status(), 3.0)
    assert sent(session) == [{"type": "send_statusInfo_response", "Headers": {}, "data": {}}]
    (event,) = session.events_received()
    assert isinstance(event, StatusReceived) and event.data["device_id"] == DEVICE


def test_cpu_utilisation_comes_from_two_uploads_and_hostile_numbers_are_dropped() -> None:
    session = online_session()

    def upload(busy: float, idle: float, free_memory: object) -> Utilisation:
        cpu = {"user_cpu_time": busy, "system_cpu_time": 0, "idle_cpu_time": idle,
               "io_wait_cpu_time": 0}  # fmt: skip
        memory = {"total_memory_mb": 1000, "free_memory_mb": free_memory, "buff_cache_mb": 0}
        session.receive(protocol.status_upload(DEVICE, {"CPU_info": cpu, "Memory_info": memory}), 3)
        (event,) = [e for e in session.events_received() if isinstance(e, StatusReceived)]
        return event.utilisation

    first = upload(busy=100, idle=900, free_memory=400)
    assert (first.cpu_percent, first.memory_used_percent) == (None, 60.0)
    second = upload(busy=130, idle=970, free_memory=-5)  # a negative reading is no reading
    assert (second.cpu_percent, second.memory_used_percent) == (30.0, None)
    third = upload(busy=130, idle=970, free_memory=2**60)
    assert third.memory_used_percent is None  # beyond any device's memory


def test_status_of_another_device_is_rejected_not_answered() -> None:
    session = online_session()
    session.receive(status("999"), 3.0)
    assert session.data_to_send() == []
    assert session.events_received() == [StatusRejected("foreign_device_id")]


# --- bad input --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("{nope", "invalid_json"),
        ("[1, 2]", "not_an_object"),
        ('{"data": "ping"}', "no_type"),
        (b'{"type": "ping_pong", "Headers": {}, "data": "ping"}', "binary"),
        ('{"type": "from_the_future", "Headers": {}, "data": {}}', "unknown_type"),
        (result("success", "x"), "unexpected_result"),
    ],
)
def test_bad_frames_are_ignored_and_counted(frame: str | bytes, reason: str) -> None:
    session = online_session()
    session.receive(frame, 1.0)
    assert session.data_to_send() == []
    assert session.events_received() == [FrameIgnored(reason)]
    assert session.state is State.ONLINE


def test_frame_flood_is_throttled_then_disconnected() -> None:
    session = online_session()
    for i in range(20):
        session.receive(PING, 1.0 + i * 0.01)
    assert len(session.data_to_send()) == 20
    session.events_received()
    session.receive(PING, 1.5)
    assert session.data_to_send() == []
    assert session.events_received() == [FrameIgnored("rate_limited")]
    for _ in range(20):
        session.receive(PING, 1.6)
    assert session.closed and session.close_code == CLOSE_POLICY
    assert session.events_received()[-1].cause == "rate_limited"


# --- commands ---------------------------------------------------------------------


def test_command_round_trip_for_a_version_1_device() -> None:
    session = online_session()
    first = session.send_command("set_exposure", {"value": 3}, 10.0, 1.0)
    (frame,) = sent(session)
    assert frame == {
        "type": "give_order",
        "Headers": {"isInner": False, "order_type": "set_exposure", "request_id": str(first)},
        "data": {"device_id": DEVICE, "params": {"value": 3}},
    }
    with pytest.raises(CommandRefused, match="Device busy!"):
        session.send_command("other", {}, 10.0, 1.1)
    session.receive(result("success", "successfully exec order."), 2.0)  # no request_id
    assert session.events_received() == [
        CommandFinished(first, CommandResult("success", "successfully exec order.", {}))
    ]
    session.send_command("other", {}, 10.0, 2.1)  # free again


def test_devices_echoing_request_ids_take_several_commands() -> None:
    session = online_session()
    first = session.send_command("a", {}, 10.0, 1.0)
    session.receive(result("success", "ok", request_id=str(first)), 1.5)
    session.events_received()
    second = session.send_command("b", {}, 10.0, 2.0)
    third = session.send_command("c", {}, 10.0, 2.0)
    session.receive(result("fail", "boom", request_id=str(third)), 2.5)
    session.receive(result("success", "fine", request_id=str(second)), 2.6)
    assert session.events_received() == [
        CommandFinished(third, CommandResult("fail", "boom", {})),
        CommandFinished(second, CommandResult("success", "fine", {})),
    ]


def test_unanswered_command_times_out_at_its_deadline() -> None:
    session = online_session()
    command = session.send_command("slow", {}, 2.0, 1.0)
    assert session.next_deadline() == pytest.approx(3.0)
    session.receive(PING, 2.9)
    session.tick(2.9)
    assert [e for e in session.events_received() if isinstance(e, CommandFinished)] == []
    session.tick(3.0)
    assert session.events_received() == [
        CommandFinished(command, CommandResult("timeout", "command timed out"))
    ]


def test_commands_to_unknown_or_closed_sessions_are_refused() -> None:
    session = online_session()
    session.tick(7.5)
    with pytest.raises(CommandRefused, match="Device state is Unknown!"):
        session.send_command("x", {}, 10.0, 7.6)
    session.close("superseded", CLOSE_SUPERSEDED, "superseded")
    with pytest.raises(CommandRefused, match="Device is offline!"):
        session.send_command("x", {}, 10.0, 7.7)


def test_restart_handshake_confirms_and_reports_success() -> None:
    session = online_session()
    command = session.send_command("restart", {}, 10.0, 1.0)
    (order,) = sent(session)
    assert order["Headers"]["isInner"] is True and "params" not in order["data"]
    session.receive(result("success", protocol.RESTART_WAIT_MESSAGE), 1.2)
    assert sent(session) == [{"type": "restart_confirm", "Headers": {}, "data": {}}]
    assert session.events_received() == [
        CommandFinished(command, CommandResult("success", "restart confirmed"))
    ]


def test_restart_refused_by_the_device_fails() -> None:
    session = online_session()
    command = session.send_command("restart", {}, 10.0, 1.0)
    session.data_to_send()
    session.receive(result("fail", "busy recording"), 1.2)
    assert session.data_to_send() == []
    assert session.events_received() == [
        CommandFinished(command, CommandResult("fail", "busy recording", {}))
    ]


def test_upload_log_carries_the_remote_dir() -> None:
    session = online_session()
    session.send_command("upload_log", {"remote_dir": "/srv/logs"}, 10.0, 1.0)
    (order,) = sent(session)
    assert order["Headers"]["order_type"] == "upload_log"
    assert order["data"] == {"device_id": DEVICE, "remote_dir": "/srv/logs"}


def test_closing_fails_outstanding_commands() -> None:
    session = online_session()
    command = session.send_command("x", {}, 10.0, 1.0)
    session.peer_closed()
    events = session.events_received()
    assert events[0] == CommandFinished(command, CommandResult("fail", "Device is offline!"))
    assert events[-1].cause == "closed_by_device"


def test_superseded_session_closes_with_4000() -> None:
    session = online_session()
    session.close("superseded", CLOSE_SUPERSEDED, "superseded")
    assert session.close_code == 4000
    assert session.events_received() == [SessionClosed("superseded", 4000, "superseded")]
    session.receive(PING, 2.0)
    assert session.data_to_send() == []


def test_a_device_on_a_metered_link_is_allowed_its_longer_silences() -> None:
    session = DeviceSession(Timings(), 0.0)
    session.receive(json.dumps({"device_id": DEVICE, "password": "pw"}), 0.1)
    session.events_received()
    metered = Timings(tolerance=36.0, tolerance_after_failure=26.4)
    session.login_accepted(DEVICE, 0.5, frozenset({"metered"}), metered)
    session.tick(30.0)
    assert session.state is State.ONLINE  # a version-1 device would be unknown by now
    session.tick(36.5)
    assert session.state is State.UNKNOWN


# --- data (section 7) ---------------------------------------------------------------------


def upload(records: list, request_id: str = "b-1") -> str:
    return protocol.upload_data(records, request_id)


GOOD = {"record_id": "r-1", "kind": "alert", "at": "2025-12-01T09:47:24+01:00", "payload": {}}


def test_a_batch_from_a_device_that_listed_data_is_checked_record_by_record() -> None:
    session = DeviceSession(Timings(), 0.0)
    session.receive(json.dumps({"device_id": DEVICE, "password": "pw"}), 0.0)
    session.login_accepted(DEVICE, 0.0, frozenset({"data"}))
    session.data_to_send(), session.events_received()
    session.receive(upload([GOOD, {**GOOD, "kind": "UPPER"}, GOOD, "nope"]), 1.0)
    (event,) = session.events_received()
    assert isinstance(event, DataReceived)
    assert event.request_id == "b-1"
    assert [r.record_id for r in event.records] == ["r-1"]  # the same id twice: once
    assert event.records[0].at.isoformat() == "2025-12-01T08:47:24"  # in UTC
    assert [r for r, _ in event.rejected] == ["r-1", ""]
    assert sent(session) == []  # the answer waits for the store
    session.data_stored("b-1", protocol.data_answer(["r-1"]))
    (answer,) = sent(session)
    assert answer["type"] == "upload_data_result" and answer["status"] == "success"
    assert answer["Headers"] == {"request_id": "b-1"}


def test_a_batch_from_a_device_that_did_not_list_data_is_ignored() -> None:
    session = online_session()
    session.receive(upload([GOOD]), 1.0)
    assert session.events_received() == [FrameIgnored("unknown_type")]
    assert session.state is State.ONLINE


def test_configuration_goes_only_to_a_device_that_listed_config() -> None:
    session = DeviceSession(Timings(), 0.0)
    session.receive(json.dumps({"device_id": DEVICE, "password": "pw"}), 0.0)
    session.login_accepted(DEVICE, 0.0, frozenset({"config"}))
    session.data_to_send(), session.events_received()
    assert session.send_config(3, {"fps": 15})
    assert session.send_config(4, {"fps": 10})
    first, second = sent(session)
    assert first == {"type": "config_update", "Headers": {"request_id": "c-1"},
                     "data": {"version": 3, "config": {"fps": 15}}}  # fmt: skip
    assert second["Headers"] == {"request_id": "c-2"}
    session.receive(protocol.config_report(4, {"fps": 10}, None, "c-2"), 1.0)
    (event,) = session.events_received()
    assert isinstance(event, ConfigReported)
    assert event.report == protocol.ConfigReport(4, {"fps": 10}, "success", None, "c-2")

    version_1 = online_session()
    assert not version_1.send_config(3, {"fps": 15})
    assert sent(version_1) == []
    version_1.receive(protocol.config_report(3, {}), 1.0)
    assert version_1.events_received() == [FrameIgnored("unknown_type")]


def test_a_malformed_configuration_report_is_read_safely() -> None:
    frame = protocol.parse_frame(
        json.dumps({"type": "config_report", "status": "weird", "Headers": {"message": 5},
                    "data": {"version": True}})
    )  # fmt: skip
    report = protocol.ConfigReport.read(frame)
    assert report == protocol.ConfigReport(None, None, "fail", None, None)
