"""Every ``edgefleet-agent`` setting, defined once.

Each field is a flag (``--server``), an environment variable
(``EDGEFLEET_AGENT_SERVER``) and a key of the optional TOML file given with
``--config`` (``server = "wss://…"``). A flag wins over the variable, the variable
over the file, the file over the default. The README's table is checked against
this class by a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from edgefleet.agent import protocol

ENV_PREFIX = "EDGEFLEET_AGENT_"
HOME = Path("~/.edgefleet-agent")


def setting(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class AgentSettings:
    server: str = setting("ws://127.0.0.1:9090/ws", "WebSocket URL of the southbound.")
    device_id: str | None = setting(None, "Device id (or give --sn and --model).")
    sn: str | None = setting(None, "Serial number, with --model, for a device without an id.")
    model: str | None = setting(None, "Device model, with --sn.")
    password: str | None = setting(None, "Device password (prefer --password-file).")
    password_file: str | None = setting(
        None, "File holding the password, e.g. a mounted Kubernetes Secret."
    )
    ca_file: str | None = setting(
        None,
        "PEM CA certificates that the wss:// server's certificate must chain to, "
        "instead of the system's.",
    )
    client_cert_file: str | None = setting(
        None, "PEM client certificate (chain) for mutual TLS, shown when the server asks."
    )
    client_key_file: str | None = setting(
        None, "PEM private key of --client-cert-file (if not in the same file)."
    )
    state_dir: str = setting(
        str(HOME / "state"), "Directory of the session token and device id (mode 0600)."
    )
    log_dir: str = setting(
        str(HOME / "log"), "Directory of the operation log, rotated every 3 days."
    )
    sftp_host: str | None = setting(None, "SFTP host for upload_log; unset: uploads fail.")
    sftp_port: int = setting(22, "SFTP port.")
    sftp_user: str = setting("edgefleet", "SFTP user name.")
    sftp_password_file: str | None = setting(None, "File holding the SFTP password.")
    sftp_known_hosts: str = setting(
        "~/.ssh/known_hosts", "known_hosts file the SFTP server's host key must be in."
    )
    sftp_check_host_key: bool = setting(True, "Check the SFTP host key; turn off only in a lab.")
    max_retries: int = setting(
        -1,
        "Reconnections tried after a failed attempt before giving up (1: one retry, two "
        "attempts in all); -1: never give up.",
    )
    commands: str | None = setting(
        None, "Python module whose @command functions become custom commands."
    )
    config_hook: str | None = setting(
        None,
        "Command run with each new desired configuration as JSON on its standard input "
        "(exit status 0: applied); unset: only an @agent.on_config handler applies it.",
    )
    reconnect_delay: float = setting(
        protocol.RECONNECT_DELAY, "Seconds before the first reconnect attempt."
    )
    reconnect_max_delay: float = setting(60.0, "Cap of the doubling reconnect delay.")
    heartbeat_interval: float = setting(
        protocol.HEARTBEAT_INTERVAL,
        "Seconds between heartbeats, until the server announces its own.",
    )
    status_interval: float = setting(
        protocol.STATUS_INTERVAL,
        "Seconds between status uploads, until the server announces its own.",
    )
    answer_timeout: float = setting(
        protocol.ANSWER_TIMEOUT, "Seconds a ping or status upload waits for its answer."
    )
    restart_wait: float = setting(
        protocol.RESTART_WAIT, "Seconds restart waits for the server's confirm."
    )
    disk_path: str = setting("/", "Filesystem whose usage is reported as Disk_info.")
    metered: bool = setting(
        False,
        "On a metered link (4G): the server's longer heartbeat, and the status sent only "
        "when it moved (checked every --status-interval).",
    )
    installer: str | None = setting(
        None,
        "Command that installs a downloaded update (section 9), run with the file's path "
        "as its last argument; exit status 0 means installed. Set: the agent takes updates.",
    )
    download_retries: int = setting(
        5, "Times a broken update download is resumed (with Range) before the update fails."
    )
    queue_max_mb: float = setting(
        512.0,
        "Most megabytes of records and files queued on the device for upload; past it "
        "the oldest records are dropped (counted and logged).",
    )
    spool_dir: str | None = setting(
        str(HOME / "spool"),
        "Folder where other programs drop records as JSON files (and edgefleet-agent "
        "publish writes them); empty: no spool folder.",
    )

    def secret(self) -> str | None:
        """The password: from ``password_file`` when given. Blocking; read again at
        every password login, so a rotated Kubernetes Secret needs no restart."""
        if self.password_file:
            return read_secret(self.password_file)
        return self.password


def read_secret(path: str) -> str:
    """A secret from a file, without the trailing newline editors and ``echo`` add."""
    return Path(path).expanduser().read_text(encoding="utf-8").strip()


class SettingsError(ValueError):
    """A setting the agent cannot run with; the CLI prints it and exits 2."""


@dataclass(frozen=True)
class SettingInfo:
    name: str
    flag: str
    env: str
    type: type
    default: Any
    doc: str


def describe() -> list[SettingInfo]:
    hints = get_type_hints(AgentSettings)
    infos = []
    for f in dataclasses.fields(AgentSettings):
        value_type = hints[f.name] if hints[f.name] in (str, int, float, bool) else str
        flag = f.name.replace("_", "-")
        infos.append(
            SettingInfo(
                f.name, flag, ENV_PREFIX + f.name.upper(), value_type, f.default, f.metadata["doc"]
            )
        )
    return infos


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML file with any of the settings below as keys.")
    for info in describe():
        parser.add_argument(
            f"--{info.flag}",
            dest=info.name,
            default=None,
            metavar=info.type.__name__.upper(),
            help=f"{info.doc} [env {info.env}, default {info.default!r}]",
        )


def load(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> AgentSettings:
    env = os.environ if env is None else env
    config_path = getattr(args, "config", None) or env.get(ENV_PREFIX + "CONFIG")
    from_file = _read_toml(Path(config_path)) if config_path else {}
    known = {info.name for info in describe()}
    unknown = sorted(set(from_file) - known)
    if unknown:
        raise SettingsError(f"{config_path}: unknown keys {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for info in describe():
        for source, raw in (
            (f"--{info.flag}", getattr(args, info.name, None)),
            (info.env, env.get(info.env)),
            (f"{config_path}: {info.name}", from_file.get(info.name)),
        ):
            if raw is not None:
                values[info.name] = _convert(source, raw, info.type)
                break
    settings = AgentSettings(**values)
    _check(settings)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as config:
            raw = tomllib.load(config)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{path}: {exc}") from exc
    return {key.replace("-", "_"): value for key, value in raw.items()}


def _convert(source: str, raw: Any, target: type) -> Any:
    if isinstance(raw, target) and not (target is int and isinstance(raw, bool)):
        return raw
    if target is str and isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)  # device_id = 1790001234567890 in a TOML file
    if target is bool and isinstance(raw, str) and raw.strip().lower() in _BOOLEANS:
        return _BOOLEANS[raw.strip().lower()]
    if target in (int, float) and isinstance(raw, (str, int)) and not isinstance(raw, bool):
        try:
            return target(raw)
        except ValueError:
            pass
    raise SettingsError(f"{source}: expected {_EXPECTED[target]}; got {raw!r}")


_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "text"}


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True}
_BOOLEANS |= {"0": False, "false": False, "no": False, "off": False}


def _check(settings: AgentSettings) -> None:
    if not settings.device_id and not (settings.sn and settings.model):
        raise SettingsError("give --device-id, or --sn and --model")
    if not settings.password and not settings.password_file:
        raise SettingsError("give --password-file (or --password)")
    if not settings.server.startswith(("ws://", "wss://")):
        raise SettingsError("--server must be a ws:// or wss:// URL")
    tls_files = [
        f for f in ("ca_file", "client_cert_file", "client_key_file") if getattr(settings, f)
    ]
    if tls_files and not settings.server.startswith("wss://"):
        raise SettingsError(f"--{tls_files[0].replace('_', '-')} needs a wss:// --server")
    if settings.client_key_file and not settings.client_cert_file:
        raise SettingsError("--client-key-file needs --client-cert-file")
    if settings.queue_max_mb <= 0:
        raise SettingsError("--queue-max-mb must be positive")
    for name in ("reconnect_delay", "heartbeat_interval", "status_interval", "answer_timeout"):
        if getattr(settings, name) <= 0:
            raise SettingsError(f"--{name.replace('_', '-')} must be positive")
