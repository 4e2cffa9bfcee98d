"""Log lines: the usual keys, only JSON-able fields, text on a terminal, quiet libraries."""

from __future__ import annotations

import json
import logging
import os
import pty
import subprocess
import sys
import urllib.request
from pathlib import Path

import kopf
import pytest
from kopf._core.actions.loggers import ObjectLogger
from websockets.sync.client import connect

from edgefleet.controller.logs import JsonFormatter, KeyValueFormatter, formatter
from tests.server_process import edgefleet_serve

BIN = Path(sys.executable).parent


def record(name: str = "edgefleet.test", msg: str = "hello", **extra: object) -> logging.LogRecord:
    made = logging.makeLogRecord({"name": name, "msg": msg, "levelname": "INFO", "levelno": 20})
    made.__dict__.update(extra)
    return made


def test_a_line_has_time_level_logger_msg_then_the_events_fields() -> None:
    line = json.loads(JsonFormatter().format(record(device_id=42, peer="127.0.0.1")))
    assert list(line)[:4] == ["time", "level", "logger", "msg"]
    assert line["time"].endswith("Z") and line["level"] == "info"
    assert (line["logger"], line["msg"]) == ("edgefleet.test", "hello")
    assert (line["device_id"], line["peer"]) == (42, "127.0.0.1")


def test_only_values_that_are_json_as_they_are_get_copied() -> None:
    line = json.loads(
        JsonFormatter().format(
            record(
                nested={"ids": [1, 2.5, None, True], "name": "x"},
                pair=("a", 1),
                obj=object(),
                path=Path("/tmp"),
                nan=float("nan"),
                deep=[[[[[[[[[["too deep"]]]]]]]]]],
                keys={1: "not a string key"},
            )
        )
    )
    assert line["nested"] == {"ids": [1, 2.5, None, True], "name": "x"}
    assert line["pair"] == ["a", 1]
    assert not {"obj", "path", "nan", "deep", "keys"} & set(line)


def test_a_kopf_record_keeps_its_object_reference_and_drops_its_settings() -> None:
    """kopf's object logger puts its whole OperatorSettings on every record: a
    kilobyte-long repr with memory addresses, before this formatter left it out."""
    captured: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    handler = Capture()
    kopf_logger = logging.getLogger("kopf.objects")
    kopf_logger.addHandler(handler)
    level = kopf_logger.level
    kopf_logger.setLevel(logging.INFO)
    try:
        body = {
            "apiVersion": "edgefleet.io/v1alpha1",
            "kind": "Device",
            "metadata": {"name": "cam-1", "namespace": "fleet", "uid": "u-1"},
        }
        ObjectLogger(body=body, settings=kopf.OperatorSettings()).info("Handler succeeded.")
    finally:
        kopf_logger.setLevel(level)
        kopf_logger.removeHandler(handler)
    [kopf_record] = captured
    assert len(repr(kopf_record.settings)) > 1000  # type: ignore[attr-defined]
    text = JsonFormatter().format(kopf_record)
    line = json.loads(text)
    assert "settings" not in line and " at 0x" not in text
    assert line["k8s_ref"]["name"] == "cam-1" and line["k8s_skip"] is False
    assert len(text) < 400


def test_json_and_text_force_and_auto_follows_the_terminal() -> None:
    assert isinstance(formatter("json", terminal=True), JsonFormatter)
    assert isinstance(formatter("text", terminal=False), KeyValueFormatter)
    assert isinstance(formatter("auto", terminal=True), KeyValueFormatter)
    assert isinstance(formatter("auto", terminal=False), JsonFormatter)


@pytest.mark.parametrize("terminal", [True, False])
def test_by_default_logs_are_text_on_a_terminal_and_json_in_a_pipe(
    tmp_path: Path, terminal: bool
) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path}/e.db"
    command = [str(BIN / "edgefleet"), "db", "upgrade", "--db-url", database]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}
    if terminal:
        leader, follower = pty.openpty()
        process = subprocess.Popen(command, stderr=follower, env=env)
        os.close(follower)
        assert process.wait(60) == 0
        output = read_all(leader)
    else:
        done = subprocess.run(command, stderr=subprocess.PIPE, env=env, text=True, timeout=60)
        assert done.returncode == 0
        output = done.stderr
    last = output.strip().splitlines()[-1]
    if terminal:
        assert last.startswith('time="') and 'msg="database schema is up to date"' in last
    else:
        assert json.loads(last)["msg"] == "database schema is up to date"


def read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the terminal's other end is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode()


def test_serve_logs_no_line_per_connection_probe_or_scrape(tmp_path: Path) -> None:
    """websockets logs each connection (with an object repr) and each HTTP request
    on the device port at INFO; at WARNING only trouble shows."""
    with edgefleet_serve(tmp_path, env={"EDGEFLEET_API_TOKEN": "t"}) as server:
        for _ in range(3):
            with connect(f"ws://127.0.0.1:{server.ws_port}/ws") as ws:
                ws.send(json.dumps({"device_id": "1", "password": "not-a-real-one"}))
                ws.recv()
            with urllib.request.urlopen(f"http://127.0.0.1:{server.ws_port}/healthz") as answer:
                assert answer.status == 200
        assert server.stop() == 0
    loggers = {
        json.loads(line)["logger"] for line in server.stderr().splitlines() if line[:1] == "{"
    }
    assert not {name for name in loggers if name.startswith("websockets")}
    assert "connection open" not in server.stderr()
