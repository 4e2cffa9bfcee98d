"""``edgefleet``: the command line of the server side."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import re
import sys
from collections.abc import Coroutine
from typing import Any

from edgefleet.agent.distribution import explaining_missing_extra, installed_version
from edgefleet.controller import logs, settings

log = logging.getLogger("edgefleet")

# The rule of the REST API's password fields (printable ASCII, bcrypt's 72 bytes).
PASSWORD = re.compile(r"^[\x20-\x7e]{12,72}$")


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
    users = commands.add_parser("users", help="User accounts.")
    users_commands = users.add_subparsers(dest="users_command", required=True)
    create_admin = users_commands.add_parser(
        "create-admin",
        help="Create an administrator (migrates the database first). The password is "
        "prompted for, or read from --password-file.",
    )
    create_admin.add_argument("username")
    create_admin.add_argument(
        "--password-file", help="File whose first line is the password (e.g. a mounted Secret)."
    )
    settings.add_arguments(create_admin)
    return root


def read_password(path: str | None) -> str:
    """From the file, else typed twice at a terminal, else one line of stdin."""
    if path:
        with open(path, encoding="utf-8") as file:
            return file.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        raise settings.SettingsError("the passwords differ")
    return first


async def users_create_admin(config: settings.Settings, username: str, password: str) -> None:
    from edgefleet.controller.access.accounts import SETUP, AccountWrites
    from edgefleet.controller.access.authenticator import Authenticator
    from edgefleet.controller.access.tokens import JwtKeys
    from edgefleet.controller.api.errors import describe_failure
    from edgefleet.controller.ids import SnowflakeGenerator
    from edgefleet.controller.store import Store, UserConflict
    from edgefleet.controller.writes import Auditor

    store = Store.from_url(config.db.url, config.db.timeout)
    try:
        await store.migrate()
        accounts = AccountWrites(
            store,
            Authenticator(store, JwtKeys.from_settings(None, None), "", 0.0),
            Auditor(store, describe_failure),
            SnowflakeGenerator(config.api.worker_id),
            config.api.bcrypt_rounds,
        )
        try:
            await accounts.create_admin(SETUP, username, password)
        except UserConflict as exc:
            sys.stderr.write(f"edgefleet: {exc}\n")
            raise SystemExit(1) from None
    finally:
        await store.close()
    log.info("administrator created", extra={"username": username})


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
        password = read_password(args.password_file) if args.command == "users" else None
        if password is not None and not PASSWORD.match(password):
            raise settings.SettingsError("the password must be 12 to 72 printable ASCII characters")
    except (settings.SettingsError, OSError) as exc:
        sys.stderr.write(f"edgefleet: {exc}\n")
        return 2
    logs.configure(config.log)

    def body() -> int:
        run(command(args, config, password))
        return 0

    return explaining_missing_extra("edgefleet", "server", body)


def command(
    args: argparse.Namespace, config: settings.Settings, password: str | None = None
) -> Coroutine[Any, Any, None]:
    """The coroutine of the command; the server's modules (the ``server`` extra) are
    imported only here, so that without them the CLI can say what to install."""
    if args.command == "db":
        return db_upgrade(config)
    if args.command == "users":
        return users_create_admin(config, args.username, password or "")
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
