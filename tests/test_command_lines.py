"""Both CLIs as a user types them: ``--version``, and a bad value — a flag or an
environment variable — is one line naming it, exit 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.agent.distribution import installed_version
from tests.server_process import console_script

AGENT_IDENTITY = ("--device-id", "1", "--password", "a-long-password")


@pytest.mark.parametrize("program", ["edgefleet", "edgefleet-agent"])
def test_version(program: str) -> None:
    result = console_script(program, "--version")
    assert (result.returncode, result.stdout) == (0, f"{program} {installed_version()}\n")


@pytest.mark.parametrize(
    ("command", "env", "line"),
    [
        (["edgefleet", "serve", "--per-device-metrics", "maybe"], {},
         "edgefleet: --per-device-metrics: expected true or false; got 'maybe'"),
        (["edgefleet", "serve"], {"EDGEFLEET_PER_DEVICE_METRICS": "maybe"},
         "edgefleet: EDGEFLEET_PER_DEVICE_METRICS: expected true or false; got 'maybe'"),
        (["edgefleet", "serve", "--api-port", "eighty"], {},
         "edgefleet: --api-port: expected an integer; got 'eighty'"),
        (["edgefleet", "controller"], {"EDGEFLEET_DB_TIMEOUT": "soon"},
         "edgefleet: EDGEFLEET_DB_TIMEOUT: expected a number; got 'soon'"),
        (["edgefleet", "serve", "--log-format", "xml"], {},
         "edgefleet: --log-format: expected auto, json, text; got 'xml'"),
        (["edgefleet", "serve", "--log-level", "loud"], {},
         "edgefleet: --log-level: expected DEBUG, INFO, WARNING, ERROR; got 'loud'"),
        (["edgefleet", "serve", "--bcrypt-rounds", "3"], {},
         "edgefleet: --bcrypt-rounds must be between 4 and 31"),
        (["edgefleet-agent", *AGENT_IDENTITY, "--sftp-check-host-key", "maybe"], {},
         "edgefleet-agent: --sftp-check-host-key: expected true or false; got 'maybe'"),
        (["edgefleet-agent", *AGENT_IDENTITY], {"EDGEFLEET_AGENT_MAX_RETRIES": "often"},
         "edgefleet-agent: EDGEFLEET_AGENT_MAX_RETRIES: expected an integer; got 'often'"),
        (["edgefleet-agent", *AGENT_IDENTITY, "--heartbeat-interval", "soon"], {},
         "edgefleet-agent: --heartbeat-interval: expected a number; got 'soon'"),
        (["edgefleet-agent", *AGENT_IDENTITY, "--server", "http://x"], {},
         "edgefleet-agent: --server must be a ws:// or wss:// URL"),
        (["edgefleet-agent", *AGENT_IDENTITY, "--ca-file", "ca.pem"], {},
         "edgefleet-agent: --ca-file needs a wss:// --server"),
        (["edgefleet-agent", *AGENT_IDENTITY, "--server", "wss://x/ws"],
         {"EDGEFLEET_AGENT_CA_FILE": "/nowhere/ca.pem"},
         "edgefleet-agent: --ca-file /nowhere/ca.pem: No such file or directory"),
    ],
)  # fmt: skip
def test_a_bad_value_is_one_line_naming_the_flag_or_variable(
    command: list[str], env: dict[str, str], line: str
) -> None:
    result = console_script(*command, env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [line]


def test_a_word_setting_is_taken_in_any_case(tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path}/e.db"
    result = console_script(
        "edgefleet", "db", "upgrade", "--log-level", "warning", "--db-url", database
    )
    assert (result.returncode, result.stderr) == (0, "")  # WARNING: the INFO line is left out


def test_users_create_admin_makes_an_administrator_once(tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path}/users.db"
    secret = tmp_path / "password"
    secret.write_text("first admin password\n")
    command = ["edgefleet", "users", "create-admin", "root", "--password-file", str(secret),
               "--db-url", database, "--bcrypt-rounds", "4"]  # fmt: skip
    made = console_script(*command)
    assert made.returncode == 0, made.stderr
    again = console_script(*command)
    assert again.returncode == 1
    assert "already exists" in again.stderr
    import sqlalchemy

    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path}/users.db")
    with engine.connect() as connection:
        row = connection.execute(
            sqlalchemy.text("SELECT is_superuser, password FROM users WHERE username = 'root'")
        ).one()
    assert row[0] and row[1].startswith("$2")
    assert "first admin password" not in made.stderr + made.stdout


def test_users_create_admin_refuses_a_short_password_from_stdin(tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path}/users.db"
    result = console_script(
        "edgefleet", "users", "create-admin", "root", "--db-url", database, stdin="short\n"
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "edgefleet: the password must be 12 to 72 printable ASCII characters"
    ]
