'use strict';

// Every kind of bad input raises a HeraldError with its code, status and
// the library's message.

const { describe, test, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { REPO, tmpdir } = require('./helpers');
const { Herald, HeraldError, STATUS } = require('..');

function is(code, words) {
  return (e) => {
    assert.ok(e instanceof HeraldError, String(e));
    assert.ok(e instanceof Error);
    assert.equal(e.name, 'HeraldError');
    assert.equal(e.code, code);
    assert.equal(e.status, STATUS[code]);
    assert.ok(e.message.length > 0);
    if (words) assert.match(e.message, words);
    return true;
  };
}

describe('errors', () => {
  const open = [];
  function client(extra = {}) {
    const h = new Herald({ db_path: path.join(tmpdir(), 'q.db'), deliver: false, ...extra });
    open.push(h);
    return h;
  }
  afterEach(async () => {
    while (open.length) await open.pop().close(0);
  });

  test('status table matches the header', () => {
    const text = fs.readFileSync(path.join(REPO, 'include', 'herald', 'herald.h'), 'utf8');
    const codes = [...text.matchAll(/HERALD_E_([A-Z_]+)\s*=\s*(-\d+)/g)];
    assert.ok(codes.length >= 12);
    for (const [, name, value] of codes) {
      assert.equal(STATUS[`HERALD_E_${name}`], Number(value), name);
      const e = new HeraldError(Number(value), 'm');
      assert.equal(e.code, `HERALD_E_${name}`);
    }
    assert.equal(new HeraldError(-99, 'future').code, 'HERALD_E_UNKNOWN(-99)');
  });

  test('INVALID_ARGUMENT from the binding and from the library', () => {
    const h = client();
    assert.throws(() => h.track(''), is('HERALD_E_INVALID_ARGUMENT', /event/));
    assert.throws(() => h.track(), is('HERALD_E_INVALID_ARGUMENT', /event/));
    assert.throws(() => h.track(42), is('HERALD_E_INVALID_ARGUMENT', /must be a string/));
    assert.throws(() => h.track('a\0b'), is('HERALD_E_INVALID_ARGUMENT', /NUL/));
    assert.throws(() => h.identify(''), is('HERALD_E_INVALID_ARGUMENT', /userId/));
    assert.throws(() => h.group(''), is('HERALD_E_INVALID_ARGUMENT', /groupId/));
    assert.throws(() => h.alias('', 'u'), is('HERALD_E_INVALID_ARGUMENT', /previousId/));
    assert.throws(() => h.alias('p', ''), is('HERALD_E_INVALID_ARGUMENT', /userId/));
    assert.throws(() => h.page(7), is('HERALD_E_INVALID_ARGUMENT', /name/));
    // refused by the C library: message from herald_last_error()
    assert.throws(() => h.send({ type: 'purchase' }), is('HERALD_E_INVALID_ARGUMENT', /"type" must be one of/));
    assert.throws(() => h.send({ type: 'track' }), is('HERALD_E_INVALID_ARGUMENT', /"event" is required/));
    assert.throws(() => h.track('x', {}, { messageId: 'm'.repeat(101) }), is('HERALD_E_INVALID_ARGUMENT', /messageId/));
    assert.equal(h.stats().rejected, 3);
  });

  test('INVALID_ARGUMENT for bad timeouts', async () => {
    const h = client();
    await assert.rejects(h.flush(-1), is('HERALD_E_INVALID_ARGUMENT', /timeoutMs/));
    await assert.rejects(h.flush('soon'), is('HERALD_E_INVALID_ARGUMENT', /timeoutMs/));
    await assert.rejects(h.close(NaN), is('HERALD_E_INVALID_ARGUMENT', /timeoutMs/));
  });

  test('NOT_OBJECT', () => {
    const h = client();
    assert.throws(() => h.track('x', [1, 2]), is('HERALD_E_NOT_OBJECT', /properties must be a plain object/));
    assert.throws(() => h.track('x', 'str'), is('HERALD_E_NOT_OBJECT'));
    assert.throws(() => h.identify('u', new Map()), is('HERALD_E_NOT_OBJECT'));
    assert.throws(() => h.send([1]), is('HERALD_E_NOT_OBJECT'));
    // from the library
    assert.throws(() => h.track('x', {}, { context: 'not an object' }), is('HERALD_E_NOT_OBJECT', /context/));
  });

  test('TOO_LARGE', () => {
    const h = client({ max_event_bytes: 1024 });
    assert.throws(() => h.track('Big', { blob: 'x'.repeat(2000) }), is('HERALD_E_TOO_LARGE', /max_event_bytes/));
    h.track('Small', { blob: 'x' });
  });

  test('QUEUE_FULL', () => {
    const h = client({ max_queue_events: 2, overflow_policy: 'reject_new' });
    h.track('1');
    h.track('2');
    assert.throws(() => h.track('3'), is('HERALD_E_QUEUE_FULL'));
    assert.equal(h.stats().rejected, 1);
    assert.equal(h.stats().queued, 2);
  });

  test('STORAGE', () => {
    const dir = tmpdir();
    assert.throws(() => new Herald({ db_path: dir, deliver: false }), is('HERALD_E_STORAGE', /Is a directory/));
  });

  test('CONFIG', () => {
    const db = path.join(tmpdir(), 'c.db');
    const url = 'http://127.0.0.1:9/v1/batch';
    const cases = [
      [{ db_path: db, flush_intervall_ms: 5 }, /"flush_intervall_ms"/],
      [{ db_path: db, overflow_policy: 'sometimes' }, /"overflow_policy"/],
      [{ db_path: db, max_queue_events: -3 }, /"max_queue_events"/],
      [{ db_path: db, destinations: [{ name: 'bad name!', url }] }, /name must be/],
      [{ db_path: db, destinations: [{ name: 'x', backend: 'carrier-pigeon', url }] }, /carrier-pigeon/],
      [{ db_path: db, destinations: [{ name: 'x' }] }, /"url" is required/],
      [{}, /db_path is required/],
      [{ db_path: db, dbPath: db }, /"dbPath"/],
    ];
    for (const [opts, words] of cases) assert.throws(() => new Herald(opts), is('HERALD_E_CONFIG', words));
    assert.throws(() => new Herald(), is('HERALD_E_CONFIG', /options must be an object/));
    assert.throws(() => new Herald({ db_path: db, destinations: [{ name: 'x', url: Symbol('u') }] }),
      (e) => e.code === 'HERALD_E_INVALID_ARGUMENT' && e.path === 'options.destinations[0].url');
  });

  test('CLOSED', async () => {
    const h = client();
    await h.close();
    assert.throws(() => h.track('x'), is('HERALD_E_CLOSED'));
  });

  test('DISABLED', async () => {
    const h = client();
    h.track('Queued Only');
    await assert.rejects(h.flush(100), is('HERALD_E_DISABLED'));
    assert.equal(h.stats().queued, 1);
  });

  test('NO_CONSENT', () => {
    const h = client({ consent_required: true, consent_policy: 'drop' });
    assert.throws(() => h.track('Dropped'), is('HERALD_E_NO_CONSENT'));
    h.setConsent(true);
    h.track('Kept');
  });
});
