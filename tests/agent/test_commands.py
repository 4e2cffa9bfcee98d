"""The command registry and the status snapshot, on their own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgefleet.agent import protocol, status
from edgefleet.agent.commands import CommandRegistry, Outcome


def test_a_commands_module_registers_its_marked_functions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "camera_commands.py").write_text(
        "from edgefleet.agent import command\n\n"
        "@command('set_exposure')\n"
        "def set_exposure(value: int) -> dict:\n"
        "    return {'exposure': value}\n\n"
        "def helper():\n"
        "    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = CommandRegistry()
    registry.load_module("camera_commands")
    assert registry.names() == ["set_exposure"]


async def test_results_that_are_not_json_fail_with_a_reason() -> None:
    registry = CommandRegistry()
    registry.register("handle", lambda: object())
    outcome = await registry.run("handle", {})
    assert outcome == Outcome("fail", "result is not JSON: object")


def test_builtin_names_cannot_be_taken() -> None:
    with pytest.raises(ValueError, match="built-in"):
        CommandRegistry().register("restart", lambda: None)


def test_the_snapshot_has_every_field_of_the_protocol() -> None:
    snapshot = status.collect()
    assert set(snapshot["CPU_info"]) == {
        "user_cpu_time",
        "system_cpu_time",
        "idle_cpu_time",
        "io_wait_cpu_time",
    }
    assert set(snapshot["Memory_info"]) == {"total_memory_mb", "free_memory_mb", "buff_cache_mb"}
    assert set(snapshot["Disk_info"]) == {
        "root_total_size_mb",
        "root_used_size_mb",
        "root_used_percent",
    }
    assert snapshot["Memory_info"]["total_memory_mb"] > snapshot["Memory_info"]["free_memory_mb"]
    assert snapshot["dev_state"] == "online"
    frame = protocol.parse_frame(protocol.status_upload("42", snapshot))
    assert frame.data["device_id"] == "42"


def test_the_protocol_module_stays_light() -> None:
    """The southbound and tiny devices import agent.protocol: it pulls in nothing heavy."""
    code = (
        "import sys, agent.protocol\n"
        "heavy = {'websockets', 'psutil', 'asyncssh', 'aiohttp'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
