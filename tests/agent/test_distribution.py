"""Both CLIs without their extra: one line naming what to install, not a traceback.

Each test runs the installed console script in a real child process whose
``sitecustomize`` (first on ``PYTHONPATH``) makes importing the named modules fail,
as on a machine where the extra was never installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgefleet.agent.distribution import EXIT_MISSING_EXTRA, extra_modules
from edgefleet.agent.upload import SftpTarget, UploadError, upload_log
from tests.server_process import console_script

SITECUSTOMIZE = '''
import sys

BLOCKED = {blocked!r}


class Uninstalled:
    """Finds the blocked modules first, and says they are not there."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, Uninstalled())
'''


def run_without(
    tmp_path: Path, blocked: set[str], *command: str
) -> subprocess.CompletedProcess[str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE.format(blocked=sorted(blocked)))
    return console_script(*command, env={"PYTHONPATH": str(site)})


def assert_one_line_naming(result: subprocess.CompletedProcess[str], program: str, extra: str):
    assert result.returncode == EXIT_MISSING_EXTRA, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{program}: ") and f"install edgefleet[{extra}]" in line, line


def test_the_extras_are_read_from_the_installed_metadata() -> None:
    assert {"websockets", "psutil", "asyncssh"} <= extra_modules("agent")
    assert {"aiohttp", "sqlalchemy", "prometheus_client", "kopf"} <= extra_modules("server")
    assert extra_modules("no-such-extra") == frozenset()


def test_the_agent_without_psutil_says_install_the_agent_extra(tmp_path: Path) -> None:
    result = run_without(
        tmp_path, {"psutil"}, "edgefleet-agent", "--device-id", "1", "--password", "x" * 12
    )
    assert_one_line_naming(result, "edgefleet-agent", "agent")
    assert "'psutil'" in result.stderr


@pytest.mark.parametrize(
    ("blocked", "command"),
    [
        ("aiohttp", ["serve", "--api-port", "0", "--ws-port", "0"]),
        ("sqlalchemy", ["db", "upgrade", "--db-url", "sqlite+aiosqlite:///never-made.db"]),
    ],
)
def test_the_server_without_its_modules_says_install_the_server_extra(
    tmp_path: Path, blocked: str, command: list[str]
) -> None:
    result = run_without(tmp_path, {blocked}, "edgefleet", *command)
    assert_one_line_naming(result, "edgefleet", "server")
    assert f"'{blocked}'" in result.stderr


def test_a_missing_module_that_is_no_extra_of_ours_is_not_blamed_on_one(tmp_path: Path) -> None:
    """A ``--commands`` module that is not there is a bad setting (exit 2)."""
    result = run_without(
        tmp_path,
        set(),
        "edgefleet-agent",
        *("--device-id", "1", "--password", "x" * 12, "--commands", "no_such_module"),
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "edgefleet-agent: --commands no_such_module: No module named 'no_such_module'"
    ]


async def test_upload_log_without_asyncssh_fails_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "asyncssh", None)  # what an import finds uninstalled
    with pytest.raises(UploadError, match=r"install edgefleet\[agent\]"):
        await upload_log(SftpTarget("127.0.0.1"), [], "/logs", "1")
