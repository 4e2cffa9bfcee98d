"""``edgefleet``: the command line of the server side."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine
from typing import Any

from edgefleet.agent.distribution import explaining_missing_extra, installed_version
from edgefleet.controller import logs, settings

log = logging.getLogger("edgefleet")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="edgefleet", description="Device management for edge fleets."
    )
    root.add_argument("--version", action="version", version=f"edgefleet {installed_version()}")
    commands = root.add_subparsers(dest="command", required=True)
    settings.add_arguments(
        commands.add_parser(
            "serve", help="Run everything in one process (SQLite by default); migrates first."
        )
    )
    settings.add_arguments(
        commands.add_parser("controller", help="Run the northbound API alone (Kubernetes mode).")
    )
    settings.add_arguments(
        commands.add_parser(
            "southbound", help="Run the device WebSocket service alone (Kubernetes mode)."
        )
    )
    db = commands.add_parser("db", help="Database maintenance.")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    settings.add_arguments(db_commands.add_parser("upgrade", help="Apply the schema migrations."))
    return root


async def db_upgrade(config: settings.Settings) -> None:
    from edgefleet.controller.store import Store

    store = Store.from_url(config.db.url, config.db.timeout)
    try:
        await store.migrate()
    finally:
        await store.close()
    log.info("database schema is up to date")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        config = settings.load(args)
    except settings.SettingsError as exc:
        sys.stderr.write(f"edgefleet: {exc}\n")
        return 2
    logs.configure(config.log)

    def body() -> int:
        run(command(args, config))
        return 0

    return explaining_missing_extra("edgefleet", "server", body)


def command(args: argparse.Namespace, config: settings.Settings) -> Coroutine[Any, Any, None]:
    """The coroutine of the command; the server's modules (the ``server`` extra) are
    imported only here, so that without them the CLI can say what to install."""
    if args.command == "db":
        return db_upgrade(config)
    from edgefleet.controller import serve

    runners = {
        "serve": serve.serve,
        "controller": serve.serve_controller,
        "southbound": serve.serve_southbound,
    }
    return runners[args.command](config)


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop where it is installed: the same asyncio API, with a faster
    event loop (measured in bench/northbound.py)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


if __name__ == "__main__":
    sys.exit(main())
