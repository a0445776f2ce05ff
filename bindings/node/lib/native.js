'use strict';

/* Loading libherald with koffi and declaring the C prototypes. */

const koffi = require('koffi');
const { STATUS, HeraldError } = require('./errors');

/** The shared library's file name as installed (meson: soversion 0). */
const SONAME = 'libherald.so.0';

// herald_client * is passed around as an opaque pointer (a BigInt in koffi 3).
const PROTOTYPES = {
  herald_version: 'const char *herald_version(void)',
  herald_strerror: 'const char *herald_strerror(int status)',
  herald_open_json: 'int herald_open_json(_Out_ void **out, const char *config_json)',
  herald_flush: 'int herald_flush(void *c, int timeout_ms)',
  herald_close: 'int herald_close(void *c, int timeout_ms)',
  herald_last_error: 'size_t herald_last_error(void *c, uint8_t *buf, size_t buflen)',
  herald_track: 'int herald_track(void *c, const char *event, const char *properties_json)',
  herald_page: 'int herald_page(void *c, const char *name, const char *properties_json)',
  herald_screen: 'int herald_screen(void *c, const char *name, const char *properties_json)',
  herald_identify: 'int herald_identify(void *c, const char *user_id, const char *traits_json)',
  herald_group: 'int herald_group(void *c, const char *group_id, const char *traits_json)',
  herald_alias: 'int herald_alias(void *c, const char *previous_id, const char *user_id)',
  herald_send: 'int herald_send(void *c, const char *message_json)',
  herald_reset: 'int herald_reset(void *c)',
  herald_stats_json: 'int herald_stats_json(void *c, _Out_ void **out)',
  herald_dead_letters_json: 'int herald_dead_letters_json(void *c, uint64_t limit, _Out_ void **out)',
  herald_dead_letters_replay: 'int herald_dead_letters_replay(void *c, const char *destination, _Out_ uint64_t *replayed)',
  herald_free: 'void herald_free(void *p)',
};

// Declared when the library has them (newer libraries).
const OPTIONAL = {
  herald_set_consent: 'int herald_set_consent(void *c, int granted)',
  herald_get_consent: 'int herald_get_consent(void *c, _Out_ int *granted)',
  herald_erase_user: 'int herald_erase_user(void *c, _Out_ uint64_t *erased)',
};

const cache = new Map();

/**
 * Where load() looks, in order: the explicit path, $HERALD_LIBRARY, then the
 * system loader's libherald.so.0 (ld.so.cache, LD_LIBRARY_PATH).
 */
function candidates(library) {
  if (library) return [String(library)];
  if (process.env.HERALD_LIBRARY) return [process.env.HERALD_LIBRARY];
  return [SONAME];
}

function declare(lib, path) {
  const fns = { path };
  for (const [name, proto] of Object.entries(PROTOTYPES)) fns[name] = lib.func(proto);
  for (const [name, proto] of Object.entries(OPTIONAL)) {
    try {
      fns[name] = lib.func(proto);
    } catch (e) {
      fns[name] = null;
    }
  }
  return fns;
}

/** The declared functions of the library (cached per path). */
function load(library) {
  const tried = [];
  for (const path of candidates(library)) {
    const hit = cache.get(path);
    if (hit) return hit;
    let lib;
    try {
      lib = koffi.load(path);
    } catch (e) {
      tried.push(`${path} (${e.message})`);
      continue;
    }
    let fns;
    try {
      fns = declare(lib, path);
    } catch (e) {
      tried.push(`${path} (not libherald: ${e.message})`);
      continue;
    }
    cache.set(path, fns);
    return fns;
  }
  throw new HeraldError(STATUS.HERALD_E_CONFIG,
    `cannot load libherald; tried: ${tried.join('; ')}. Pass {library: PATH}, set ` +
    'HERALD_LIBRARY, or install libherald.so.0 where the system loader finds it');
}

/** A koffi function's async variant as a Promise. */
function callAsync(fn, ...args) {
  return new Promise((resolve, reject) => {
    fn.async(...args, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** A string handed out by herald (char *), decoded then herald_free()d. */
function takeString(fns, ptr) {
  if (ptr === null || ptr === undefined || ptr === 0n) return null;
  try {
    return koffi.decode.string(ptr);
  } finally {
    fns.herald_free(ptr);
  }
}

module.exports = { load, candidates, callAsync, takeString, SONAME };
