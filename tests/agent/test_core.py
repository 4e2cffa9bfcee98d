"""The device-side rules of PROTOCOL.md, driven by a fake clock at the real timings."""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import replace
from typing import Any

import pytest

from edgefleet.agent import protocol
from edgefleet.agent.core import (
    AgentSession,
    Backoff,
    Closed,
    CommandReceived,
    ConfigReceived,
    DataAnswered,
    FrameIgnored,
    HeartbeatMissed,
    LoggedIn,
    LoginRejected,
    RestartNow,
    StatusDue,
    Timings,
)

PASSWORD_LOGIN = protocol.Login(device_id="42", password="secret-password")
STATUS = {"dev_state": "online"}


class Device:
    """An ``AgentSession`` with a clock and a transcript of what it sent."""

    def __init__(self, login: protocol.Login = PASSWORD_LOGIN, **timings: float) -> None:
        self.now = 1000.0
        self.session = AgentSession(Timings(**timings), login, self.now)
        self.sent: list[dict] = []
        self.events: list = []
        self.status: dict = STATUS  # what the next status reading finds
        self._drain()

    def _drain(self) -> None:
        self.sent += [json.loads(frame) for frame in self.session.data_to_send()]
        self.events += self.session.events_received()

    def advance(self, seconds: float) -> None:
        """Move the clock forward, firing deadlines as the adapter would."""
        end = self.now + seconds
        while True:
            deadline = self.session.next_deadline()
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            self.session.tick(self.now)
            self._drain()
            self._answer_status_requests()
        self.now = end
        self.session.tick(self.now)
        self._drain()
        self._answer_status_requests()

    def _answer_status_requests(self) -> None:
        while any(isinstance(e, StatusDue) for e in self.events):
            self.events = [e for e in self.events if not isinstance(e, StatusDue)]
            self.session.status_collected(self.status, self.now)
            self._drain()

    def receive(self, frame: str) -> None:
        self.session.receive(frame, self.now)
        self._drain()
        self._answer_status_requests()

    def take_sent(self) -> list[dict]:
        sent, self.sent = self.sent, []
        return sent

    def take_events(self) -> list:
        events, self.events = self.events, []
        return events

    def log_in(self, **extensions: object) -> None:
        self.receive(protocol.login_success("42", **extensions))

    def pings_sent(self) -> list[dict]:
        return [f for f in self.take_sent() if f.get("type") == protocol.PING_PONG]


def sent_types(frames: list[dict]) -> list[str]:
    return [frame.get("type", "login") for frame in frames]


# --- login -------------------------------------------------------------------------


def test_the_login_frame_goes_first() -> None:
    device = Device()
    assert device.take_sent() == [{"device_id": "42", "password": "secret-password"}]


def test_success_reports_the_token_and_uploads_a_status_at_once() -> None:
    device = Device()
    device.take_sent()
    device.log_in(token="tok", token_expires_at="2026-12-01T00:00:00Z")
    assert LoggedIn("42", "tok", "2026-12-01T00:00:00Z") in device.take_events()
    [upload] = device.take_sent()
    assert upload["type"] == protocol.STATUS_UPLOAD
    assert upload["data"] == {"device_id": "42", **STATUS}


def test_a_refused_password_closes_the_session() -> None:
    device = Device()
    device.receive(protocol.login_failure(protocol.MSG_WRONG_PASSWORD))
    events = device.take_events()
    assert LoginRejected(protocol.MSG_WRONG_PASSWORD, with_token=False) in events
    assert not events[0].token_refused
    assert device.session.closed and Closed("login_failed") in events


@pytest.mark.parametrize(
    ("message", "refused"),
    [
        (protocol.MSG_BAD_TOKEN, True),
        (protocol.MSG_UNKNOWN_DEVICE, True),
        (protocol.MSG_UNAVAILABLE, False),
        (protocol.MSG_TOO_MANY_LOGINS, False),
    ],
)
def test_a_token_is_forgotten_only_when_the_token_itself_was_refused(
    message: str, refused: bool
) -> None:
    device = Device(protocol.Login(device_id="42", token="tok"))
    device.receive(protocol.login_failure(message))
    [rejected, _closed] = device.take_events()
    assert rejected.token_refused is refused


def test_no_login_answer_within_the_timeout_closes_the_session() -> None:
    device = Device(login_timeout=10)
    device.advance(9.9)
    assert not device.session.closed
    device.advance(0.1)
    assert Closed("login_timeout") in device.take_events()


@pytest.mark.parametrize("answer", ["{not json", "[1]", '{"status": "success", "data": {}}'])
def test_a_malformed_login_answer_is_a_failed_login(answer: str) -> None:
    device = Device()
    device.receive(answer)
    assert device.session.closed
    assert isinstance(device.take_events()[0], LoginRejected)


