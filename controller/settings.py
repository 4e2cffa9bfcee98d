"""Every edgefleet setting, defined once.

Each field below is a CLI flag (``--db-url``) and an environment variable
(``EDGEFLEET_DB_URL``); a flag wins over the variable, the variable over the
default. The CLI builds its options from these dataclasses, and the README's
configuration table is checked against them by a test, so this file is the one
place to add or change a setting.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from edgefleet.agent import protocol

ENV_PREFIX = "EDGEFLEET_"


def setting(default: Any, flag: str, doc: str, choices: tuple[str, ...] = ()) -> Any:
    """A settings field: its default, its flag name, what it is for, and the only
    values it takes, if it is one of a few words."""
    return field(default=default, metadata={"flag": flag, "doc": doc, "choices": choices})


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = setting(
        "sqlite+aiosqlite:///./edgefleet.db",
        "db-url",
        "SQLAlchemy URL of the store: sqlite+aiosqlite:///path or "
        "mysql+aiomysql://user:pass@host:3306/db",
    )
    timeout: float = setting(
        5.0,
        "db-timeout",
        "Seconds a database operation may take before the API answers 503 DATABASE_ERROR.",
    )
    pool_size: int = setting(
        16,
        "db-pool-size",
        "Connections kept open to MySQL for writes, and as many again for reads; "
        "requests beyond wait for one.",
    )


@dataclass(frozen=True)
class ApiSettings:
    host: str = setting("127.0.0.1", "api-host", "Northbound REST API listen address.")
    port: int = setting(8080, "api-port", "Northbound REST API listen port.")
    token: str | None = setting(
        None,
        "api-token",
        "The bootstrap bearer token for the REST API; it acts as an administrator. "
        "Standalone: generated and printed once at start-up when unset.",
    )
    bcrypt_rounds: int = setting(
        12, "bcrypt-rounds", "bcrypt cost factor for device and user passwords (4-31)."
    )
    worker_id: int = setting(
        0,
        "worker-id",
        "Snowflake worker id (0-1023); give every process that registers devices its own.",
    )


@dataclass(frozen=True)
class AuthSettings:
    jwt_key: str | None = setting(
        None,
        "jwt-key",
        "Secret key that signs access tokens (HS256, at least 32 characters); default: a "
        "new random key per start, so everyone signs in again after a restart.",
    )
    jwt_previous_keys: str | None = setting(
        None,
        "jwt-previous-keys",
        "Comma-separated keys that signed access tokens before --jwt-key: still "
        "accepted, never used to sign, so a key can be rotated without signing anyone out.",
    )
    access_token_ttl: float = setting(
        900.0, "access-token-ttl", "Seconds an access token (JWT) stays valid."
    )
    refresh_token_ttl: float = setting(
        7 * 24 * 3600.0, "refresh-token-ttl", "Seconds a refresh token stays valid."
    )
    admin_username: str = setting(
        "admin", "admin-username", "Name of the first administrator, see --admin-password."
    )
    admin_password: str | None = setting(
        None,
        "admin-password",
        "Creates the first administrator (--admin-username) at start-up while there is "
        "no user at all; ignored afterwards.",
    )
    allow_registration: bool = setting(
        False,
        "allow-registration",
        "Let anyone create an account (POST /api/v1/auth/register); it gets the viewer role.",
    )
    failures_per_user: float = setting(
        10.0,
        "auth-failures-per-user",
        "Failed sign-ins a minute for one user name before its sign-ins are refused.",
    )
    failures_per_address: float = setting(
        30.0,
        "auth-failures-per-address",
        "Failed sign-ins a minute from one source address before its sign-ins are refused.",
    )
    trust_forwarded_for: bool = setting(
        False,
        "trust-forwarded-for",
        "Take the source address from the last X-Forwarded-For entry (behind an Ingress "
        "or load balancer) for the sign-in limits and the audit log.",
    )
    principal_cache_ttl: float = setting(
        5.0,
        "principal-cache-ttl",
        "Seconds a caller's roles are cached between requests; changes made through "
        "this process (revoking a key, a new role) take effect at once.",
    )


@dataclass(frozen=True)
class StreamSettings:
    poll_interval: float = setting(
        0.25,
        "stream-poll-interval",
        "Seconds between two reads of the device event log for the event stream.",
    )
    keepalive: float = setting(
        15.0, "stream-keepalive", "Seconds between keep-alive comments on an idle event stream."
    )
    status_interval: float = setting(
        15.0,
        "stream-status-interval",
        "Least seconds between two device.status events of one device.",
    )
    client_queue: int = setting(
        2000,
        "stream-client-queue",
        "Events waiting for one stream client; a client that falls further behind is "
        "disconnected (it resumes with Last-Event-ID).",
    )


@dataclass(frozen=True)
class SouthboundSettings:
    host: str = setting(
        "127.0.0.1",
        "ws-host",
        "Listen address of the device port (/ws, /healthz) and the ops and internal ports.",
    )
    port: int = setting(9090, "ws-port", "Device WebSocket listen port.")
    heartbeat_interval: float = setting(
        protocol.HEARTBEAT_INTERVAL,
        "heartbeat-interval",
        "Seconds between a device's heartbeats (told to devices at login).",
    )
    status_interval: float = setting(
        protocol.STATUS_INTERVAL,
        "status-interval",
        "Seconds between a device's status uploads (told at login).",
    )
    status_sample_interval: float = setting(
        30.0,
        "status-sample-interval",
        "Least seconds between two points of a connected device's last hour kept in "
        "memory for its chart (120 points are kept).",
    )
    heartbeat_tolerance: float = setting(
        protocol.HEARTBEAT_TOLERANCE,
        "heartbeat-tolerance",
        "Silence tolerated while a device has no missed heartbeat.",
    )
    heartbeat_tolerance_after_failure: float = setting(
        protocol.HEARTBEAT_TOLERANCE_AFTER_FAILURE,
        "heartbeat-tolerance-after-failure",
        "Silence tolerated once a device has missed one (it is then 'unknown').",
    )
    heartbeat_failures: int = setting(
        protocol.MAX_FAILURES,
        "heartbeat-failures",
        "Missed heartbeats in a row before the session is closed.",
    )
    metered_heartbeat_interval: float = setting(
        24.0,
        "metered-heartbeat-interval",
        "Seconds between heartbeats of devices on metered links (extension 'metered'); their "
        "tolerances scale with it, so a dead link is noticed after 3.7 intervals (89 s).",
    )
    metered_status_interval: float = setting(
        300.0,
        "metered-status-interval",
        "Longest gap between two status uploads of a device on a metered link.",
    )
    metered_status_change: float = setting(
        10.0,
        "metered-status-change",
        "Points a CPU, memory or disk percentage must move for a metered device to send "
        "its status before --metered-status-interval is up.",
    )
    login_timeout: float = setting(
        protocol.LOGIN_TIMEOUT,
        "login-timeout",
        "Seconds a new connection has to send its login frame.",
    )
    command_timeout: float = setting(
        protocol.COMMAND_TIMEOUT,
        "command-timeout",
        "Default seconds a command waits for the device's result.",
    )
    max_frame_bytes: int = setting(
        protocol.MAX_FRAME_BYTES,
        "max-frame-bytes",
        "Largest frame accepted; a larger one closes the connection (1009).",
    )
    max_frames_per_second: int = setting(
        protocol.MAX_FRAMES_PER_SECOND,
        "max-frames-per-second",
        "Frames per second per device; more are dropped, twice as many disconnect.",
    )
    login_concurrency: int = setting(
        4, "login-concurrency", "Password checks (bcrypt) running at once; more logins queue."
    )
    login_max_wait: float = setting(
        10.0,
        "login-max-wait",
        "Longest a password login may queue for its bcrypt check; one that would wait "
        "longer is answered 'server busy' (1013) at once, and the device comes back later.",
    )
    login_queue_order: str = setting(
        "fifo",
        "login-queue-order",
        "Which queued password check goes next: fifo (oldest) or lifo (newest).",
    )
    password_pepper: str | None = setting(
        None,
        "password-pepper",
        "Secret key of the verified-credential cache (a keyed digest of each device's last "
        "good password, so its next login skips bcrypt); share it between replicas, keep it "
        "out of the database. Default: a new random key per start.",
    )
    login_attempts_per_device: float = setting(
        12.0,
        "login-attempts-per-device",
        "Login attempts a minute one device may make; more are refused unchecked.",
    )
    login_failures_per_address: float = setting(
        60.0,
        "login-failures-per-address",
        "Failed logins a minute from one source address before its logins are refused.",
    )
    metrics_port: int = setting(
        9092,
        "metrics-port",
        "Port of the southbound's /metrics, /healthz and /readyz (Prometheus, probes); "
        "keep it away from devices: the metrics name every device.",
    )
    tls_cert_file: str | None = setting(
        None,
        "tls-cert-file",
        "PEM certificate chain: set, devices connect with wss:// (TLS at the southbound "
        "itself rather than at a load balancer or Ingress).",
    )
    tls_key_file: str | None = setting(
        None, "tls-key-file", "PEM private key of --tls-cert-file (if not in the same file)."
    )
    internal_port: int = setting(
        9091,
        "internal-port",
        "Port of the southbound's internal API (live status, commands) for the controller.",
    )
    internal_token: str | None = setting(
        None,
        "internal-token",
        "Bearer token between controller and southbound; without it the internal API "
        "stays closed (standalone mode needs none).",
    )
    advertise_address: str = setting(
        "127.0.0.1",
        "advertise-address",
        "Address the controller reaches this southbound at (the pod IP on Kubernetes).",
    )
    instance: str = setting(
        "",
        "instance",
        "Name of this southbound instance in device_sessions (default: the host name).",
    )
    instance_timeout: float = setting(
        60.0,
        "instance-timeout",
        "Seconds without a beat from a southbound instance (a dead pod) before the others "
        "release its sessions and its devices go offline; the same for every instance.",
    )
    instance_beat_interval: float = setting(
        15.0,
        "instance-beat-interval",
        "Seconds between two beats of a southbound instance in the database; each beat "
        "releases the sessions of lost instances and counts the processes sharing "
        "--kube-status-budget. Well under --instance-timeout; the same for every instance.",
    )
    token_key: str | None = setting(
        None,
        "token-key",
        "Secret key that signs session tokens (share it between southbound replicas); "
        "default: a new random key per start, so tokens end with the process.",
    )
    token_ttl: float = setting(7 * 24 * 3600.0, "token-ttl", "Seconds a session token stays valid.")
    per_device_metrics: bool = setting(
        True,
        "per-device-metrics",
        "Export per-device gauges on /metrics; turn off for very large fleets.",
    )


DEFAULT_CATEGORIES = (
    "social_activities,pets,single_person,foods,travel_scenery,screenshot,idcard,other"
)
DEFAULT_PROMPT = (
    "You classify one image into exactly one of these categories: {categories}. "
    'Answer with JSON only: {{"category": "<one of the categories>", '
    '"confidence": <a number from 0 to 1>}}.'
)


@dataclass(frozen=True)
class DataSettings:
    """Data from devices: the file store, retention, and image analysis."""

    files_dir: str = setting(
        "./edgefleet-files",
        "files-dir",
        "Folder of the file store (content-addressed, sharded by digest) when --files-url "
        "is not set; every process that serves files must see the same folder.",
    )
    files_url: str | None = setting(
        None,
        "files-url",
        "s3://bucket/prefix: keep files in an S3-compatible object store (Alibaba OSS, "
        "MinIO, AWS S3) instead of --files-dir.",
    )
    files_endpoint: str | None = setting(
        None,
        "files-endpoint",
        "Endpoint URL of the object store, e.g. https://oss-cn-hangzhou.aliyuncs.com "
        "(unset: AWS S3).",
    )
    files_region: str = setting("us-east-1", "files-region", "Region of the object store.")
    files_access_key: str | None = setting(
        None, "files-access-key", "Access key id of the object store."
    )
    files_secret_key: str | None = setting(
        None, "files-secret-key", "Secret access key of the object store (from a Secret)."
    )
    files_addressing_style: str = setting(
        "virtual",
        "files-addressing-style",
        "virtual (bucket.host, as Alibaba OSS requires) or path (host/bucket, as MinIO "
        "usually wants).",
        choices=("virtual", "path"),
    )
    max_file_bytes: int = setting(
        10 * 1024 * 1024,
        "max-file-bytes",
        "Largest file a device may upload (PUT /files/{sha256}); larger ones get 413.",
    )
    max_artifact_bytes: int = setting(
        2 * 1024 * 1024 * 1024,
        "max-artifact-bytes",
        "Largest software artifact an operator may upload (POST /api/v1/artifacts); "
        "larger ones get 413.",
    )
    record_retention_days: float = setting(
        90.0,
        "record-retention-days",
        "Records older than this are deleted in batches; a file no record names any more "
        "is deleted after the same time.",
    )
    retention_interval: float = setting(
        3600.0, "retention-interval", "Seconds between two passes of the retention job."
    )
    analyse_kinds: str = setting(
        "",
        "analyse-kinds",
        "Comma-separated record kinds whose image files are classified in the background "
        "(needs --classifier-url).",
    )
    classifier_url: str | None = setting(
        None,
        "classifier-url",
        "Base URL of an OpenAI-compatible vision endpoint (its /chat/completions is "
        "called), e.g. https://dashscope.aliyuncs.com/compatible-mode/v1; unset: "
        "analysis and the classify API are off.",
    )
    classifier_model: str = setting(
        "qwen-vl-plus", "classifier-model", "Model name sent to the classifier."
    )
    classifier_key_file: str | None = setting(
        None,
        "classifier-key-file",
        "File holding the classifier's API key (a mounted Secret); sent as a bearer token.",
    )
    classifier_categories: str = setting(
        DEFAULT_CATEGORIES,
        "classifier-categories",
        "Comma-separated categories the classifier chooses from.",
    )
    classifier_prompt: str = setting(
        DEFAULT_PROMPT,
        "classifier-prompt",
        "System prompt of the classifier; {categories} is replaced by the list.",
    )
    classifier_timeout: float = setting(
        60.0, "classifier-timeout", "Seconds one classifier call may take."
    )
    analysis_concurrency: int = setting(
        2, "analysis-concurrency", "Classifier calls the analysis worker makes at once."
    )
    analysis_max_attempts: int = setting(
        5,
        "analysis-max-attempts",
        "Attempts at a record's analysis before it is marked failed.",
    )
    analysis_retry_delay: float = setting(
        30.0,
        "analysis-retry-delay",
        "Seconds before the first retry of a failed analysis; doubles with each attempt.",
    )

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k.strip() for k in self.analyse_kinds.split(",") if k.strip())

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(c.strip() for c in self.classifier_categories.split(",") if c.strip())


@dataclass(frozen=True)
class JobSettings:
    """The rollout scheduler's clock (FLEET.md "Jobs"); tests shrink the minute
    rather than sleep through real ones."""

    tick: float = setting(
        1.0,
        "job-tick",
        "Seconds between two passes of the job scheduler (admissions, timeouts, aborts).",
    )
    minute: float = setting(
        60.0,
        "job-minute",
        "Seconds a rollout minute lasts: a job's max_per_minute admits that many devices "
        "per this many seconds. Keep 60 outside tests.",
    )


@dataclass(frozen=True)
class KubeSettings:
    namespace: str | None = setting(
        None,
        "kube-namespace",
        "Namespace of the Device and DeviceGroup resources. Set, it turns on Kubernetes "
        "mode: the controller runs the operator and writes REST changes to the resources, "
        "the southbound mirrors live status into them.",
    )
    kubeconfig: str | None = setting(
        None,
        "kubeconfig",
        "kubeconfig file; unset: the pod's service account, else ~/.kube/config.",
    )
    status_budget: float = setting(
        20.0,
        "kube-status-budget",
        "Device status writes a second for the whole installation, whatever the fleet size "
        "and the replicas: each southbound replica, and the controller's resync while it "
        "writes, takes an equal share (give every process the same value).",
    )
    metrics_interval: float = setting(
        60.0,
        "kube-metrics-interval",
        "Seconds between two writes of one device's metrics summary into its status.",
    )
    resync_interval: float = setting(
        300.0,
        "kube-resync-interval",
        "Seconds between the controller's passes that write offline into Devices whose "
        "status says online while nothing holds them.",
    )


@dataclass(frozen=True)
class ProcessSettings:
    shutdown_grace: float = setting(
        25.0,
        "shutdown-grace",
        "Seconds a signalled process may take to stop cleanly (write what is left, close "
        "sessions); past it, it exits anyway. Keep it under Kubernetes' grace period.",
    )


@dataclass(frozen=True)
class LogSettings:
    level: str = setting(
        "INFO",
        "log-level",
        "Log level: DEBUG, INFO, WARNING, ERROR.",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
    )
    format: str = setting(
        "auto",
        "log-format",
        "Log line format: json (one object a line), text (key=value), or auto: text when "
        "stderr is a terminal, json when it is not.",
        choices=("auto", "json", "text"),
    )


@dataclass(frozen=True)
class Settings:
    db: DatabaseSettings = field(default_factory=DatabaseSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    stream: StreamSettings = field(default_factory=StreamSettings)
    southbound: SouthboundSettings = field(default_factory=SouthboundSettings)
    data: DataSettings = field(default_factory=DataSettings)
    jobs: JobSettings = field(default_factory=JobSettings)
    kube: KubeSettings = field(default_factory=KubeSettings)
    process: ProcessSettings = field(default_factory=ProcessSettings)
    log: LogSettings = field(default_factory=LogSettings)


@dataclass(frozen=True)
class SettingInfo:
    """One setting as the CLI, the environment and the docs see it."""

    group: str
    name: str
    flag: str
    env: str
    type: type
    default: Any
    doc: str
    choices: tuple[str, ...] = ()


def describe() -> list[SettingInfo]:
    """All settings, in declaration order."""
    infos = []
    for group in dataclasses.fields(Settings):
        group_cls = group.default_factory  # type: ignore[misc]
        hints = get_type_hints(group_cls)
        for f in dataclasses.fields(group_cls):
            flag = f.metadata["flag"]
            value_type = hints[f.name]
            if value_type not in (str, int, float, bool):
                value_type = str  # the only optional settings are strings
            infos.append(
                SettingInfo(
                    group=group.name,
                    name=f.name,
                    flag=flag,
                    env=ENV_PREFIX + flag.replace("-", "_").upper(),
                    type=value_type,
                    default=f.default,
                    doc=f.metadata["doc"],
                    choices=f.metadata["choices"],
                )
            )
    return infos


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per setting; unset flags stay ``None`` so env and defaults apply.

    Flags stay text here: ``load`` converts them like the environment's values, so a
    bad one is one line naming the flag rather than argparse's usage and error."""
    for info in describe():
        parser.add_argument(
            f"--{info.flag}",
            dest=f"{info.group}__{info.name}",
            default=None,
            metavar="|".join(info.choices) if info.choices else info.type.__name__.upper(),
            help=f"{info.doc} [env {info.env}, default {info.default!r}]",
        )


