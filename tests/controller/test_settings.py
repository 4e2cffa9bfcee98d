"""Settings: flags beat environment beats defaults, one definition for all."""

from __future__ import annotations

import pytest
import yaml

from edgefleet.controller import settings
from edgefleet.controller.cli import parser
from scripts.helm import CHART, helm
from tests.readme import documented, section, settings_table


def test_defaults_match_the_documented_contract() -> None:
    """Loaded with nothing set, every setting is its declared default (which the
    README's table and the chart are checked against below)."""
    config = settings.load(env={})
    for info in settings.describe():
        assert getattr(getattr(config, info.group), info.name) == info.default, info.flag
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
        ({"EDGEFLEET_KUBE_STATUS_BUDGET": "0"}, "kube-status-budget must be more than 0"),
        ({"EDGEFLEET_INSTANCE_BEAT_INTERVAL": "60"}, "instance-beat-interval must be"),
        ({"EDGEFLEET_JOB_MINUTE": "0"}, "job-minute must be more than 0"),
        ({"EDGEFLEET_KUBE_STATUS_RATE": "20"}, "replaced by EDGEFLEET_KUBE_STATUS_BUDGET"),
    ],
)
def test_bad_values_are_refused_with_the_setting_named(env: dict, message: str) -> None:
    with pytest.raises(settings.SettingsError, match=message):
        settings.load(env=env)


# Defaults the README describes in words rather than as a value.
DESCRIBED = {
    "api-token": "generated and printed once at start-up",
    "token-key": "random per start",
    "password-pepper": "random per start",
    "instance": "the host name",
    "files-endpoint": "none (AWS S3)",
    "analyse-kinds": "none",
    "classifier-url": "none (analysis off)",
    "classifier-prompt": 'asks for one category as JSON `{"category", "confidence"}`',
}


def test_readme_documents_every_setting_with_its_default() -> None:
    table = settings_table(section("Configuration"))
    infos = settings.describe()
    assert list(table) == [info.flag for info in infos]  # all, in the same order
    for info in infos:
        assert table[info.flag].env == info.env, info.flag
        assert table[info.flag].default == documented(info.default, DESCRIBED.get(info.flag)), (
            info.flag
        )


# What the chart gives a setting other than its default, and why.
CHART_CHOICES = {
    "api-host": "0.0.0.0",  # listen on the pod's address, not only loopback
    "ws-host": "0.0.0.0",
    "instance": "$(POD_NAME)",  # the pod's name is the instance
    "advertise-address": None,  # the pod's DNS name, made of its name and namespace
    "log-format": "json",  # always JSON for a log collector, even on a terminal
    "files-dir": "/var/lib/edgefleet/files",  # where the shared claim is mounted
}


def test_the_chart_passes_every_setting_its_default_unless_it_says_why() -> None:
    """Every flag and ``EDGEFLEET_*`` value the chart renders by default, against the
    setting it sets: the same value, or a choice of the chart's listed above."""
    docs = [doc for doc in yaml.safe_load_all(helm("template", "edgefleet", str(CHART),
            "--set", "database.url=mysql+aiomysql://u:p@db:3306/edgefleet")) if doc]  # fmt: skip
    by_flag = {info.flag: info for info in settings.describe()}
    by_env = {info.env: info for info in settings.describe()}
    seen = set()
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        [container] = doc["spec"]["template"]["spec"]["containers"]
        given = [
            (by_flag[flag], value)
            for arg in container["args"][1:]
            for flag, _, value in [arg.removeprefix("--").partition("=")]
        ] + [(by_env[e["name"]], e["value"]) for e in container["env"] if e["name"] in by_env
             and "value" in e]  # fmt: skip
        for info, value in given:
            seen.add(info.flag)
            if info.flag in CHART_CHOICES:
                expected = CHART_CHOICES[info.flag]
                assert expected is None or value == expected, (info.flag, value)
            else:
                converted = settings._convert(info.flag, value, info)
                assert converted == info.default, (doc["metadata"]["name"], info.flag, value)
    assert {"kube-status-budget", "kube-metrics-interval", "per-device-metrics",
            "bcrypt-rounds", "log-level", "ws-port", "metrics-port", "job-tick",
            "job-minute"} <= seen  # fmt: skip
