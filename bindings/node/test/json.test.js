'use strict';

// JSON conversion: what arrives for each JS type, and the clear error for
// each value that has no JSON form.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');

const { FAST, Receiver, tmpdir } = require('./helpers');
const { Herald, HeraldError, toJSON } = require('..');

describe('json conversion', () => {
  let receiver;
  let h;

  before(async () => {
    receiver = await Receiver.start();
    h = new Herald({ ...FAST, db_path: path.join(tmpdir(), 'q.db'), destinations: [receiver.dest()] });
  });
  after(async () => {
    await h.close(0);
    await receiver.close();
  });

  test('values arrive as JSON', async () => {
    class Money {
      constructor(c) { this.cents = c; }
      toJSON() { return { amount: this.cents / 100, currency: 'EUR' }; }
    }
    class Point {
      constructor() { this.x = 1; this.y = 2; }
      norm() { return 0; }
    }
    const props = {
      str: 'héllo ✓ 𝄞',
      int: 42,
      neg: -7,
      float: 0.1,
      big_float: 1e300,
      huge_integral: 2 ** 64,           // a double, not an int64: sent as 1.8446744073709552e+19
      true: true,
      none: null,
      list: [1, 'two', null, [3]],
      holes: [1, undefined, 3],
      nested: { a: { b: { c: [{ d: 1 }] } } },
      dropped: undefined,
      date: new Date(Date.UTC(2024, 1, 29, 23, 59, 58, 7)),
      big_exact: 9007199254740993n,     // 2^53 + 1: not representable as a Number
      int64_max: 2n ** 63n - 1n,
      int64_min: -(2n ** 63n),
      money: new Money(1999),
      point: new Point(),
      boxed: new Number(5),
      boxed_str: new String('s'),
      'a key with spaces': 1,
    };
    h.track('Types', props);
    assert.equal(await h.flush(10000), true);
    assert.ok(await receiver.waitForEvents(1));
    assert.equal(receiver.events.length, 1);
    const ev = receiver.events[0];
    const p = ev.properties;
    // Check the integer text exactly in the raw request body (JSON.parse in
    // JS would round these).
    const body = receiver.requests.find((r) => r.status === 200).decoded;
    assert.match(body, /"big_exact":9007199254740993[,}]/);
    assert.match(body, /"int64_max":9223372036854775807[,}]/);
    assert.match(body, /"int64_min":-9223372036854775808[,}]/);
    assert.equal(p.str, 'héllo ✓ 𝄞');
    assert.equal(p.int, 42);
    assert.equal(p.neg, -7);
    assert.equal(p.float, 0.1);
    assert.equal(p.big_float, 1e300);
    assert.equal(p.huge_integral, 2 ** 64);
    assert.equal(p.true, true);
    assert.equal(p.none, null);
    assert.deepEqual(p.list, [1, 'two', null, [3]]);
    assert.deepEqual(p.holes, [1, null, 3]);
    assert.deepEqual(p.nested, { a: { b: { c: [{ d: 1 }] } } });
    assert.equal('dropped' in p, false);
    assert.equal(p.date, '2024-02-29T23:59:58.007Z');
    assert.deepEqual(p.money, { amount: 19.99, currency: 'EUR' });
    assert.deepEqual(p.point, { x: 1, y: 2 });
    assert.equal(p.boxed, 5);
    assert.equal(p.boxed_str, 's');
    assert.equal(p['a key with spaces'], 1);
  });

  test('toJSON() matches JSON.stringify for plain data', () => {
    const v = { a: [1, 'x', null, true, { b: undefined, c: 2.5 }], d: new Date(0), e: 'é\n"' };
    assert.equal(toJSON(v, 'v'), JSON.stringify(v));
    assert.equal(toJSON({ n: 1n, d: new Date(0) }, 'v'), '{"n":1,"d":"1970-01-01T00:00:00.000Z"}');
  });

  const circular = () => { const o = { a: 1 }; o.self = o; return o; };
  const circularArr = () => { const a = [1]; a.push({ back: a }); return a; };
  const deep = () => { let v = []; for (let i = 0; i < 5000; i++) v = [v]; return v; };

  const BAD = [
    ['NaN', NaN, 'properties.v', /NaN/],
    ['Infinity', Infinity, 'properties.v', /Infinity/],
    ['-Infinity', -Infinity, 'properties.v', /Infinity/],
    ['BigInt above int64', 2n ** 63n, 'properties.v', /64-bit/],
    ['BigInt below int64', -(2n ** 63n) - 1n, 'properties.v', /64-bit/],
    ['BigInt deep in a list', [1, 2n ** 70n], 'properties.v[1]', /64-bit/],
    ['function', () => 1, 'properties.v', /function/],
    ['symbol', Symbol('s'), 'properties.v', /symbol/],
    ['Map', new Map([[1, 2]]), 'properties.v', /Map.*Object\.fromEntries/],
    ['Set', new Set([1]), 'properties.v', /Set.*Array\.from/],
    ['Buffer', Buffer.from('ab'), 'properties.v', /binary data/],
    ['Uint8Array', new Uint8Array(2), 'properties.v', /binary data/],
    ['ArrayBuffer', new ArrayBuffer(2), 'properties.v', /binary data/],
    ['RegExp', /x/, 'properties.v', /RegExp/],
    ['Promise', Promise.resolve(1), 'properties.v', /Promise/],
    ['Error', new Error('boom'), 'properties.v', /Error/],
    ['invalid Date', new Date('nope'), 'properties.v', /invalid Date/],
    ['circular object', circular(), 'properties.v.self', /circular/],
    ['circular array', circularArr(), 'properties.v[1].back', /circular/],
    ['NUL in a string', 'a\0b', 'properties.v', /NUL/],
    ['lone surrogate', '\ud800', 'properties.v', /surrogate/],
    ['odd key path', { 'a b': { c: Symbol('x') } }, 'properties.v["a b"].c', /symbol/],
    ['nested too deeply', deep(), null, /nested too deeply/],
    ['toJSON returning a BigInt out of range', { toJSON: () => 2n ** 64n }, 'properties.v', /64-bit/],
  ];

  for (const [label, value, where, words] of BAD) {
    test(`refused: ${label}`, () => {
      const before = h.stats().accepted;
      for (const call of [
        () => h.track('Bad', { v: value }),
        () => h.track('Bad', { v: value }, { userId: 'u' }),
        () => h.identify('u', { v: value }),
      ]) {
        assert.throws(call, (e) => {
          assert.ok(e instanceof HeraldError, String(e));
          assert.equal(e.code, 'HERALD_E_INVALID_ARGUMENT');
          assert.equal(e.status, -1);
          assert.match(e.message, words);
          return true;
        });
      }
      try {
        h.track('Bad', { v: value });
      } catch (e) {
        if (where !== null) {
          assert.equal(e.path, where);
          assert.ok(e.message.startsWith(`${where}: `), e.message);
        }
      }
      assert.equal(h.stats().accepted, before);
    });
  }

  test('bad override values', () => {
    assert.throws(() => h.track('x', {}, { timestamp: new Date(NaN) }), (e) => e.path === 'timestamp');
    assert.throws(() => h.track('x', {}, { context: { ip: new Set() } }), (e) => e.path === 'context.ip');
    assert.throws(() => h.track('x', {}, { timestamp: 'yesterday' }),
      (e) => e.code === 'HERALD_E_INVALID_ARGUMENT' && /RFC 3339/.test(e.message));
  });
});
