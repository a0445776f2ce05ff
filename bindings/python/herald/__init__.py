"""herald — Python binding of the herald analytics client library.

    import herald

    with herald.Client(db_path="app.db",
                       destinations=[{"name": "main",
                                      "url": "https://collector.example.com/v1/batch",
                                      "write_key": "KEY"}]) as client:
        client.identify("user-42", {"plan": "pro"})
        client.track("Subscription Upgraded", {"seats": 12})

ctypes over libherald (found through Client(library=PATH), $HERALD_LIBRARY,
or the system's libherald.so.0). See docs/python.md.
"""

from typing import Optional

from ._client import OVERRIDES, Client
from ._errors import (ERROR_CLASSES, STATUS_NAMES, BackendError, Closed, ConfigError, Disabled,
                      Dropped, Error, InvalidArgument, InvalidJSON, NoConsent, NoMemory,
                      NotObject, QueueFull, SerializationError, StorageError, Timeout, TooLarge)
from ._json import to_json
from ._lib import load as _load

__version__ = "0.1.0"

__all__ = [
    "Client", "Error", "InvalidArgument", "SerializationError", "InvalidJSON", "NotObject",
    "TooLarge", "QueueFull", "StorageError", "NoMemory", "ConfigError", "Timeout", "Closed",
    "BackendError", "Disabled", "NoConsent", "Dropped", "STATUS_NAMES", "ERROR_CLASSES",
    "OVERRIDES", "library_version", "to_json", "__version__",
]


def library_version(library: Optional[str] = None) -> str:
    """The version of the loaded C library, e.g. "0.1.0"."""
    return _load(library).herald_version().decode()
