'use strict';

/*
 * herald for Node.js: koffi over libherald. See docs/node.md.
 *
 *   const { Herald } = require('herald');
 *   const h = new Herald({ db_path: 'app.db',
 *                          destinations: [{ name: 'main', url: 'https://.../v1/batch' }] });
 *   h.track('Signed Up', { plan: 'pro' });     // synchronous, ~tens of µs, no network
 *   await h.close();                            // delivers, off the event loop
 */

const native = require('./lib/native');
const { STATUS, HeraldError, invalid } = require('./lib/errors');
const { toJSON } = require('./lib/json');

const INT_MAX = 2 ** 31 - 1;
const DEFAULT_FLUSH_MS = 10000;
const DEFAULT_CLOSE_MS = 5000;

/** Per-call overrides (third argument) -> message fields (herald_send). */
const OVERRIDES = Object.freeze(['userId', 'anonymousId', 'timestamp', 'context', 'messageId', 'integrations']);

// Close clients that were garbage-collected while open, without blocking:
// herald_close(c, 0) runs on a worker thread; queued events stay on disk.
const finalizer = new FinalizationRegistry(({ fns, handle }) => {
  try {
    fns.herald_close.async(handle, 0, () => {});
  } catch (e) {
    // nothing to report to: the owner is gone
  }
});

function cstr(value, what, required = true) {
  if (value === undefined || value === null) {
    if (!required) return null;
    throw invalid(`${what} must be a non-empty string, got ${value}`);
  }
  if (typeof value !== 'string') throw invalid(`${what} must be a string, not ${typeof value}`);
  if (required && value.length === 0) throw invalid(`${what} must be a non-empty string`);
  if (value.includes('\0')) throw invalid(`${what} holds a NUL character`);
  if (!value.isWellFormed()) throw invalid(`${what} is not valid Unicode (lone surrogate)`);
  return value;
}

function isObjectArg(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/* properties/traits: undefined/null -> NULL (empty object); else JSON object text. */
function objectJSON(value, what) {
  if (value === undefined || value === null) return null;
  if (!isObjectArg(value) || value instanceof Date || value instanceof Map || value instanceof Set) {
    throw new HeraldError(STATUS.HERALD_E_NOT_OBJECT,
      `${what} must be a plain object (a JSON object), not ${Array.isArray(value) ? 'an array' : describe(value)}`);
  }
  return toJSON(value, what);
}

function describe(v) {
  if (v === null) return 'null';
  if (typeof v === 'object') return (v.constructor && v.constructor.name) || 'object';
  return typeof v;
}

function checkObject(value, what) {
  if (value === undefined || value === null) return false;
  objectJSON(value, what); // throws NOT_OBJECT / conversion errors
  return true;
}

function overridesOf(method, overrides) {
  if (overrides === undefined || overrides === null) return null;
  if (!isObjectArg(overrides)) throw invalid(`${method}(): overrides must be an object, not ${describe(overrides)}`);
  let any = false;
  for (const key of Object.keys(overrides)) {
    if (!OVERRIDES.includes(key)) {
      throw invalid(`${method}(): unknown override ${JSON.stringify(key)}; per-call overrides are ${OVERRIDES.join(', ')}`);
    }
    if (overrides[key] !== undefined) any = true;
  }
  return any ? overrides : null;
}

function toMs(timeoutMs, what) {
  if (timeoutMs === Infinity || timeoutMs === null) return -1;
  if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs) || timeoutMs < 0) {
    throw invalid(`${what} must be a number of milliseconds >= 0, Infinity or null, got ${String(timeoutMs)}`);
  }
  return timeoutMs >= INT_MAX ? INT_MAX : Math.round(timeoutMs);
}

const now = () => performance.now();

class Herald {
  /**
   * Open (or create) the queue file and start delivery.
   * @param {object} options  the keys of docs/configuration.md (db_path is
   *   required), plus `library`: path of libherald.so to load.
   */
  constructor(options) {
    if (!isObjectArg(options)) throw new HeraldError(STATUS.HERALD_E_CONFIG, 'options must be an object with at least db_path');
    const { library, ...config } = options;
    this._fns = native.load(library);
    this.libraryPath = this._fns.path;
    const text = toJSON(config, 'options');
    const out = [null];
    const st = this._fns.herald_open_json(out, text);
    if (st !== 0) throw new HeraldError(st, this._lastError(null, st));
    this._handle = out[0];
    this._state = 'open';          // 'open' | 'closing' | 'closed'
    this._tick = 0;                // flush() calls so far
    this._flushing = null;         // the native flush in flight: {promise, tick}
    this._closePromise = null;
    this.dbPath = String(config.db_path);
    finalizer.register(this, { fns: this._fns, handle: this._handle }, this);
  }

