"""Request and response models of the REST API.

The handlers validate with these, the responses are serialised with these, and
``openapi.py`` builds the OpenAPI document from these: there is no second copy.
Ids are snowflakes, carried as decimal strings because JavaScript numbers lose
precision above 2**53.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Generic, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    RootModel,
    StringConstraints,
    WithJsonSchema,
)

from edgefleet.agent import protocol
from edgefleet.controller.access.permissions import PERMISSIONS
from edgefleet.controller.ids import MAX_ID
from edgefleet.controller.passwords import MAX_BYTES, MIN_LENGTH
from edgefleet.controller.store.selectors import (
    LABEL_KEY_MAX,
    LABEL_KEY_PATTERN,
    LABEL_VALUE_MAX,
    LABEL_VALUE_PATTERN,
    LABELS_MAX,
    NONEMPTY_SELECTOR_PATTERN,
    SELECTOR_MAX,
    SELECTOR_PATTERN,
    InvalidSelector,
    check_labels,
    parse_selector,
)
from edgefleet.controller.stream import STREAM_TYPES


def _decimal_at_most(bound: int) -> str:
    """A regular expression for the decimal numbers 1 to ``bound``, so the OpenAPI
    document states the id range exactly instead of a looser pattern."""
    digits = str(bound)
    width = len(digits)
    choices = [rf"[1-9][0-9]{{0,{width - 2}}}"]  # fewer digits than the bound
    for i, digit in enumerate(digits):
        lowest = 1 if i == 0 else 0
        if int(digit) > lowest:
            rest = width - i - 1
            tail = rf"[0-9]{{{rest}}}" if rest else ""
            choices.append(rf"{digits[:i]}[{lowest}-{int(digit) - 1}]{tail}")
    choices.append(digits)
    return "^(" + "|".join(choices) + ")$"


ID_PATTERN = _decimal_at_most(MAX_ID)
_ID = re.compile(ID_PATTERN)


def _parse_id(value: Any) -> int:
    if not isinstance(value, str) or not _ID.match(value):
        raise ValueError("must be a decimal id string, 1 to 2**63-1")
    return int(value)


def _parse_rfc3339(value: Any) -> datetime:
    """RFC 3339 date-times only: no bare dates, no Unix timestamps."""
    if isinstance(value, str) and len(value) >= 16 and value[10] in "Tt ":
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError("must be an RFC 3339 date-time, e.g. 2026-11-22T10:00:00Z")


def _rfc3339(value: datetime) -> str:
    return value.isoformat(timespec="microseconds") + "Z"


def _to_naive_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


IdIn = Annotated[
    int,
    BeforeValidator(_parse_id),
    WithJsonSchema({"type": "string", "pattern": ID_PATTERN, "example": "1790001234567890"}),
]
IdOut = Annotated[int, PlainSerializer(str, return_type=str)]
Instant = Annotated[datetime, PlainSerializer(_rfc3339, return_type=str)]
InstantIn = Annotated[
    datetime,
    BeforeValidator(_parse_rfc3339),
    AfterValidator(_to_naive_utc),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
State = Literal["online", "unknown", "offline"]

# Formats shared with the Kubernetes CRD schemas (controller/kube/crds.py).
DEVICE_TYPE_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
MAC_PATTERN = r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$"
IMEI_PATTERN = r"^[0-9]{15}$"
NAME_MAX, HARDWARE_KEY_MAX, DESCRIPTION_MAX, VERSION_MAX = 128, 128, 1024, 64
Name = Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX)]
DeviceType = Annotated[str, StringConstraints(pattern=DEVICE_TYPE_PATTERN)]
Description = Annotated[str, StringConstraints(max_length=DESCRIPTION_MAX)]
HardwareKey = Annotated[str, StringConstraints(min_length=1, max_length=HARDWARE_KEY_MAX)]
Mac = Annotated[str, StringConstraints(pattern=MAC_PATTERN)]
Imei = Annotated[str, StringConstraints(pattern=IMEI_PATTERN)]
Version = Annotated[str, StringConstraints(min_length=1, max_length=VERSION_MAX)]
SoftwareState = Annotated[str, StringConstraints(min_length=1, max_length=32)]
# Printable ASCII keeps characters equal to bytes, so bcrypt's 72-byte limit is a
# plain length limit that the schema can state.
Password = Annotated[str, StringConstraints(pattern=rf"^[\x20-\x7e]{{{MIN_LENGTH},{MAX_BYTES}}}$")]
SearchText = Annotated[str, StringConstraints(min_length=1, max_length=128)]


def _selector_text(value: str) -> str:
    """The selector's canonical text; ``ValueError`` says where it is wrong."""
    try:
        return str(parse_selector(value))
    except InvalidSelector as exc:
        raise ValueError(f"invalid selector: {exc}") from exc