def load(args: argparse.Namespace | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings: flags first, then ``EDGEFLEET_*`` variables, then defaults."""
    env = os.environ if env is None else env
    for name, replacement in REPLACED.items():
        if name in env:
            raise SettingsError(f"{name} was replaced by {replacement}")
    values: dict[str, dict[str, Any]] = {}
    for info in describe():
        flag = getattr(args, f"{info.group}__{info.name}", None) if args else None
        if flag is not None:
            values.setdefault(info.group, {})[info.name] = _convert(f"--{info.flag}", flag, info)
        elif info.env in env:
            values.setdefault(info.group, {})[info.name] = _convert(info.env, env[info.env], info)
    groups = {
        f.name: f.default_factory(**values.get(f.name, {}))  # type: ignore[misc]
        for f in dataclasses.fields(Settings)
    }
    settings = Settings(**groups)
    _check(settings)
    return settings


class SettingsError(ValueError):
    """A setting has a value edgefleet cannot run with."""


def _check(settings: Settings) -> None:
    if not 4 <= settings.api.bcrypt_rounds <= 31:
        raise SettingsError("--bcrypt-rounds must be between 4 and 31")
    if not 0 <= settings.api.worker_id <= 1023:
        raise SettingsError("--worker-id must be between 0 and 1023")
    if settings.southbound.login_queue_order not in ("fifo", "lifo"):
        raise SettingsError("--login-queue-order must be fifo or lifo")
    if settings.data.files_url is not None and not settings.data.files_url.startswith("s3://"):
        raise SettingsError("--files-url must be s3://bucket[/prefix]")
    if settings.data.analysis_concurrency < 1:
        raise SettingsError("--analysis-concurrency must be at least 1")
    if settings.auth.jwt_key is not None and len(settings.auth.jwt_key) < 32:
        raise SettingsError("--jwt-key must be at least 32 characters")
    if settings.jobs.tick <= 0 or settings.jobs.minute <= 0:
        raise SettingsError("--job-tick and --job-minute must be more than 0")
    if settings.kube.status_budget <= 0:
        raise SettingsError("--kube-status-budget must be more than 0")
    southbound = settings.southbound
    if not 0 < southbound.instance_beat_interval < southbound.instance_timeout:
        raise SettingsError(
            "--instance-beat-interval must be more than 0 and under --instance-timeout"
        )


REPLACED = {
    "EDGEFLEET_KUBE_STATUS_RATE": "EDGEFLEET_KUBE_STATUS_BUDGET (writes a second for the "
    "whole installation, shared by every replica, no longer per pod)",
}
"""Variables of settings that no longer exist, and what replaced them: refused with
a reason rather than silently ignored."""


_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True}
_BOOLEANS |= {"0": False, "false": False, "no": False, "off": False}


def _convert(source: str, raw: str, info: SettingInfo) -> Any:
    """``raw`` (a flag's or a variable's text) as the setting's type, or a
    ``SettingsError`` that names ``source`` and says what it expected."""
    if not isinstance(raw, str):
        return raw  # a value given in code (a Namespace built by hand) is typed already
    if info.choices:
        chosen = {choice.lower(): choice for choice in info.choices}.get(raw.strip().lower())
        if chosen is None:
            raise SettingsError(f"{source}: expected {', '.join(info.choices)}; got {raw!r}")
        return chosen
    try:
        if info.type is bool:
            return _BOOLEANS[raw.strip().lower()]
        return info.type(raw)
    except (KeyError, ValueError):
        raise SettingsError(f"{source}: expected {_EXPECTED[info.type]}; got {raw!r}") from None
