"""``edgefleet-agent``: the device side of edgefleet as a command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from edgefleet.agent import protocol, spool
from edgefleet.agent.distribution import explaining_missing_extra, installed_version
from edgefleet.agent.settings import (
    ENV_PREFIX,
    AgentSettings,
    SettingsError,
    add_arguments,
    load,
)
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


def publish(argv: list[str]) -> int:
    """``edgefleet-agent publish``: hand one record to the running agent through its
    spool folder (for shell scripts and programs that are not Python)."""
    parser = argparse.ArgumentParser(
        prog="edgefleet-agent publish",
        description="Queue a record for upload: written into the agent's spool folder.",
    )
    parser.add_argument("--kind", required=True, help="The record's kind, e.g. alert.")
    parser.add_argument("--payload", required=True, help="The record's JSON object.")
    parser.add_argument("--file", action="append", default=[], help="A file of the record.")
    parser.add_argument("--record-id", help="The record's id (default: generated).")
    parser.add_argument("--at", help="When it happened, RFC 3339 (default: now).")
    parser.add_argument(
        "--spool-dir",
        default=os.environ.get(ENV_PREFIX + "SPOOL_DIR", AgentSettings.spool_dir),
        help="The agent's spool folder [env EDGEFLEET_AGENT_SPOOL_DIR].",
    )
    args = parser.parse_args(argv)
    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        raise SettingsError(f"--payload is not JSON: {exc}") from None
    spec = {"kind": args.kind, "payload": payload}
    spec |= {k: v for k, v in (("record_id", args.record_id), ("at", args.at)) if v}
    try:
        protocol.read_record(
            {"record_id": args.record_id or "x", "at": args.at or "2000-01-01T00:00:00Z", **spec}
        )
    except protocol.RecordRejected as exc:
        raise SettingsError(exc.message) from None
    files = [Path(name) for name in args.file]
    for file in files:
        if not file.is_file():
            raise SettingsError(f"--file {file}: no such file")
    written = spool.write(Path(args.spool_dir).expanduser(), spec, files)
    sys.stdout.write(f"{written}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["publish"]:
        try:
            return publish(args[1:])
        except SettingsError as exc:
            sys.stderr.write(f"edgefleet-agent publish: {exc}\n")
            return 2

    def body() -> int:
        settings = parse(args)
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