def _group_selector(value: str) -> str:
    text = _selector_text(value)
    if not text:
        raise ValueError("an empty selector would match every device; use null for none")
    return text


Labels = Annotated[
    dict[str, str],
    AfterValidator(check_labels),
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": LABELS_MAX,
            "propertyNames": {"maxLength": LABEL_KEY_MAX, "pattern": LABEL_KEY_PATTERN},
            "additionalProperties": {
                "type": "string",
                "maxLength": LABEL_VALUE_MAX,
                "pattern": LABEL_VALUE_PATTERN,
            },
            "description": "Kubernetes label syntax: a key is an optional DNS-subdomain "
            "prefix and '/', then a name of 1-63 letters, digits, '-', '_' or '.' "
            "beginning and ending with a letter or digit; a value is empty or such a "
            "name.",
            "example": {"site": "chengdu", "tier": "edge"},
        }
    ),
]
SELECTOR_SCHEMA = {
    "type": "string",
    "maxLength": SELECTOR_MAX,
    "pattern": SELECTOR_PATTERN,
    "description": "Kubernetes label-selector syntax: comma-separated "
    "requirements, all of which must hold: key=value, key!=value, "
    "key in (a,b), key notin (a,b), key, !key.",
    "example": "site=chengdu,tier in (edge,core),!retired",
}
"""How a selector is documented, wherever one is taken."""
SelectorText = Annotated[
    str,
    StringConstraints(max_length=SELECTOR_MAX),
    AfterValidator(_selector_text),
    WithJsonSchema(SELECTOR_SCHEMA),
]
GroupSelector = Annotated[
    str,
    StringConstraints(max_length=SELECTOR_MAX),
    AfterValidator(_group_selector),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": SELECTOR_MAX,
            "pattern": NONEMPTY_SELECTOR_PATTERN,
            "description": "The group's label selector (Kubernetes syntax): the devices "
            "it matches are members, besides those added by hand.",
            "example": "site=chengdu,tier in (edge,core)",
        }
    ),
]


