'use strict';

/** herald_status values (include/herald/herald.h). The set only grows. */
const STATUS = Object.freeze({
  HERALD_E_INVALID_ARGUMENT: -1,
  HERALD_E_INVALID_JSON: -2,
  HERALD_E_NOT_OBJECT: -3,
  HERALD_E_TOO_LARGE: -4,
  HERALD_E_QUEUE_FULL: -5,
  HERALD_E_STORAGE: -6,
  HERALD_E_NO_MEMORY: -7,
  HERALD_E_CONFIG: -8,
  HERALD_E_TIMEOUT: -9,
  HERALD_E_CLOSED: -10,
  HERALD_E_BACKEND: -11,
  HERALD_E_DISABLED: -12,
  HERALD_E_NO_CONSENT: -13,
  HERALD_E_DROPPED: -14,
});

const NAMES = new Map(Object.entries(STATUS).map(([k, v]) => [v, k]));

/**
 * Every error the binding throws or rejects with.
 * - code:   'HERALD_E_QUEUE_FULL' ... (string, like Node's own error codes)
 * - status: the herald_status number, e.g. -5
 * - path:   for values that cannot become JSON, where: 'properties.cart[2]'
 */
class HeraldError extends Error {
  constructor(status, message, path) {
    super(message);
    this.name = 'HeraldError';
    this.status = status;
    this.code = NAMES.get(status) || `HERALD_E_UNKNOWN(${status})`;
    if (path !== undefined) this.path = path;
  }
}

function invalid(message, path) {
  return new HeraldError(STATUS.HERALD_E_INVALID_ARGUMENT, message, path);
}

module.exports = { STATUS, NAMES, HeraldError, invalid };
