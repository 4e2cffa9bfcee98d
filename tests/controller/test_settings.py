"""Settings: flags beat environment beats defaults, one definition for all."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.controller import settings
from edgefleet.controller.cli import parser

README = Path(__file__).parents[2] / "README.md"


def test_defaults_match_the_documented_contract() -> None:
    config = settings.load(env={})
    assert config.db.url == "sqlite+aiosqlite:///./edgefleet.db"
    assert (config.api.host, config.api.port) == ("127.0.0.1", 8080)
    assert config.api.token is None


def test_flags_win_over_environment_which_wins_over_defaults() -> None:
    env = {"EDGEFLEET_API_PORT": "9000", "EDGEFLEET_DB_URL": "sqlite+aiosqlite:///env.db"}
    args = parser().parse_args(["serve", "--api-port", "9100"])
    config = settings.load(args, env)
    assert config.api.port == 9100
    assert config.db.url == "sqlite+aiosqlite:///env.db"
    assert config.log.level == "INFO"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EDGEFLEET_API_PORT": "eighty"}, "EDGEFLEET_API_PORT"),
        ({"EDGEFLEET_BCRYPT_ROUNDS": "3"}, "bcrypt-rounds"),
        ({"EDGEFLEET_WORKER_ID": "1024"}, "worker-id"),
        ({"EDGEFLEET_LOG_FORMAT": "xml"}, "EDGEFLEET_LOG_FORMAT: expected auto, json, text"),
        ({"EDGEFLEET_PER_DEVICE_METRICS": "maybe"}, "expected true or false; got 'maybe'"),
    ],
)
def test_bad_values_are_refused_with_the_setting_named(env: dict, message: str) -> None:
    with pytest.raises(settings.SettingsError, match=message):
        settings.load(env=env)


def test_readme_documents_every_setting() -> None:
    readme = README.read_text()
    for info in settings.describe():
        assert f"`--{info.flag}`" in readme, info.flag
        assert f"`{info.env}`" in readme, info.env
