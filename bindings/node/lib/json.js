'use strict';

/*
 * JS values to the JSON text the C library takes (docs/node.md, "JSON
 * conversion"):
 *
 * - plain objects and class instances: their own enumerable string keys, as
 *   JSON.stringify; arrays; strings, booleans, null as is;
 * - undefined: dropped from objects, null in arrays (as JSON.stringify);
 * - numbers: NaN and +-Infinity refused; integral values of 2^63 or more in
 *   magnitude are written in exponent form, so the library reads them as
 *   doubles instead of refusing an integer it cannot hold;
 * - BigInt: exact integer text when inside the signed 64-bit range, refused
 *   outside it;
 * - Date: ISO 8601 / RFC 3339 UTC string (toISOString); an invalid Date is
 *   refused;
 * - objects with a toJSON() method: its result (as JSON.stringify);
 *   boxed primitives (new Number(1)...) are unwrapped;
 * - refused with a HeraldError (code HERALD_E_INVALID_ARGUMENT) naming the
 *   path: functions, symbols, Map, Set, WeakMap, WeakSet, Promise, RegExp,
 *   Error, Buffer/ArrayBuffer/typed arrays, circular references, strings with
 *   a NUL character or lone surrogates, nesting deeper than 1000 levels.
 *
 * Fast path: a validating walk, then the engine's JSON.stringify; the
 * slower serializer below runs only when a value needs it (BigInt, toJSON,
 * boxed primitives, huge integral numbers).
 */

const { invalid } = require('./errors');

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const TWO_63 = 2 ** 63;
const MAX_DEPTH = 1000;
const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

function child(path, key) {
  if (IDENT.test(key)) return path ? `${path}.${key}` : key;
  return `${path}[${JSON.stringify(key)}]`;
}

function fail(path, what) {
  return invalid(`${path}: ${what}`, path);
}

function checkString(s, path) {
  if (s.includes('\0')) throw fail(path, 'string holds a NUL character (\\u0000), which herald does not accept');
  if (!s.isWellFormed()) throw fail(path, 'string is not valid Unicode (lone surrogate)');
}

function describeRefused(v) {
  if (typeof v === 'function') return ['a function', 'call it, or leave it out'];
  if (typeof v === 'symbol') return ['a symbol', 'use a string'];
  if (v instanceof Map) return ['a Map', 'convert it with Object.fromEntries(map)'];
  if (v instanceof Set) return ['a Set', 'convert it with Array.from(set)'];
  if (v instanceof WeakMap || v instanceof WeakSet) return ['a ' + v.constructor.name, 'it has no JSON form'];
  if (v instanceof Promise) return ['a Promise', 'await it first'];
  if (v instanceof RegExp) return ['a RegExp', 'use its .source string'];
  if (v instanceof Error) return ['an Error', 'use err.message or String(err)'];
  if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer || v instanceof SharedArrayBuffer) {
    return [`binary data (${v.constructor.name})`, "encode it, e.g. buf.toString('base64')"];
  }
  return null;
}

function isBoxed(v) {
  return v instanceof Number || v instanceof String || v instanceof Boolean;
}

/*
 * Validate `value`; returns true when the engine's JSON.stringify cannot
 * produce the right text by itself (then serialize() must be used).
 * `inArray`: undefined/function/symbol positions follow JSON.stringify.
 */
function check(value, path, stack, depth) {
  switch (typeof value) {
    case 'string':
      checkString(value, path);
      return false;
    case 'number':
      if (!Number.isFinite(value)) throw fail(path, `${value} is not a JSON number (NaN and Infinity are refused)`);
      return Math.abs(value) >= TWO_63 && Math.abs(value) < 1e21;
    case 'boolean':
    case 'undefined':
      return false;
    case 'bigint':
      if (value < INT64_MIN || value > INT64_MAX) {
        throw fail(path, `BigInt ${value} is outside the signed 64-bit range; send it as a string`);
      }
      return true;
    case 'function':
    case 'symbol': {
      const [what, hint] = describeRefused(value);
      throw fail(path, `${what} cannot be converted to JSON (${hint})`);
    }
    default:
      break;
  }
  if (value === null) return false;
  if (depth > MAX_DEPTH) throw fail(path, `nested too deeply (more than ${MAX_DEPTH} levels)`);
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw fail(path, 'invalid Date');
    return false;
  }
  const refused = describeRefused(value);
  if (refused) throw fail(path, `${refused[0]} cannot be converted to JSON (${refused[1]})`);
  if (stack.includes(value)) throw fail(path, 'circular reference');
  if (isBoxed(value)) return true;
  if (typeof value.toJSON === 'function') {
    stack.push(value);
    try {
      check(value.toJSON(''), path, stack, depth + 1);
    } finally {
      stack.pop();
    }
    return true;
  }
  stack.push(value);
  let custom = false;
  try {
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        if (check(value[i], `${path}[${i}]`, stack, depth + 1)) custom = true;
      }
    } else {
      for (const key of Object.keys(value)) {
        checkString(key, child(path, key));
        if (check(value[key], child(path, key), stack, depth + 1)) custom = true;
      }
    }
  } finally {
    stack.pop();
  }
  return custom;
}

/* JSON text of an already checked value; undefined means "leave out". */
function serialize(value, key) {
  if (value !== null && typeof value === 'object') {
    if (isBoxed(value)) value = value.valueOf();
    else if (typeof value.toJSON === 'function') value = value.toJSON(key);
  }
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      if (Math.abs(value) >= TWO_63 && Math.abs(value) < 1e21) return value.toExponential();
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      return value.toString();
    case 'undefined':
      return undefined;
    default:
      break;
  }
  if (value === null) return 'null';
  if (Array.isArray(value)) {
    const parts = new Array(value.length);
    for (let i = 0; i < value.length; i++) {
      const s = serialize(value[i], String(i));
      parts[i] = s === undefined ? 'null' : s;
    }
    return `[${parts.join(',')}]`;
  }
  const parts = [];
  for (const k of Object.keys(value)) {
    const s = serialize(value[k], k);
    if (s !== undefined) parts.push(`${JSON.stringify(k)}:${s}`);
  }
  return `{${parts.join(',')}}`;
}

/** JSON text for any convertible value; throws HeraldError naming the path. */
function toJSON(value, path) {
  let custom;
  try {
    custom = check(value, path, [], 0);
  } catch (e) {
    if (e instanceof RangeError) throw fail(path, 'nested too deeply');
    throw e;
  }
  return custom ? serialize(value, '') : JSON.stringify(value);
}

module.exports = { toJSON, check, INT64_MIN, INT64_MAX };