def test_intervals_announced_by_the_server_replace_the_defaults() -> None:
    device = Device()
    device.log_in(heartbeat_interval=2, status_interval=5)
    device.take_sent()
    device.receive(protocol.status_response())
    device.advance(2)
    assert sent_types(device.take_sent()) == [protocol.PING_PONG]
    device.receive(protocol.pong())
    device.advance(3)
    assert sent_types(device.take_sent()) == [protocol.PING_PONG, protocol.STATUS_UPLOAD]


# --- heartbeat ------------------------------------------------------------------------


def logged_in_device(**timings: float) -> Device:
    device = Device(**timings)
    device.log_in()
    device.receive(protocol.status_response())
    device.take_sent()
    device.take_events()
    return device


def test_pings_go_every_five_seconds_while_pongs_come_back() -> None:
    device = logged_in_device()
    device.advance(4.99)
    assert device.pings_sent() == []
    device.advance(0.01)
    assert len(device.pings_sent()) == 1
    device.advance(0.5)
    device.receive(protocol.pong())
    device.advance(4.49)  # the next ping counts from the previous send, not the pong
    assert device.pings_sent() == []
    device.advance(0.01)
    assert len(device.pings_sent()) == 1


def test_a_missing_pong_counts_a_failure_and_the_next_ping_goes_at_once() -> None:
    device = logged_in_device()
    device.advance(5)
    assert len(device.pings_sent()) == 1
    device.advance(2.99)
    assert device.pings_sent() == []
    device.advance(0.01)
    assert len(device.pings_sent()) == 1
    assert HeartbeatMissed("pong", 1) in device.take_events()
    assert device.session.failures == 1


def test_any_answer_resets_the_failure_count() -> None:
    device = logged_in_device()
    device.advance(8)  # one ping missed, a second one sent
    assert device.session.failures == 1
    device.receive(protocol.pong())
    assert device.session.failures == 0


def test_three_missed_answers_drop_the_connection() -> None:
    device = logged_in_device()
    device.advance(5 + 3 + 3)
    assert not device.session.closed
    device.advance(3)
    events = device.take_events()
    assert [e.failures for e in events if isinstance(e, HeartbeatMissed)] == [1, 2, 3]
    assert device.session.closed and events[-1] == Closed("heartbeat_failed")


def test_a_status_upload_replaces_a_heartbeat() -> None:
    device = logged_in_device(status_interval=7)
    device.advance(5)
    assert len(device.pings_sent()) == 1
    device.receive(protocol.pong())
    device.advance(2)
    assert sent_types(device.take_sent()) == [protocol.STATUS_UPLOAD]
    device.receive(protocol.status_response())
    device.advance(4.99)  # 11.99 s since login: a ping was due at 10 without the upload
    assert device.pings_sent() == []
    device.advance(0.01)
    assert len(device.pings_sent()) == 1


def test_a_command_result_replaces_a_heartbeat() -> None:
    device = logged_in_device()
    device.advance(3)
    device.receive(protocol.order("42", "blink", {}, request_id="7"))
    device.session.command_finished("success", "ok", None, "7", device.now)
    device._drain()
    assert sent_types(device.take_sent()) == [protocol.RESULT]
    device.advance(4.99)
    assert device.pings_sent() == []
    device.advance(0.01)
    assert len(device.pings_sent()) == 1


# --- status ------------------------------------------------------------------------------


def test_status_goes_every_fifteen_seconds_counted_from_the_previous_upload() -> None:
    device = logged_in_device()
    uploads = []
    for _ in range(3):
        while True:
            device.advance(0.5)
            frames = device.take_sent()
            for frame in frames:
                if frame["type"] == protocol.PING_PONG:
                    device.receive(protocol.pong())
            if protocol.STATUS_UPLOAD in sent_types(frames):
                uploads.append(device.now)
                device.receive(protocol.status_response())
                break
    assert uploads[0] == pytest.approx(1015.0)
    assert [round(b - a, 6) for a, b in itertools.pairwise(uploads)] == [15.0, 15.0]


def test_an_unanswered_status_counts_a_failure_and_is_sent_again_at_once() -> None:
    device = Device()
    device.log_in()
    assert sent_types(device.take_sent())[-1] == protocol.STATUS_UPLOAD
    device.advance(3)
    assert HeartbeatMissed("status_response", 1) in device.take_events()
    assert protocol.STATUS_UPLOAD in sent_types(device.take_sent())


def test_a_status_collected_after_the_connection_closed_is_dropped() -> None:
    device = Device()
    device.log_in()
    device.take_sent()
    device.session.connection_lost()
    device.session.status_collected(STATUS, device.now)
    assert device.session.data_to_send() == []


# --- commands ----------------------------------------------------------------------------