class RequestModel(BaseModel):
    """Bodies are strict: unknown fields and wrong JSON types are errors, not guesses."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ParamsModel(BaseModel):
    """Path and query parameters arrive as text, so numbers and booleans are parsed."""

    model_config = ConfigDict(extra="ignore")


# --- parameters ---------------------------------------------------------------


class DevicePath(ParamsModel):
    device_id: IdIn


class GroupPath(ParamsModel):
    group_id: IdIn


class MemberPath(ParamsModel):
    group_id: IdIn
    device_id: IdIn


class PageQuery(ParamsModel):
    page: int = Field(1, ge=1, le=1_000_000, description="1-based page number.")
    per_page: int = Field(50, ge=1, le=500, description="Items per page, at most 500.")


class DeviceListQuery(PageQuery):
    state: State | None = Field(None, description="Only devices in this state.")
    type: DeviceType | None = Field(None, description="Only devices of this type.")
    group: IdIn | None = Field(None, description="Only members of this group (its id).")
    q: SearchText | None = Field(None, description="Text contained in the name or serial number.")
    selector: SelectorText | None = Field(
        None, description="Only devices whose labels match this Kubernetes label selector."
    )


class ExportQuery(ParamsModel):
    format: Literal["csv", "jsonl"] = Field(
        "csv", description="CSV with a header row, or JSON lines."
    )
    state: State | None = Field(None, description="Only devices in this state.")
    type: DeviceType | None = Field(None, description="Only devices of this type.")
    group: IdIn | None = Field(None, description="Only members of this group (its id).")
    q: SearchText | None = Field(None, description="Text contained in the name or serial number.")
    selector: SelectorText | None = Field(
        None, description="Only devices whose labels match this Kubernetes label selector."
    )


class GroupListQuery(PageQuery):
    q: SearchText | None = Field(None, description="Text contained in the group name.")


class EventListQuery(PageQuery):
    event: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = Field(
        None, description="Only events of this kind, e.g. `registered` or `online`."
    )
    since: InstantIn | None = Field(None, description="Events at or after (RFC 3339).")
    until: InstantIn | None = Field(None, description="Events before (RFC 3339).")


class ClearGroupQuery(ParamsModel):
    delete_devices: bool = Field(False, description="Also delete the devices themselves.")


# --- devices ------------------------------------------------------------------


class DeviceDetails(RequestModel):
    """The optional hardware and software fields, the same on create and change."""

    eth_mac: Mac | None = None
    wifi_mac: Mac | None = None
    lte_imei: Imei | None = None
    base_version: Version | None = None
    base_updated_at: InstantIn | None = None
    base_state: SoftwareState | None = None
    business_version: Version | None = None
    business_updated_at: InstantIn | None = None
    business_state: SoftwareState | None = None


class DeviceCreate(DeviceDetails):
    name: Name
    type: DeviceType = "generic"
    description: Description = ""
    hardware_sn: HardwareKey
    hardware_model: HardwareKey
    disabled: bool = False
    labels: Labels = Field(default_factory=dict)
    password: Password | None = Field(
        None,
        description="The device's password (12 to 72 printable ASCII characters). Leave "
        "it out to have a random one generated; either way it is returned once, in this "
        "answer only.",
    )


class DeviceUpdate(DeviceDetails):
    """Only the fields present change; ``null`` clears an optional field."""

    name: Name = None  # type: ignore[assignment]  # absent means unchanged; null is refused
    type: DeviceType = None  # type: ignore[assignment]
    description: Description = None  # type: ignore[assignment]
    hardware_sn: HardwareKey = None  # type: ignore[assignment]
    hardware_model: HardwareKey = None  # type: ignore[assignment]
    disabled: bool = None  # type: ignore[assignment]
    labels: Labels = Field(
        None,  # type: ignore[arg-type]
        description="The device's labels, all of them: the map replaces the old one.",
    )
    password: Password = Field(
        None,  # type: ignore[arg-type]
        description="A new password; sessions logged in with the old one stay, "
        "but their session tokens stop working.",
    )


class Device(BaseModel):
    device_id: IdOut
    name: str
    type: str
    description: str
    hardware_sn: str
    hardware_model: str
    eth_mac: str | None
    wifi_mac: str | None
    lte_imei: str | None
    base_version: str | None
    base_updated_at: Instant | None
    base_state: str | None
    business_version: str | None
    business_updated_at: Instant | None
    business_state: str | None
    state: State
    disabled: bool
    labels: Annotated[dict[str, str], BeforeValidator(lambda v: v or {})]
    k8s_namespace: str | None
    k8s_name: str | None
    created_at: Instant
    updated_at: Instant


class RegisteredDevice(Device):
    password: str = Field(description="Shown once: store it on the device now.")


class ImportRowResult(BaseModel):
    row: int = Field(description="1-based, counting the file's records (not its header).")
    status: Literal["registered", "failed"]
    device_id: IdOut | None = Field(None, description="The new device's id, when registered.")
    password: str | None = Field(
        None, description="Shown once: the device's password, when registered."
    )
    message: str | None = Field(None, description="Why the row was not registered.")


class ImportResult(BaseModel):
    rows: int
    registered: int
    failed: int
    results: list[ImportRowResult]


# --- groups and memberships ---------------------------------------------------


class GroupCreate(RequestModel):
    name: Name
    description: Description = ""
    selector: GroupSelector | None = None


class GroupUpdate(RequestModel):
    name: Name = None  # type: ignore[assignment]
    description: Description = None  # type: ignore[assignment]
    selector: GroupSelector | None = Field(
        None, description="A new selector; null makes the group static again."
    )


class Group(BaseModel):
    group_id: IdOut
    name: str
    description: str
    selector: str | None = Field(
        description="Devices matching it are members too (a dynamic group); null: none."
    )
    device_count: int = Field(description="Members, by hand and by the selector.")
    k8s_namespace: str | None
    k8s_name: str | None
    created_at: Instant
    updated_at: Instant


class GroupList(BaseModel):
    items: list[Group]


class GroupIds(RequestModel):
    group_ids: list[IdIn] = Field(max_length=1000)


class Membership(BaseModel):
    member: bool


class Removed(BaseModel):
    removed: int = Field(description="Memberships removed.")
    deleted_devices: int = Field(0, description="Devices deleted with them.")


class Deleted(BaseModel):
    deleted: bool = True


# --- events, stats, live status, commands -------------------------------------


class Event(BaseModel):
    event_id: IdOut
    device_id: IdOut
    at: Instant
    event: str
    detail: dict[str, Any]


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    page: int
    per_page: int
    total: int = Field(description="Items matching the filters, on all pages.")

    @classmethod
    def of(cls, rows: list[dict[str, Any]], total: int, query: PageQuery) -> Self:
        return cls(items=rows, page=query.page, per_page=query.per_page, total=total)


class StateCounts(BaseModel):
    online: int
    unknown: int
    offline: int


class FleetStats(BaseModel):
    devices: int
    by_state: StateCounts
    by_type: dict[str, int]
    connected: int = Field(description="Devices holding a session right now.")
    commands_last_hour: int


class LiveStatus(BaseModel):
    device_id: IdOut
    state: State
    last_seen: Instant | None
    cpu_percent: float | None
    memory_used_percent: float | None
    disk_used_percent: float | None
    latest: dict[str, Any] = Field(description="The latest status upload, as the device sent it.")


class StatusPoint(BaseModel):
    at: Instant
    cpu_percent: float | None
    memory_used_percent: float | None
    disk_used_percent: float | None


class StatusHistory(BaseModel):
    device_id: IdOut
    items: list[StatusPoint] = Field(
        description="The last hour of the connected session, one point per 30 s, oldest "
        "first (percentages to 0.01); a device that reconnected starts again from its login."
    )


class CommandRequest(RequestModel):
    order: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="`restart`, `upload_log`, `update`, or the name of a custom command."
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments of a custom command; `remote_dir` for `upload_log`; "
        "`artifact_id` for `update`.",
    )
    timeout: float | None = Field(
        None,
        gt=0,
        le=300,
        description="Seconds to wait for the result (default: the command-timeout setting, 10).",
    )


class DeviceCommandResult(BaseModel):
    device_id: IdOut
    command_id: IdOut | None = Field(
        description="The command in the history (`GET /commands/{command_id}`); null only "
        "when its history row could not be written (the database was away) and the device "
        "was reached all the same."
    )
    status: Literal["success", "fail", "timeout", "queued"]
    message: str
    data: Any = None

    @classmethod
    def of(
        cls, device_id: int, command_id: int | None, result: protocol.CommandResult
    ) -> DeviceCommandResult:
        return cls(
            device_id=device_id,
            command_id=command_id,
            status=result.status,
            message=result.message,
            data=result.data,
        )


class GroupCommandResults(BaseModel):
    results: list[DeviceCommandResult]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


# --- data from devices --------------------------------------------------------

RecordStatus = Literal["received", "analysed", "failed"]
Sha256 = Annotated[str, StringConstraints(pattern=protocol.SHA256_PATTERN)]
Kind = Annotated[str, StringConstraints(pattern=protocol.KIND_PATTERN)]


class RecordPath(ParamsModel):
    id: IdIn = Field(description="The record's server id (not the device's record_id).")


class FilePath(ParamsModel):
    sha256: Sha256


class RecordListQuery(PageQuery):
    device_id: IdIn | None = Field(None, description="Only records of this device.")
    group_id: IdIn | None = Field(None, description="Only records of this group's devices.")
    kind: Kind | None = Field(None, description="Only records of this kind.")
    status: RecordStatus | None = Field(None, description="Only records in this status.")
    since: InstantIn | None = Field(None, description="Received at or after (RFC 3339).")
    until: InstantIn | None = Field(None, description="Received before (RFC 3339).")


class RecordStatsQuery(ParamsModel):
    since: InstantIn | None = Field(None, description="Received at or after (RFC 3339).")
    until: InstantIn | None = Field(None, description="Received before (RFC 3339).")
    group_id: IdIn | None = Field(None, description="Only this group's devices.")


class IngestLogQuery(PageQuery):
    device_id: IdIn | None = Field(None, description="Only attempts of this device.")
    status: Literal["success", "refused"] | None = Field(None, description="Only this outcome.")
    since: InstantIn | None = Field(None, description="At or after (RFC 3339).")
    until: InstantIn | None = Field(None, description="Before (RFC 3339).")


class Record(BaseModel):
    id: IdOut = Field(description="The server's id (a snowflake).")
    device_id: IdOut
    record_id: str = Field(description="The device's id of the record, unique per device.")
    kind: str
    at: Instant = Field(description="When it happened, by the device's clock.")
    received_at: Instant
    payload: dict[str, Any]
    size: int = Field(description="Bytes of the payload's JSON.")
    status: RecordStatus
    files: list[str] = Field(description="SHA-256 digests of the record's files.")


class Classification(BaseModel):
    category: str
    confidence: float
    model: str
    analysed_at: Instant


class RecordFile(BaseModel):
    sha256: str
    present: bool = Field(description="Whether the cloud has the file (it may come later).")
    size: int | None
    content_type: str | None
    url: str = Field(description="Where to download it (GET, bearer token).")
    classification: Classification | None


class Analysis(BaseModel):
    attempts: int
    next_attempt_at: Instant | None
    last_error: str


class RecordDetail(BaseModel):
    id: IdOut
    device_id: IdOut
    record_id: str
    kind: str
    at: Instant
    received_at: Instant
    payload: dict[str, Any]
    size: int
    status: RecordStatus
    files: list[RecordFile]
    analysis: Analysis | None = Field(description="Attempts at analysing it, if any failed.")


class RecordStats(BaseModel):
    records: int
    by_kind: dict[str, int]
    by_status: dict[str, int]
    by_day: dict[str, int] = Field(description="Records received per UTC day (YYYY-MM-DD).")
    by_hour: dict[str, int] = Field(
        description="Records received per UTC hour (YYYY-MM-DDTHH): uploads per hour."
    )
    bytes: int = Field(description="Bytes of the records' payloads.")
    files: int = Field(description="Distinct files the records name that the cloud has.")
    file_bytes: int = Field(description="Bytes of those files, each counted once.")
    devices: int = Field(description="Devices that uploaded records.")
    duplicates_avoided: int = Field(description="Records sent again and stored once.")
    bytes_not_resent: int = Field(
        description="File bytes that did not cross the network again because the cloud "
        "already had the file (check first, content addressing)."
    )


class IngestAttempt(BaseModel):
    id: int
    device_id: IdOut | None = Field(description="None when the credentials were refused.")
    at: Instant
    source_ip: str
    user_agent: str
    transport: Literal["ws", "http"]
    accepted: int
    duplicates: int
    rejected: int
    bytes: int
    status: Literal["success", "refused"]
    message: str


# --- classification -----------------------------------------------------------


class CacheCheckBody(RequestModel):
    hash: Sha256 = Field(description="SHA-256 hex digest of the image (lower case).")


class ClassifyResult(BaseModel):
    hash: str
    category: str
    confidence: float
    model: str
    cached: bool = Field(description="True when no model call was made for this answer.")
    analysed_at: Instant

    @classmethod
    def of(cls, row: dict[str, Any], cached: bool) -> ClassifyResult:
        return cls(hash=row["sha256"], cached=cached, **{k: row[k] for k in CLASSIFY_KEYS})


CLASSIFY_KEYS = ("category", "confidence", "model", "analysed_at")


class CacheCheck(BaseModel):
    hash: str
    hit: bool
    result: ClassifyResult | None = Field(description="The cached result, on a hit.")


def _parse_day(value: Any) -> date:
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError("must be a date, YYYY-MM-DD")


Day = Annotated[
    date, BeforeValidator(_parse_day), WithJsonSchema({"type": "string", "format": "date"})
]


class ClassifyStatsQuery(ParamsModel):
    day: Day | None = Field(None, description="UTC day, YYYY-MM-DD (default: today).")


class ClassifyStats(BaseModel):
    day: str
    requests: int
    cache_hits: int
    hit_rate: float
    callers: int = Field(description="Distinct callers (X-Client-Id, else the address).")
    categories: dict[str, int]
    model_calls_saved: int


# --- users, roles, API keys, audit (controller/access) ------------------------

Permission = Literal[tuple(PERMISSIONS)]  # type: ignore[valid-type]
Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._@-]{1,64}$")]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]{1,64}@[^@\s]{1,189}$")]
RoleCode = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]


class UserPath(ParamsModel):
    user_id: IdIn


class RolePath(ParamsModel):
    role_id: IdIn


class KeyPath(ParamsModel):
    key_id: IdIn


class BindingIn(RequestModel):
    role: RoleCode = Field(description="The role's code, e.g. `operator`.")
    group_id: IdIn | None = Field(
        None, description="Limit the role to this group's devices; null: everywhere."
    )


class BindingList(RootModel[list[BindingIn]]):
    """Every binding of the user: what it holds after, exactly."""

    root: list[BindingIn] = Field(max_length=1000)


class BindingOut(BaseModel):
    role: str
    group_id: IdOut | None

    @classmethod
    def all_of(cls, row: dict[str, Any]) -> list[BindingOut]:
        """The bindings of a user's or a key's row (``HeldRole``s)."""
        return [cls(role=held.role, group_id=held.group_id) for held in row["bindings"]]


class LoginRequest(RequestModel):
    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=MAX_BYTES)]


class RefreshRequest(RequestModel):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        None,
        description="Leave it out to use the HttpOnly cookie `edgefleet_refresh` that "
        "sign-in set (browsers).",
    )


class RegisterRequest(RequestModel):
    username: Username
    password: Password
    email: Email | None = None


class User(BaseModel):
    user_id: IdOut
    username: str
    email: str | None
    is_active: bool
    is_superuser: bool
    created_at: Instant
    updated_at: Instant
    last_login_at: Instant | None
    roles: list[BindingOut]

    @classmethod
    def of(cls, row: dict[str, Any]) -> User:
        return cls(**row, roles=BindingOut.all_of(row))


class TokenPair(BaseModel):
    access_token: str = Field(description="A JWT: `Authorization: Bearer <access_token>`.")
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds the access token stays valid.")
    refresh_token: str = Field(
        description="Spend it at /auth/refresh for a new pair; also set as an HttpOnly, "
        "Secure, SameSite=Strict cookie `edgefleet_refresh` scoped to /api/v1/auth."
    )
    user: User


class LoggedOut(BaseModel):
    logged_out: bool = True


class EffectivePermission(BaseModel):
    permission: str
    everywhere: bool
    group_ids: list[IdOut] = Field(description="Where it holds, when not everywhere.")


class UserCreate(RequestModel):
    username: Username
    email: Email | None = None
    password: Password | None = Field(
        None, description="Leave it out for a service account, which only holds API keys."
    )
    is_active: bool = True
    is_superuser: bool = False
    roles: list[BindingIn] = Field(default_factory=list, max_length=1000)


class UserUpdate(RequestModel):
    email: Email | None = None
    password: Password = None  # type: ignore[assignment]
    is_active: bool = None  # type: ignore[assignment]
    is_superuser: bool = None  # type: ignore[assignment]


class SelfUpdate(RequestModel):
    email: Email | None = None
    password: Password = None  # type: ignore[assignment]
    old_password: Annotated[str, StringConstraints(min_length=1, max_length=MAX_BYTES)] = Field(
        None,  # type: ignore[arg-type]
        description="Required with `password`.",
    )


class UserListQuery(PageQuery):
    q: SearchText | None = Field(None, description="Text contained in the user name.")


class Role(BaseModel):
    role_id: IdOut
    code: str
    name: str
    description: str
    permissions: list[str]
    builtin: bool
    created_at: Instant
    updated_at: Instant


class RoleList(BaseModel):
    items: list[Role]


class RoleCreate(RequestModel):
    code: RoleCode
    name: Name
    description: Description = ""
    permissions: list[Permission] = Field(min_length=1, max_length=len(PERMISSIONS))


class RoleUpdate(RequestModel):
    name: Name = None  # type: ignore[assignment]
    description: Description = None  # type: ignore[assignment]
    permissions: list[Permission] = Field(None, min_length=1, max_length=len(PERMISSIONS))  # type: ignore[assignment]


class ApiKey(BaseModel):
    key_id: IdOut
    user_id: IdOut
    name: str
    prefix: str = Field(description="The key's first characters, to recognise it.")
    created_by: IdOut | None
    created_at: Instant
    expires_at: Instant | None
    last_used_at: Instant | None
    revoked_at: Instant | None
    roles: list[BindingOut]

    @classmethod
    def of(cls, row: dict[str, Any]) -> ApiKey:
        return cls(**row, roles=BindingOut.all_of(row))


class NewApiKey(ApiKey):
    key: str = Field(description="Shown once: `Authorization: Bearer <key>`.")


class Me(BaseModel):
    kind: Literal["user", "api_key", "bootstrap"]
    name: str
    user: User | None
    key: ApiKey | None
    roles: list[BindingOut]
    permissions: list[EffectivePermission]


class ApiKeyCreate(RequestModel):
    name: Name
    user_id: IdIn | None = Field(
        None, description="Whose key (`users:admin`, e.g. a service account); default: yours."
    )
    roles: list[BindingIn] | None = Field(
        None,
        max_length=1000,
        description="What the key may do; default: its owner's roles. Never more than "
        "its owner may do.",
    )
    expires_at: InstantIn | None = None


class ApiKeyListQuery(PageQuery):
    user_id: IdIn | None = Field(
        None, description="Another user's keys (`users:admin`); default: yours."
    )
    all: bool = Field(False, description="Everyone's keys (`users:admin`).")


class AuditListQuery(PageQuery):
    actor: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        None, description="A user name, a key prefix (`efk_…`) or `bootstrap`."
    )
    action: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        None, description="The operation id, e.g. `update_device`, `send_device_command`, `login`."
    )
    target: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = Field(
        None, description="A target id, or `type:id` (`device:1790…`), or `type:`."
    )
    since: InstantIn | None = Field(None, description="Entries at or after (RFC 3339).")
    until: InstantIn | None = Field(None, description="Entries before (RFC 3339).")


class AuditRecord(BaseModel):
    audit_id: IdOut
    at: Instant
    actor_type: str
    actor_id: IdOut | None
    actor_name: str
    action: str
    target_type: str
    target_id: str | None
    result: Literal["success", "failure"]
    error_type: str | None
    http_status: int
    source_address: str
    request_id: str
    fields: list[str] = Field(description="Names of the fields changed; never their values.")


_STREAM_TYPE = "(" + "|".join(re.escape(t) for t in STREAM_TYPES) + ")"
STREAM_TYPES_PATTERN = rf"^({_STREAM_TYPE}(,{_STREAM_TYPE})*)?$"


class StreamQuery(ParamsModel):
    device_id: IdIn | None = Field(None, description="Only this device's events.")
    group_id: IdIn | None = Field(None, description="Only events of this group's devices.")
    types: Annotated[str, StringConstraints(pattern=STREAM_TYPES_PATTERN)] | None = Field(
        None,
        description="Comma-separated event types: `device.state`, `device.status`, "
        "`command.result`, `record.created`, `config.reported`, `job.progress` (default: all).",
    )


# --- software updates ------------------------------------------------------------

TYPES_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}(,[a-z0-9][a-z0-9_.-]{0,63})*$"


class ArtifactPath(ParamsModel):
    artifact_id: IdIn


class ArtifactListQuery(PageQuery):
    name: Name | None = Field(None, description="Only the versions of this artifact.")


class ArtifactUploadQuery(ParamsModel):
    """What the uploaded package is; the body is its bytes (raw, or the multipart
    field `file`)."""

    name: Name = Field(description="What the package is, e.g. `detector`.")
    version: Version = Field(description="The version a device runs once it is installed.")
    types: Annotated[str, StringConstraints(pattern=TYPES_PATTERN)] | None = Field(
        None, description="Comma-separated device types it is for (none: every type)."
    )

    def type_list(self) -> list[str]:
        return self.types.split(",") if self.types else []


class Artifact(BaseModel):
    artifact_id: IdOut
    name: str
    version: str
    sha256: str = Field(description="SHA-256 of the file: devices check it before installing.")
    size: int = Field(description="Bytes.")
    content_type: str
    types: list[str] = Field(description="Device types it is for; empty: every type.")
    created_at: Instant
