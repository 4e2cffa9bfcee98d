"""``edgefleet-agent``: the device side of edgefleet as a command."""

from __future__ import annotations

import argparse
import sys

from edgefleet.agent.settings import AgentSettings, SettingsError, add_arguments, load


def parse(argv: list[str]) -> AgentSettings:
    parser = argparse.ArgumentParser(
        prog="edgefleet-agent",
        description="Keep this device connected to edgefleet: heartbeats, status, commands.",
    )
    add_arguments(parser)
    return load(parser.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    try:
        settings = parse(sys.argv[1:] if argv is None else argv)
    except SettingsError as exc:
        sys.stderr.write(f"edgefleet-agent: {exc}\n")
        return 2
    from edgefleet.agent.runner import Agent  # the heavy imports wait until the settings are good

    return Agent(settings).run()


if __name__ == "__main__":
    sys.exit(main())