  /** The loaded C library's version, e.g. "0.1.0". */
  static libraryVersion(library) {
    return native.load(library).herald_version();
  }

  /** True once close() was called. */
  get closed() {
    return this._state !== 'open';
  }

  // -- plumbing --------------------------------------------------------------

  _lastError(handle, st) {
    const fns = this._fns;
    let buf = Buffer.allocUnsafe(512);
    const n = Number(fns.herald_last_error(handle, buf, buf.length));
    if (n >= buf.length) {
      buf = Buffer.allocUnsafe(n + 1);
      fns.herald_last_error(handle, buf, buf.length);
    }
    const end = buf.indexOf(0);
    const msg = buf.toString('utf8', 0, end < 0 ? Math.min(n, buf.length) : end);
    return msg || fns.herald_strerror(st);
  }

  _open() {
    if (this._state !== 'open') throw new HeraldError(STATUS.HERALD_E_CLOSED, 'the client is closed');
    return this._handle;
  }

  _call(fn, ...args) {
    const handle = this._open();
    const st = fn(handle, ...args);
    if (st < 0) throw new HeraldError(st, this._lastError(handle, st));
    return st;
  }

  _send(message, overrides) {
    for (const key of OVERRIDES) {
      if (overrides[key] !== undefined && overrides[key] !== null) message[key] = overrides[key];
    }
    this._call(this._fns.herald_send, toJSON(message, ''));
  }

  // -- events (synchronous: a local SQLite commit, no network) ----------------

  /** Queue a track event. Throws HeraldError. */
  track(event, properties, overrides) {
    const o = overridesOf('track', overrides);
    if (o) {
      const msg = { type: 'track', event: cstr(event, 'event') };
      if (checkObject(properties, 'properties')) msg.properties = properties;
      return this._send(msg, o);
    }
    this._call(this._fns.herald_track, cstr(event, 'event'), objectJSON(properties, 'properties'));
  }

  /** Queue a page view; name may be null/undefined. */
  page(name, properties, overrides) {
    this._view('page', this._fns.herald_page, name, properties, overrides);
  }

  /** Queue a screen view; name may be null/undefined. */
  screen(name, properties, overrides) {
    this._view('screen', this._fns.herald_screen, name, properties, overrides);
  }

  _view(type, fn, name, properties, overrides) {
    const o = overridesOf(type, overrides);
    const cname = cstr(name, 'name', false);
    if (o) {
      const msg = { type };
      if (cname !== null) msg.name = cname;
      if (checkObject(properties, 'properties')) msg.properties = properties;
      return this._send(msg, o);
    }
    this._call(fn, cname, objectJSON(properties, 'properties'));
  }

  /** Set the user of this and later events (persisted) and queue an identify. */
  identify(userId, traits, overrides) {
    const o = overridesOf('identify', overrides);
    if (o && o.userId !== undefined) throw invalid('identify(): userId is the first argument, not an override');
    const uid = cstr(userId, 'userId');
    if (o) {
      const msg = { type: 'identify', userId: uid };
      if (checkObject(traits, 'traits')) msg.traits = traits;
      return this._send(msg, o);
    }
    this._call(this._fns.herald_identify, uid, objectJSON(traits, 'traits'));
  }

  /** Queue a group event. */
  group(groupId, traits, overrides) {
    const o = overridesOf('group', overrides);
    const gid = cstr(groupId, 'groupId');
    if (o) {
      const msg = { type: 'group', groupId: gid };
      if (checkObject(traits, 'traits')) msg.traits = traits;
      return this._send(msg, o);
    }
    this._call(this._fns.herald_group, gid, objectJSON(traits, 'traits'));
  }

  /** Queue an alias event linking previousId to userId. */
  alias(previousId, userId, overrides) {
    const o = overridesOf('alias', overrides);
    if (o && o.userId !== undefined) throw invalid('alias(): userId is the second argument, not an override');
    const pid = cstr(previousId, 'previousId');
    const uid = cstr(userId, 'userId');
    if (o) return this._send({ type: 'alias', previousId: pid, userId: uid }, o);
    this._call(this._fns.herald_alias, pid, uid);
  }

  /** Queue a whole Segment message (herald_send); "type" is required. */
  send(message) {
    if (!isObjectArg(message)) {
      throw new HeraldError(STATUS.HERALD_E_NOT_OBJECT, `message must be an object, not ${describe(message)}`);
    }
    this._call(this._fns.herald_send, toJSON(message, ''));
  }

  /** Forget the user (logout): new anonymous id, no user id, for later events. */
  reset() {
    this._call(this._fns.herald_reset);
  }

  // -- consent and erasure (libraries that have them) --------------------------

  _optional(name) {
    const fn = this._fns[name];
    if (!fn) throw invalid(`this libherald (${this.libraryPath}) has no ${name}()`);
    return fn;
  }