def test_a_custom_command_is_handed_over_with_its_params_and_request_id() -> None:
    device = logged_in_device()
    device.receive(protocol.order("42", "set_exposure", {"value": 3}, request_id="r1"))
    assert device.take_events() == [
        CommandReceived("set_exposure", False, {"value": 3}, "r1"),
    ]


def test_a_version_one_order_without_request_id_or_params_still_runs() -> None:
    device = logged_in_device()
    frame = {"type": "give_order", "Headers": {"isInner": False, "order_type": "x"}, "data": {}}
    device.receive(json.dumps(frame))
    assert device.take_events() == [CommandReceived("x", False, {}, None)]


def test_params_that_are_not_an_object_fail_without_reaching_the_command() -> None:
    device = logged_in_device()
    frame = {
        "type": "give_order",
        "Headers": {"isInner": False, "order_type": "x", "request_id": "9"},
        "data": {"params": [1, 2]},
    }
    device.receive(json.dumps(frame))
    [result] = device.take_sent()
    assert result["status"] == "fail"
    assert result["Headers"] == {"message": "params must be a JSON object", "request_id": "9"}
    assert device.take_events() == []


def test_an_unknown_builtin_order_is_not_in_config() -> None:
    device = logged_in_device()
    frame = {"type": "give_order", "Headers": {"isInner": True, "order_type": "format_disk"}}
    device.receive(json.dumps(frame))
    [result] = device.take_sent()
    assert result["Headers"]["message"] == protocol.UNKNOWN_ORDER_MESSAGE


def test_upload_log_carries_its_remote_dir_or_the_default() -> None:
    device = logged_in_device()
    device.receive(protocol.order("42", "upload_log", {"remote_dir": "/srv/logs"}, request_id="1"))
    frame = {"type": "give_order", "Headers": {"isInner": True, "order_type": "upload_log"}}
    device.receive(json.dumps(frame))
    assert device.take_events() == [
        CommandReceived("upload_log", True, {}, "1", "/srv/logs"),
        CommandReceived("upload_log", True, {}, None, protocol.DEFAULT_REMOTE_DIR),
    ]


ARTIFACT = {"name": "detector", "version": "2.1.0", "sha256": "ab" * 32, "size": 10,
            "url": "/files/" + "ab" * 32}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sha256": "AB" * 32}, "artifact.sha256 must be a lower-case SHA-256 hex digest"),
        ({"size": -1}, "artifact.size must be a whole number of bytes"),
        ({"size": True}, "artifact.size must be a whole number of bytes"),
        ({"version": ""}, "artifact.version must be a non-empty string"),
        ({"url": "http://elsewhere/x"}, "artifact.url must be a path on the /ws host"),
    ],
)
def test_an_update_order_is_run_only_with_a_whole_artifact(
    change: dict[str, Any], message: str
) -> None:
    device = logged_in_device()
    device.receive(protocol.order("42", "update", {"artifact": ARTIFACT}, request_id="1"))
    assert device.take_events() == [CommandReceived("update", True, {"artifact": ARTIFACT}, "1")]
    device.receive(protocol.order("42", "update", {"artifact": {**ARTIFACT, **change}}, "2"))
    [result] = device.take_sent()
    assert (result["status"], result["Headers"]["message"]) == ("fail", message)
    assert device.take_events() == []


def test_restart_asks_for_confirmation_and_restarts_when_it_comes() -> None:
    device = logged_in_device()
    device.receive(protocol.order("42", "restart", request_id="5"))
    [answer] = device.take_sent()
    assert answer["status"] == "success"
    assert answer["Headers"] == {"message": protocol.RESTART_WAIT_MESSAGE, "request_id": "5"}
    device.advance(1)
    device.receive(protocol.restart_confirm())
    assert RestartNow(confirmed=True) in device.take_events()


def test_restart_goes_ahead_three_seconds_after_asking_without_a_confirm() -> None:
    device = logged_in_device()
    device.receive(protocol.order("42", "restart"))
    device.advance(2.99)
    assert not any(isinstance(e, RestartNow) for e in device.take_events())
    device.advance(0.01)
    assert RestartNow(confirmed=False) in device.take_events()


def test_a_confirm_nobody_asked_for_is_ignored() -> None:
    device = logged_in_device()
    device.receive(protocol.restart_confirm())
    assert device.take_events() == [FrameIgnored("unexpected:restart_confirm")]


@pytest.mark.parametrize("frame", ["{oops", "[]", '{"no": "type"}', '{"type": "from_the_future"}'])
def test_garbage_and_unknown_frames_are_ignored(frame: str) -> None:
    device = logged_in_device()
    device.receive(frame)
    assert not device.session.closed
    assert isinstance(device.take_events()[0], FrameIgnored)
    assert device.take_sent() == []


# --- reconnecting --------------------------------------------------------------------------


