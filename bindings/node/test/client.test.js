'use strict';

// Herald end to end: every method into the loopback receiver, per-call
// overrides, stats, the closed client, library loading.

const { describe, test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const zlib = require('node:zlib');

const { FAST, LIBRARY, Receiver, tmpdir } = require('./helpers');
const { Herald, HeraldError, libraryVersion } = require('..');

describe('client', () => {
  let receiver;
  const open = [];

  function client(extra = {}) {
    const dir = tmpdir();
    const h = new Herald({ ...FAST, db_path: path.join(dir, 'q.db'), destinations: [receiver.dest()], ...extra });
    open.push(h);
    return h;
  }

  before(async () => {
    receiver = await Receiver.start();
  });
  after(async () => {
    await receiver.close();
  });
  afterEach(async () => {
    while (open.length) await open.pop().close(0);
    receiver.events.length = 0;
    receiver.requests.length = 0;
  });

  test('library version and path', () => {
    assert.equal(libraryVersion(), '0.1.0');
    assert.equal(Herald.libraryVersion(LIBRARY), '0.1.0');
    const h = client({ destinations: [] });
    assert.equal(h.libraryPath, LIBRARY);
    assert.equal(h.closed, false);
  });

  test('every method arrives', async () => {
    const h = client({ gzip_min_bytes: 0 });
    h.track('Order Completed', { order_id: 'o-1', total: 12.5, items: [1, 2] });
    h.page('Pricing', { path: '/pricing' });
    h.page();
    h.screen('Settings', { tab: 'privacy' });
    h.screen(null, { tab: 'none' });
    h.identify('user-42', { plan: 'pro', seats: 12 });
    h.track('After Identify');
    h.group('company-7', { name: 'ACME' });
    h.alias('anon-previous', 'user-42');
    h.reset();
    h.track('After Reset');
    assert.equal(await h.flush(15000), true);
    assert.ok(await receiver.waitForEvents(10));

    const ev = receiver.events;
    assert.equal(ev.length, 10, JSON.stringify(ev.map((e) => e.type)));
    assert.equal(new Set(ev.map((e) => e.messageId)).size, 10);
    const of = (t) => ev.filter((e) => e.type === t);
    const tracks = of('track');
    assert.deepEqual(tracks.map((t) => t.event), ['Order Completed', 'After Identify', 'After Reset']);
    assert.deepEqual(tracks[0].properties, { order_id: 'o-1', total: 12.5, items: [1, 2] });
    assert.equal(tracks[0].userId, undefined);
    assert.equal(tracks[1].userId, 'user-42');
    assert.equal(tracks[2].userId, undefined);
    assert.notEqual(tracks[2].anonymousId, tracks[0].anonymousId);
    const pages = of('page');
    assert.equal(pages[0].name, 'Pricing');
    assert.deepEqual(pages[0].properties, { path: '/pricing' });
    assert.equal(pages[1].name, undefined);
    const screens = of('screen');
    assert.equal(screens[0].name, 'Settings');
    assert.equal(screens[1].name, undefined);
    assert.deepEqual(screens[1].properties, { tab: 'none' });
    const ident = of('identify')[0];
    assert.equal(ident.userId, 'user-42');
    assert.deepEqual(ident.traits, { plan: 'pro', seats: 12 });
    const grp = of('group')[0];
    assert.equal(grp.groupId, 'company-7');
    assert.deepEqual(grp.traits, { name: 'ACME' });
    const al = of('alias')[0];
    assert.equal(al.previousId, 'anon-previous');
    assert.equal(al.userId, 'user-42');
    for (const e of ev) assert.equal(e.context.library.name, 'herald');

    // What went over the wire: gzipped batches whose gunzipped body is what
    // the receiver decoded.
    const ok = receiver.requests.filter((r) => r.status === 200);
    assert.ok(ok.length >= 1);
    for (const r of ok) {
      assert.equal(r.gzip, true);
      const body = zlib.gunzipSync(Buffer.from(r.raw_b64, 'base64')).toString('utf8');
      assert.equal(body, r.decoded);
      const doc = JSON.parse(body);
      assert.ok(Array.isArray(doc.batch) && doc.sentAt);
    }
  });

  test('overrides build whole messages', async () => {
    const h = client();
    const ts = new Date(Date.UTC(2024, 4, 1, 12, 30, 0, 250));
    h.track('Imported', { n: 1 }, {
      userId: 'u-9', anonymousId: 'a-9', timestamp: ts, context: { ip: '203.0.113.9', locale: 'fr-FR' },
      messageId: 'msg-track-1', integrations: { All: true },
    });
    h.track('String Timestamp', undefined, { timestamp: '2023-01-02T03:04:05Z', messageId: 'msg-track-2' });
    h.page('Home', { a: 1 }, { messageId: 'msg-page', userId: 'u-page' });
    h.screen('Main', null, { messageId: 'msg-screen', anonymousId: 'a-screen' });
    h.identify('u-ident', { email: 'x@example.com' }, { messageId: 'msg-ident', anonymousId: 'a-ident' });
    h.group('g-1', { plan: 'team' }, { messageId: 'msg-group', userId: 'u-group' });
    h.alias('old-id', 'new-id', { messageId: 'msg-alias', timestamp: ts });
    h.track('No Override', {}, { userId: undefined });   // all-undefined overrides: typed call
    assert.equal(await h.flush(15000), true);
    assert.ok(await receiver.waitForEvents(8));

    const got = Object.fromEntries(receiver.events.map((e) => [e.messageId, e]));
    const t = got['msg-track-1'];
    assert.equal(t.type, 'track');
    assert.equal(t.event, 'Imported');
    assert.deepEqual(t.properties, { n: 1 });
    assert.equal(t.userId, 'u-9');
    assert.equal(t.anonymousId, 'a-9');
    assert.equal(t.timestamp, '2024-05-01T12:30:00.250Z');
    // Redaction is on by default: the IP is personal data, the locale is not.
    assert.equal(t.context.ip, '[ip]');
    assert.equal(t.context.locale, 'fr-FR');
    assert.deepEqual(t.integrations, { All: true });
    assert.equal(got['msg-track-2'].timestamp, '2023-01-02T03:04:05Z');
    assert.equal(got['msg-page'].name, 'Home');
    assert.equal(got['msg-page'].userId, 'u-page');
    assert.equal(got['msg-screen'].anonymousId, 'a-screen');
    assert.equal(got['msg-ident'].userId, 'u-ident');
    assert.deepEqual(got['msg-ident'].traits, { email: '[email]' });
    assert.equal(got['msg-group'].groupId, 'g-1');
    assert.equal(got['msg-group'].userId, 'u-group');
    assert.equal(got['msg-alias'].previousId, 'old-id');
    assert.equal(got['msg-alias'].userId, 'new-id');
    assert.equal(got['msg-alias'].timestamp, '2024-05-01T12:30:00.250Z');
    const later = receiver.events.find((e) => e.event === 'No Override');
    assert.equal(later.userId, 'u-ident');   // identify via herald_send sets the user
  });

  test('send() takes a whole message', async () => {
    const h = client();
    h.send({ type: 'track', event: 'Raw', messageId: 'raw-1', properties: { n: 10n } });
    assert.equal(await h.flush(10000), true);
    assert.ok(await receiver.waitForEvents(1));
    assert.equal(receiver.events.length, 1);
    assert.equal(receiver.events[0].messageId, 'raw-1');
    assert.deepEqual(receiver.events[0].properties, { n: 10 });
  });

  test('unknown override is refused', () => {
    const h = client();
    assert.throws(() => h.track('x', {}, { user_id: 'snake' }), (e) => e instanceof HeraldError
      && e.code === 'HERALD_E_INVALID_ARGUMENT' && /user_id/.test(e.message));
    assert.throws(() => h.identify('u', {}, { userId: 'again' }), /first argument/);
    assert.throws(() => h.track('x', {}, 'nope'), /overrides must be an object/);
    assert.equal(h.stats().accepted, 0);
  });

  test('stats', async () => {
    const h = client();
    let s = h.stats();
    for (const k of ['queued', 'queued_bytes', 'pending', 'accepted', 'rejected', 'sent', 'retried',
      'dead', 'evicted', 'dead_letters', 'requests', 'bytes_raw', 'bytes_sent']) {
      assert.equal(typeof s[k], 'number', k);
    }
    assert.equal(s.destinations[0].name, 'main');
    for (let i = 0; i < 25; i++) h.track('Counted', { i });
    assert.throws(() => h.send({ type: 'nope' }), (e) => e.code === 'HERALD_E_INVALID_ARGUMENT');
    s = h.stats();
    assert.equal(s.accepted, 25);
    assert.equal(s.rejected, 1);
    assert.equal(await h.flush(10000), true);
    s = h.stats();
    assert.equal(s.queued, 0);
    assert.equal(s.pending, 0);
    assert.equal(s.sent, 25);
    assert.ok(s.requests >= 1 && s.bytes_raw > 0);
    assert.deepEqual(h.deadLetters(), []);
    assert.equal(h.replayDeadLetters(), 0);
    assert.ok(await receiver.waitForEvents(25));
    assert.equal(receiver.events.length, 25);
  });

  test('closed client: clear error, never a crash', async () => {
    const h = client();
    const p = h.close();
    assert.equal(h.closed, true);
    assert.equal(h.close(), p, 'close() again returns the same promise');
    const calls = [
      () => h.track('x'), () => h.page('p'), () => h.screen('s'), () => h.identify('u'), () => h.group('g'),
      () => h.alias('a', 'b'), () => h.reset(), () => h.stats(), () => h.send({ type: 'track', event: 'e' }),
      () => h.track('x', {}, { userId: 'u' }), () => h.deadLetters(),
    ];
    for (const call of calls) {
      assert.throws(call, (e) => e instanceof HeraldError && e.code === 'HERALD_E_CLOSED' && e.status === -10);
    }
    assert.equal(await p, true);
    for (const call of calls) assert.throws(call, (e) => e.code === 'HERALD_E_CLOSED');
    await assert.rejects(h.flush(100), (e) => e.code === 'HERALD_E_CLOSED');
  });

  test('library option and a missing library', () => {
    const dir = tmpdir();
    const h = new Herald({ library: LIBRARY, db_path: path.join(dir, 'l.db'), deliver: false });
    open.push(h);
    assert.equal(h.libraryPath, LIBRARY);
    assert.throws(() => new Herald({ library: path.join(dir, 'nope.so'), db_path: path.join(dir, 'x.db') }),
      (e) => e instanceof HeraldError && e.code === 'HERALD_E_CONFIG' && /nope\.so/.test(e.message)
        && /HERALD_LIBRARY/.test(e.message));
  });

  test('consent', async () => {
    const h = client({ consent_required: true });
    assert.equal(h.getConsent(), false);
    h.track('Held');
    await h.flush(300);
    assert.equal(receiver.events.length, 0);
    h.setConsent(true);
    assert.equal(h.getConsent(), true);
    assert.equal(await h.flush(10000), true);
    assert.ok(await receiver.waitForEvents(1));
    assert.deepEqual(receiver.events.map((e) => e.event), ['Held']);
    assert.equal(typeof h.eraseUser(), 'number');
  });

  test('without library or HERALD_LIBRARY, the system loader finds libherald.so.0', () => {
    const { spawnSync } = require('node:child_process');
    const env = { ...process.env, LD_LIBRARY_PATH: path.dirname(LIBRARY) };
    delete env.HERALD_LIBRARY;
    const r = spawnSync(process.execPath, ['-e', "console.log(require('herald').libraryVersion())"],
      { cwd: path.join(__dirname, '..'), env, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), '0.1.0');
  });

  test('ESM import works', async () => {
    const mod = await import('herald');
    assert.equal(typeof mod.Herald, 'function');
    assert.equal(typeof mod.HeraldError, 'function');
    assert.equal(mod.default.Herald, Herald);
  });
});