  /** Grant or revoke consent (persisted); granting releases held events. */
  setConsent(granted) {
    this._call(this._optional('herald_set_consent'), granted ? 1 : 0);
  }

  /** Whether consent is granted. */
  getConsent() {
    const out = [0];
    this._call(this._optional('herald_get_consent'), out);
    return out[0] !== 0;
  }

  /** Delete the current user's queued events and dead letters; new identity. */
  eraseUser() {
    const out = [0];
    this._call(this._optional('herald_erase_user'), out);
    return Number(out[0]);
  }

  // -- observability (synchronous: reads of the local file) --------------------

  _jsonOut(fn, ...args) {
    const out = [null];
    this._call(fn, ...args, out);
    return JSON.parse(native.takeString(this._fns, out[0]));
  }

  /** Counters of the queue file plus this client's destinations. */
  stats() {
    return this._jsonOut(this._fns.herald_stats_json);
  }

  /** Dead letters, oldest first, at most `limit` (0: all). */
  deadLetters(limit = 0) {
    if (!Number.isInteger(limit) || limit < 0) throw invalid('limit must be an integer >= 0');
    return this._jsonOut(this._fns.herald_dead_letters_json, limit);
  }

  /** Queue dead letters again (of one destination, or all); returns how many. */
  replayDeadLetters(destination) {
    const out = [0];
    this._call(this._fns.herald_dead_letters_replay, cstr(destination, 'destination', false), out);
    return Number(out[0]);
  }

  // -- delivery (asynchronous: worker threads, the event loop keeps running) --

  /**
   * Wait up to timeoutMs (default 10000; Infinity or null: no limit) until
   * every queued event is delivered or dead-lettered. Resolves true when the
   * queue is empty, false on timeout (the rest stays queued). Rejects with
   * HERALD_E_DISABLED when delivery is off, HERALD_E_CLOSED when closed.
   * Concurrent flush() calls share one native flush at a time.
   */
  async flush(timeoutMs = DEFAULT_FLUSH_MS) {
    const ms = toMs(timeoutMs, 'timeoutMs');
    this._open();
    const myTick = ++this._tick;
    const deadline = ms < 0 ? Infinity : now() + ms;
    for (;;) {
      const cur = this._flushing;
      if (cur) {
        // Only a native flush that started after this call may answer it.
        const st = await raceDeadline(cur.promise, deadline);
        if (st === 'deadline') return false;
        if (cur.tick >= myTick) {
          if (st === 0) return true;
          if (st !== STATUS.HERALD_E_TIMEOUT) throw new HeraldError(st, cur.error);
          if (now() >= deadline) return false;
        }
        continue;
      }
      if (this._state !== 'open') return false; // close() began while this call waited
      const left = deadline === Infinity ? -1 : Math.min(INT_MAX, Math.max(0, Math.ceil(deadline - now())));
      const entry = { tick: this._tick, error: '', promise: null };
      const handle = this._handle;
      entry.promise = native.callAsync(this._fns.herald_flush, handle, left).then((st) => {
        if (st < 0 && st !== STATUS.HERALD_E_TIMEOUT) entry.error = this._lastError(handle, st);
        return st;
      }).finally(() => {
        if (this._flushing === entry) this._flushing = null;
      });
      this._flushing = entry;
    }
  }

  /**
   * Deliver for at most timeoutMs (default 5000; 0: not at all; Infinity:
   * no limit), stop delivery and release the client. Resolves true if the
   * queue drained, false if events remain on disk for the next open. Waits
   * for a flush in progress first. Calling it again returns the same promise.
   */
  close(timeoutMs = DEFAULT_CLOSE_MS) {
    if (this._closePromise) return this._closePromise;
    let ms;
    try {
      ms = toMs(timeoutMs, 'timeoutMs');
    } catch (e) {
      return Promise.reject(e);
    }
    if (ms < 0) ms = INT_MAX;
    this._state = 'closing';
    this._closePromise = (async () => {
      while (this._flushing) {
        await this._flushing.promise.catch(() => {});
      }
      finalizer.unregister(this);
      const handle = this._handle;
      let st;
      try {
        st = await native.callAsync(this._fns.herald_close, handle, ms);
      } finally {
        this._handle = null;
        this._state = 'closed';
      }
      return st === 0;
    })();
    return this._closePromise;
  }
}

function raceDeadline(promise, deadline) {
  if (deadline === Infinity) return promise;
  const left = deadline - now();
  if (left <= 0) return Promise.resolve('deadline');
  let timer;
  const t = new Promise((resolve) => {
    timer = setTimeout(() => resolve('deadline'), left);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

/** The C library's version (loads the library). */
function libraryVersion(library) {
  return Herald.libraryVersion(library);
}

module.exports = { Herald, HeraldError, STATUS, OVERRIDES, libraryVersion, toJSON };
