"""Exception classes: one per HERALD_E_* status code, all under herald.Error."""

from typing import Dict, Optional, Type

# herald_status values (include/herald/herald.h). The set only grows.
OK = 0
E_INVALID_ARGUMENT = -1
E_INVALID_JSON = -2
E_NOT_OBJECT = -3
E_TOO_LARGE = -4
E_QUEUE_FULL = -5
E_STORAGE = -6
E_NO_MEMORY = -7
E_CONFIG = -8
E_TIMEOUT = -9
E_CLOSED = -10
E_BACKEND = -11
E_DISABLED = -12
E_NO_CONSENT = -13
E_DROPPED = -14

STATUS_NAMES: Dict[int, str] = {
    E_INVALID_ARGUMENT: "INVALID_ARGUMENT",
    E_INVALID_JSON: "INVALID_JSON",
    E_NOT_OBJECT: "NOT_OBJECT",
    E_TOO_LARGE: "TOO_LARGE",
    E_QUEUE_FULL: "QUEUE_FULL",
    E_STORAGE: "STORAGE",
    E_NO_MEMORY: "NO_MEMORY",
    E_CONFIG: "CONFIG",
    E_TIMEOUT: "TIMEOUT",
    E_CLOSED: "CLOSED",
    E_BACKEND: "BACKEND",
    E_DISABLED: "DISABLED",
    E_NO_CONSENT: "NO_CONSENT",
    E_DROPPED: "DROPPED",
}


class Error(Exception):
    """Base class of every error herald raises.

    Attributes:
        code:    the herald_status value, a negative int (e.g. -2).
        name:    the code's name without the HERALD_E_ prefix ("INVALID_JSON").
        message: what went wrong, from herald_last_error() for errors the C
                 library reported, or from the binding for errors it caught
                 before calling the library.
    """

    code: int = 0
    name: str = "ERROR"

    def __init__(self, message: str, code: Optional[int] = None) -> None:
        if code is not None:
            self.code = code
            self.name = STATUS_NAMES.get(code, "UNKNOWN(%d)" % code)
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return "HERALD_E_%s: %s" % (self.name, self.message)

    def __repr__(self) -> str:
        return "%s(code=%d, name=%r, message=%r)" % (
            type(self).__name__, self.code, self.name, self.message)


class InvalidArgument(Error, ValueError):
    """A required name or id is missing or empty, a string is not valid
    UTF-8 or holds a NUL character, or a value is out of range."""
    code = E_INVALID_ARGUMENT
    name = "INVALID_ARGUMENT"


class SerializationError(InvalidArgument, TypeError):
    """A value cannot be converted to JSON (bytes, a set, an arbitrary
    object, NaN/Infinity, an int outside the signed 64-bit range, a naive
    datetime, a circular reference). `path` names where, e.g.
    "properties.items[2].price". Raised by the binding; nothing was sent to
    the library, so the call is not counted in stats()["rejected"]."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class InvalidJSON(Error, ValueError):
    code = E_INVALID_JSON
    name = "INVALID_JSON"


class NotObject(Error, TypeError):
    """properties/traits/context/integrations (or a message) is not a JSON
    object (a dict)."""
    code = E_NOT_OBJECT
    name = "NOT_OBJECT"


class TooLarge(Error, ValueError):
    """The built event exceeds max_event_bytes."""
    code = E_TOO_LARGE
    name = "TOO_LARGE"


class QueueFull(Error):
    """The queue is at a bound and overflow_policy is "reject_new"."""
    code = E_QUEUE_FULL
    name = "QUEUE_FULL"


class StorageError(Error, OSError):
    """The SQLite queue file could not be opened, read or written."""
    code = E_STORAGE
    name = "STORAGE"


class NoMemory(Error, MemoryError):
    code = E_NO_MEMORY
    name = "NO_MEMORY"


class ConfigError(Error, ValueError):
    """Options or destinations are invalid (unknown key, bad value...)."""
    code = E_CONFIG
    name = "CONFIG"


class Timeout(Error, TimeoutError):
    """Only raised by calls that cannot report a timeout otherwise; flush()
    and close() return False instead."""
    code = E_TIMEOUT
    name = "TIMEOUT"


class Closed(Error):
    """The client is closed or closing."""
    code = E_CLOSED
    name = "CLOSED"


class BackendError(Error):
    """A backend failed to initialise or encode."""
    code = E_BACKEND
    name = "BACKEND"


class Disabled(Error):
    """The operation needs delivery, which is off (deliver=False)."""
    code = E_DISABLED
    name = "DISABLED"


class NoConsent(Error):
    """Consent is not granted and consent_policy is "drop": nothing stored."""
    code = E_NO_CONSENT
    name = "NO_CONSENT"


class Dropped(Error):
    """A before_store hook (set through the C API) dropped the event."""
    code = E_DROPPED
    name = "DROPPED"


ERROR_CLASSES: Dict[int, Type[Error]] = {
    E_INVALID_ARGUMENT: InvalidArgument,
    E_INVALID_JSON: InvalidJSON,
    E_NOT_OBJECT: NotObject,
    E_TOO_LARGE: TooLarge,
    E_QUEUE_FULL: QueueFull,
    E_STORAGE: StorageError,
    E_NO_MEMORY: NoMemory,
    E_CONFIG: ConfigError,
    E_TIMEOUT: Timeout,
    E_CLOSED: Closed,
    E_BACKEND: BackendError,
    E_DISABLED: Disabled,
    E_NO_CONSENT: NoConsent,
    E_DROPPED: Dropped,
}


def error_for(code: int, message: str) -> Error:
    """The exception for a herald_status code (a plain Error for codes this
    binding does not know yet)."""
    cls = ERROR_CLASSES.get(code)
    if cls is None:
        return Error(message, code)
    return cls(message)
