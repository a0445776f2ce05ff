"""Loading libherald with ctypes and declaring the C prototypes."""

import ctypes
import ctypes.util
import os
import threading
from typing import Dict, List, Optional

from ._errors import ConfigError

#: The shared library's file name as installed (meson: soversion 0).
SONAME = "libherald.so.0"

_c_int = ctypes.c_int
_c_char_p = ctypes.c_char_p
_c_void_p = ctypes.c_void_p
_c_size_t = ctypes.c_size_t
_c_uint64 = ctypes.c_uint64

# name: (restype, argtypes). herald_status is a C enum: int.
_PROTOTYPES = {
    "herald_version": (_c_char_p, []),
    "herald_strerror": (_c_char_p, [_c_int]),
    "herald_open_json": (_c_int, [ctypes.POINTER(_c_void_p), _c_char_p]),
    "herald_flush": (_c_int, [_c_void_p, _c_int]),
    "herald_close": (_c_int, [_c_void_p, _c_int]),
    "herald_last_error": (_c_size_t, [_c_void_p, _c_char_p, _c_size_t]),
    "herald_track": (_c_int, [_c_void_p, _c_char_p, _c_char_p]),
    "herald_page": (_c_int, [_c_void_p, _c_char_p, _c_char_p]),
    "herald_screen": (_c_int, [_c_void_p, _c_char_p, _c_char_p]),
    "herald_identify": (_c_int, [_c_void_p, _c_char_p, _c_char_p]),
    "herald_group": (_c_int, [_c_void_p, _c_char_p, _c_char_p]),
    "herald_alias": (_c_int, [_c_void_p, _c_char_p, _c_char_p]),
    "herald_send": (_c_int, [_c_void_p, _c_char_p]),
    "herald_reset": (_c_int, [_c_void_p]),
    "herald_stats_json": (_c_int, [_c_void_p, ctypes.POINTER(_c_void_p)]),
    "herald_dead_letters_json": (_c_int, [_c_void_p, _c_uint64, ctypes.POINTER(_c_void_p)]),
    "herald_dead_letters_replay": (_c_int, [_c_void_p, _c_char_p, ctypes.POINTER(_c_uint64)]),
    "herald_free": (None, [_c_void_p]),
}

# Declared when the library has them (newer libraries); the methods that use
# them raise herald.Error otherwise.
_OPTIONAL = {
    "herald_set_consent": (_c_int, [_c_void_p, _c_int]),
    "herald_get_consent": (_c_int, [_c_void_p, ctypes.POINTER(_c_int)]),
    "herald_erase_user": (_c_int, [_c_void_p, ctypes.POINTER(_c_uint64)]),
}

_cache: Dict[str, ctypes.CDLL] = {}
_cache_lock = threading.Lock()


def candidates(library: Optional[str] = None) -> List[str]:
    """Where load() looks, in order: the explicit path, $HERALD_LIBRARY, the
    system loader's libherald.so.0 (ld.so.cache, LD_LIBRARY_PATH), and what
    ctypes.util.find_library("herald") reports."""
    if library:
        return [os.fspath(library)]
    env = os.environ.get("HERALD_LIBRARY")
    if env:
        return [env]
    out = [SONAME]
    found = ctypes.util.find_library("herald")
    if found and found not in out:
        out.append(found)
    return out


def load(library: Optional[str] = None) -> ctypes.CDLL:
    """The loaded and declared library (cached per path). Raises ConfigError
    naming every place tried when none loads."""
    tried = []
    for name in candidates(library):
        with _cache_lock:
            lib = _cache.get(name)
            if lib is not None:
                return lib
            try:
                lib = ctypes.CDLL(name)
            except OSError as e:
                tried.append("%s (%s)" % (name, e))
                continue
            try:
                for fname, (restype, argtypes) in _PROTOTYPES.items():
                    fn = getattr(lib, fname)
                    fn.restype = restype
                    fn.argtypes = argtypes
            except AttributeError as e:
                tried.append("%s (not libherald: %s)" % (name, e))
                continue
            for fname, (restype, argtypes) in _OPTIONAL.items():
                fn = getattr(lib, fname, None)
                if fn is not None:
                    fn.restype = restype
                    fn.argtypes = argtypes
            _cache[name] = lib
            return lib
    raise ConfigError("cannot load libherald; tried: %s. Pass library=PATH, set "
                      "HERALD_LIBRARY, or install libherald.so.0 where the system "
                      "loader finds it" % "; ".join(tried))
