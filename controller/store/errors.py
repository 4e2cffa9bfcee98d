"""What the store raises. The REST layer maps each to its envelope in one place."""


class StoreError(Exception):
    """Base of every store error."""


class DatabaseUnavailable(StoreError):
    """The database did not answer (refused, dropped, or slower than the timeout)."""


class KubernetesUnavailable(DatabaseUnavailable):
    """Kubernetes mode: the API server, where writes go first, did not take one."""


class NotFound(StoreError):
    """A row the caller named does not exist."""


class Conflict(StoreError):
    """A write would break a uniqueness rule."""


class DeviceNotFound(NotFound):
    pass


class DeviceConflict(Conflict):
    pass


class GroupNotFound(NotFound):
    pass


class GroupConflict(Conflict):
    pass


class MembershipNotFound(NotFound):
    pass


class DynamicMembership(Conflict):
    """A membership that the group's selector decides, changed by hand."""


class UserNotFound(NotFound):
    pass


class UserConflict(Conflict):
    pass


class RoleNotFound(NotFound):
    pass


class RoleConflict(Conflict):
    """A duplicate code, a role still bound, or a built-in role deleted or emptied."""


class ApiKeyNotFound(NotFound):
    pass


class LastAdmin(Conflict):
    """The change would leave no active administrator."""


class CommandNotFound(NotFound):
    pass


class CommandNotQueued(Conflict):
    """Only a queued command can be canceled."""

    def __init__(self, command_id: int, state: str) -> None:
        super().__init__(f"command {command_id} is {state}, not queued: it cannot be canceled")
        self.state = state


class DocumentTooBig(StoreError):
    """A configuration document over the size limit once written."""


class VersionMismatch(StoreError):
    """A conditional write (``If-Match``) named a version that is no longer current."""

    def __init__(self, current: int, given: int) -> None:
        super().__init__(f"version {given} is stale: the current version is {current}")
        self.current = current
        self.given = given