def test_backoff_starts_at_ten_seconds_doubles_and_stops_at_sixty() -> None:
    backoff = Backoff(rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(6)]
    assert 10 <= delays[0] <= 12
    assert 20 <= delays[1] <= 22
    assert 40 <= delays[2] <= 42
    assert delays[3:] == [60, 60, 60]
    backoff.reset()
    assert backoff.next_delay() <= 12


def test_jitter_spreads_a_fleet_that_lost_its_server_at_once() -> None:
    delays = {round(Backoff(rng=random.Random(seed)).next_delay(), 3) for seed in range(50)}
    assert len(delays) > 40


# --- a metered link (extension) ---------------------------------------------------------


def memory(used_percent: float) -> dict:
    return {"Memory_info": {"total_memory_mb": 1000, "free_memory_mb": 1000 - used_percent * 10}}


def test_on_a_metered_link_the_status_goes_when_it_moved_or_when_the_longest_gap_is_up() -> None:
    device = Device()
    device.status = memory(50)
    device.log_in(heartbeat_interval=24, status_interval=300, status_change_percent=10)
    uploads, pings = [device.now], []

    def run(seconds: float) -> None:
        for _ in range(int(seconds * 2)):
            device.advance(0.5)
            for frame in device.take_sent():
                if frame["type"] == protocol.PING_PONG:
                    pings.append(device.now)
                    device.receive(protocol.pong())
                elif frame["type"] == protocol.STATUS_UPLOAD:
                    uploads.append(device.now)
                    device.receive(protocol.status_response())

    device.take_sent()
    device.receive(protocol.status_response())
    run(299)  # read every 15 s, never moved by 10 points: nothing sent but pings
    assert uploads == [1000.0]
    assert [round(b - a) for a, b in itertools.pairwise(pings)][:3] == [24, 24, 24]
    run(16)
    assert len(uploads) == 2 and uploads[1] - uploads[0] == pytest.approx(300, abs=15)
    device.status = memory(58)  # eight points: not enough
    run(30)
    assert len(uploads) == 2
    device.status = memory(65)  # fifteen points since the last upload
    run(15)
    assert len(uploads) == 3


# --- data (section 7) -------------------------------------------------------------------


def test_a_batch_of_records_replaces_a_heartbeat_and_its_answer_is_reported() -> None:
    device = logged_in_device()
    device.advance(4.0)
    record = {"record_id": "r-1", "kind": "alert", "at": "2025-12-01T09:47:24Z", "payload": {}}
    assert device.session.send_data([record], "d-1", device.now)
    device._drain()  # the adapter collects what the session queued
    assert [f["type"] for f in device.take_sent()] == [protocol.UPLOAD_DATA]
    device.advance(4.9)  # 5 s after the batch, not after the last ping
    assert device.pings_sent() == []
    answer = protocol.data_answer(["r-1"], missing_files=["a" * 64])
    device.receive(protocol.upload_data_result(answer, "d-1"))
    answered = [e for e in device.take_events() if isinstance(e, DataAnswered)]
    assert answered == [DataAnswered("d-1", True, "", answer)]
    device.receive(protocol.upload_data_result(protocol.data_answer(), "d-2", "server busy"))
    assert [e for e in device.take_events() if isinstance(e, DataAnswered)] == [
        DataAnswered("d-2", False, "server busy", protocol.data_answer())
    ]


def test_no_batch_goes_before_login() -> None:
    device = Device()
    assert not device.session.send_data([], "d-1", device.now)


# --- desired configuration (section 8) ----------------------------------------------


def test_a_configuration_update_is_handed_over_and_its_report_sent() -> None:
    device = Device(replace(PASSWORD_LOGIN, extensions=frozenset({"config"})))
    device.log_in()
    device.take_sent(), device.take_events()
    device.receive(protocol.config_update(7, {"fps": 15}, "c-3"))
    assert device.take_events() == [ConfigReceived(7, {"fps": 15}, "c-3")]
    device.session.config_applied(7, {"fps": 15}, None, "c-3", device.now)
    device._drain()
    assert device.take_sent() == [json.loads(protocol.config_report(7, {"fps": 15}, None, "c-3"))]
    device.receive(json.dumps({"type": "config_update", "Headers": {}, "data": {"version": "7"}}))
    assert device.take_events() == [FrameIgnored("bad_config_update")]


def test_a_device_that_did_not_list_config_ignores_updates_and_sends_no_report() -> None:
    device = Device()
    device.log_in()
    device.take_sent(), device.take_events()
    device.receive(protocol.config_update(7, {"fps": 15}, "c-3"))
    assert device.take_events() == [FrameIgnored("unexpected:config_update")]
    device.session.config_applied(7, {"fps": 15}, None, None, device.now)
    device._drain()
    assert device.take_sent() == []
