"""Agent settings: flags over ``EDGEFLEET_AGENT_*`` over the TOML file over defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from edgefleet.agent.cli import parse
from edgefleet.agent.settings import SettingsError, add_arguments, describe, load
from tests.readme import documented, section, settings_table

IDENTITY = ["--device-id", "1790001234567890", "--password", "a-long-password"]


def parsed(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_flags_win_over_environment_over_file_over_defaults(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        'server = "wss://from-file/ws"\nsftp-port = 2222\nmax_retries = 5\n'
        "device_id = 1790001234567890\nstatus_interval = 30\n"
    )
    env = {"EDGEFLEET_AGENT_SFTP_PORT": "2200", "EDGEFLEET_AGENT_MAX_RETRIES": "7"}
    argv = ["--config", str(config), "--max-retries", "9", "--password", "a-long-password"]
    settings = load(parsed(argv), env)
    assert settings.server == "wss://from-file/ws"
    assert settings.sftp_port == 2200
    assert settings.max_retries == 9
    assert settings.device_id == "1790001234567890"
    assert settings.status_interval == 30.0
    assert settings.reconnect_delay == 10.0 and settings.reconnect_max_delay == 60.0


def test_the_password_file_is_read_without_its_newline(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("mounted-secret-value\n")
    settings = load(parsed(["--device-id", "1", "--password-file", str(secret)]), {})
    assert settings.secret() == "mounted-secret-value"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--password", "a-long-password"], {}, "give --device-id, or --sn and --model"),
        (["--device-id", "1"], {}, "give --password-file"),
        ([*IDENTITY, "--server", "http://x"], {}, "ws:// or wss://"),
        (IDENTITY, {"EDGEFLEET_AGENT_SFTP_PORT": "twenty"}, "EDGEFLEET_AGENT_SFTP_PORT"),
        (IDENTITY, {"EDGEFLEET_AGENT_SFTP_CHECK_HOST_KEY": "maybe"}, "expected true or false"),
        ([*IDENTITY, "--heartbeat-interval", "0"], {}, "must be positive"),
    ],
)
def test_bad_settings_name_what_is_wrong(argv: list[str], env: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(parsed(argv), env)


def test_a_config_file_with_an_unknown_key_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('serer = "typo"\n')
    with pytest.raises(SettingsError, match="unknown keys serer"):
        parse(["--config", str(config), *IDENTITY])


def test_sn_and_model_identify_a_device_without_an_id() -> None:
    settings = parse(["--sn", "SN1", "--model", "M1", "--password", "a-long-password"])
    assert (settings.sn, settings.model, settings.device_id) == ("SN1", "M1", None)


def test_readme_documents_every_agent_setting_with_its_default() -> None:
    table = settings_table(section("Agent (for device makers)"))
    infos = describe()
    assert list(table) == [info.flag for info in infos]  # all, in the same order
    described = {"ca-file": "none (the system's CAs)"}
    for info in infos:
        assert table[info.flag].env == info.env, info.flag
        assert table[info.flag].default == documented(info.default, described.get(info.flag)), (
            info.flag
        )
