"""``edgefleet-agent``: the device side of edgefleet as a command."""

from __future__ import annotations

import argparse
import sys

from edgefleet.agent.distribution import explaining_missing_extra, installed_version
from edgefleet.agent.settings import AgentSettings, SettingsError, add_arguments, load
from edgefleet.agent.tls import client_context


def parse(argv: list[str]) -> AgentSettings:
    parser = argparse.ArgumentParser(
        prog="edgefleet-agent",
        description="Keep this device connected to edgefleet: heartbeats, status, commands.",
    )
    parser.add_argument(
        "--version", action="version", version=f"edgefleet-agent {installed_version()}"
    )
    add_arguments(parser)
    return load(parser.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        settings = parse(sys.argv[1:] if argv is None else argv)
        client_context(settings)  # unusable TLS files: one line now, not at every reconnect
        from edgefleet.agent.runner import Agent  # the heavy imports wait for good settings

        return Agent(settings).run()

    try:
        return explaining_missing_extra("edgefleet-agent", "agent", body)
    except SettingsError as exc:
        sys.stderr.write(f"edgefleet-agent: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
